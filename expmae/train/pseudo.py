"""Select pseudo-labels for unlabeled videos from one round's predictions (config `pseudolabel:`).

Source: the round's fusion head over all modalities with the best out-of-fold weighted F1 (mean
over seeds; `source: best`, as for the final model; never a model without a valid score), or a named
one (`fbp`, `late`, `fbp[audio+text]`, a feature set). Policy, applied in this order:
- `threshold`: floor on the ensemble's top probability (both policies; 0 disables it);
- `policy: threshold` keeps every row above the floor; `policy: topk` keeps the `top_k` most
  confident rows per predicted class (class-balanced, so the majority class does not take over);
- `agreement: true`: all k fold models must predict the same class (column `agree` == 1);
- `max_per_class`: cap per class, most confident first; `max_per_round`: cap on the whole pool,
  taken round-robin over classes by confidence so the cap keeps the balance (0 = no cap);
- `soft_labels: true`: the rows keep their probability vector (prob_<class>) and round r+1 trains
  on it instead of the one-hot class.
Selected rows carry their confidence and round; round r+1 trains on labeled + these.
Never in the pool (`--manifests`, `--faces-qc`): still images (a picture renamed .mp4: no expression
dynamics), and videos whose bytes equal another registered video's (a copy of a labeled or test clip would
be a pseudo-label of known, or leaked, content; of copies that are all unlabeled the first name stays).

Candidates are training outputs; their names (and whether they fuse all modalities) are read from the
identity in their metrics.json. Settings: --params over the schema defaults of config `pseudolabel`.

    python -m expmae.train.pseudo --candidates results/fuse/round0/all/fbp ... --round 0 --classes ... \
        --out results/pseudo/round0.parquet --params '{"policy": "topk", "top_k": 10, ...}'
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from expmae import config
from expmae.io import write_table
from expmae.train.plan import is_subcombination
from expmae.train.scoring import rank_score

SELECT_KEYS = ("threshold", "max_per_class", "policy", "top_k", "agreement", "max_per_round", "soft_labels")


def select(probs: pd.DataFrame, classes: list[str], threshold: float = 0.9, max_per_class: int = 0,
           round_: int = 0, policy: str = "threshold", top_k: int = 10, agreement: bool = False,
           max_per_round: int = 0, soft_labels: bool = False) -> pd.DataFrame:
    """probs: a classify probs table. -> name, y, discrete, confidence, agree, round, weight
    (+ prob_<class> with soft_labels), sorted by name."""
    if policy not in ("threshold", "topk"):
        raise SystemExit(f"config key pseudolabel.policy: unknown policy {policy!r}; one of threshold, topk")
    # a row predicted without data (the class prior) is never a pseudo-label
    pool = probs[(probs["split"] == "unlabeled") & (probs["no_data"].fillna("") == "" if "no_data" in probs else True)]
    cols = [f"prob_{c}" for c in classes]
    P = pool[cols].to_numpy(np.float64)
    conf, y = (P.max(1), P.argmax(1)) if len(P) else (np.zeros(0), np.zeros(0, int))
    out = pd.DataFrame({"name": pool["name"].to_numpy(), "y": y.astype(np.int64),
                        "discrete": [classes[i] for i in y], "confidence": conf.astype(np.float32),
                        "agree": pool["agree"].to_numpy(np.float32) if "agree" in pool else np.float32(1.0),
                        "round": np.int64(round_), "weight": np.float32(1.0)})
    if soft_labels:
        for c in cols:
            out[c] = pool[c].to_numpy(np.float32)
    out = out[out["confidence"] >= threshold]
    if agreement:
        out = out[out["agree"] >= 1.0 - 1e-6]
    # most confident first within each class; name breaks ties so the result is deterministic
    out = out.sort_values(["y", "confidence", "name"], ascending=[True, False, True])
    rank = out.groupby("y").cumcount()
    if policy == "topk":
        out, rank = out[rank < top_k], rank[rank < top_k]
    if max_per_class > 0:
        out, rank = out[rank < max_per_class], rank[rank < max_per_class]
    if max_per_round > 0 and len(out) > max_per_round:
        # round-robin: every class's 1st, then every class's 2nd ... so the cap keeps the balance
        out = out.assign(_r=rank.to_numpy()).sort_values(["_r", "confidence", "name"], ascending=[True, False, True])
        out = out.head(max_per_round).drop(columns="_r")
    return out.sort_values("name", ignore_index=True)


def read_identity(d: Path) -> dict:
    """A candidate's metrics.json (identity: name, kind, combo; scores)."""
    m = json.loads((Path(d) / "metrics.json").read_text())
    if "name" not in m:
        raise SystemExit(f"{d}/metrics.json records no identity (name, kind, combo): written by an older expmae; rerun it")
    return m


def valid(m: dict) -> bool:
    """A model with a valid out-of-fold score (not NaN or missing)."""
    return rank_score(m) is not None


def choose_source(candidates: list[str], source: str = "best") -> Path:
    """The candidate folder named `source`, or the all-modality one with the best OOF weighted F1 (mean
    over seeds; first on ties). A model without a valid score is never the source: an error."""
    dirs = [Path(c) for c in candidates]
    ms = [read_identity(d) for d in dirs]
    if source != "best":
        named = [(d, m) for d, m in zip(dirs, ms) if m["name"] == source]
        if not named:
            raise SystemExit(f"config key pseudolabel.source: {source!r} is not among {[m['name'] for m in ms]}")
        if not valid(named[0][1]):
            raise SystemExit(f"config key pseudolabel.source: {source!r} has no valid out-of-fold score; "
                             "it cannot select pseudo-labels")
        return named[0][0]
    # like the final model: among the heads over all modalities when there are any
    pool = [(d, m) for d, m in zip(dirs, ms) if not is_subcombination(m) and valid(m)] or [
        (d, m) for d, m in zip(dirs, ms) if valid(m)]
    if not pool:
        raise SystemExit(f"no candidate of {[m['name'] for m in ms]} has a valid out-of-fold score: no pseudo-labels "
                         "can be selected (see classify.folds)")
    return pool[int(np.argmax([rank_score(m) for _, m in pool]))][0]


def still_images(faces_qc: list[str]) -> set[str]:
    """Videos the face stage found to be one picture without audio."""
    from expmae.faces.worker import STILL_IMAGE

    out: set[str] = set()
    for f in faces_qc:
        q = pd.read_parquet(f, columns=["name", "reason"])
        out |= set(q.loc[q["reason"] == STILL_IMAGE, "name"].astype(str))
    return out


def copy_groups(manifests: list[str]) -> list[list[str]]:
    """Names with identical bytes (the ingest manifests' sha256), groups of two or more, sorted."""
    from expmae.labels import content_groups

    return content_groups(pd.concat([pd.read_parquet(f) for f in manifests]) if manifests else pd.DataFrame())


def pool_filter(probs: pd.DataFrame, still: set[str], groups: list[list[str]]) -> pd.DataFrame:
    """probs without the unlabeled rows that must not become pseudo-labels: still images, and copies. A copy
    group with a labeled or test member loses every unlabeled member; an all-unlabeled group keeps its first."""
    split = dict(zip(probs["name"].astype(str), probs["split"]))
    drop = set(still)
    for g in groups:
        drop |= set(g) if any(split.get(n, "unlabeled") != "unlabeled" for n in g) else set(g[1:])
    return probs[~(probs["name"].astype(str).isin(drop) & (probs["split"] == "unlabeled"))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Select pseudo-labels.")
    ap.add_argument("--candidates", nargs="+", required=True, help="training output folders of this round")
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--classes", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}", help="JSON over the schema defaults of config pseudolabel")
    ap.add_argument("--manifests", nargs="*", default=[], help="ingest shard manifests (sha256: copies)")
    ap.add_argument("--faces-qc", nargs="*", default=[], help="faces qc.parquet files (still images)")
    a = ap.parse_args(argv)
    # pseudolabel.rounds says how many rounds exist, not how one selects
    p = {k: v for k, v in config.resolve("pseudolabel", json.loads(a.params)).items() if k != "rounds"}
    classes = a.classes.split(",")
    src = choose_source(a.candidates, p["source"])
    probs = pool_filter(pd.read_parquet(src / "probs.parquet"), still_images(a.faces_qc), copy_groups(a.manifests))
    sel = select(probs, classes, round_=a.round, **{k: p[k] for k in SELECT_KEYS})
    mix = {c: int((sel["discrete"] == c).sum()) for c in classes}
    name = read_identity(src)["name"]
    write_table(a.out, sel, meta={"round": a.round, "params": p, "class_mix": mix, "source": name, "source_dir": str(src),
                                  "mean_confidence": float(sel["confidence"].mean()) if len(sel) else None})
    print(f"round {a.round}: {len(sel)} pseudo-labels from {name} ({src}) {mix}")


if __name__ == "__main__":
    main()

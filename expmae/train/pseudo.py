"""Select pseudo-labels for unlabeled videos from one round's predictions (config `pseudolabel:`).

Fold lineage (why the out-of-fold scores of later rounds stay honest): the run's folds are fixed
(expmae.train.cv), and fold f keeps a pool of its own. Round r's pool of fold f is selected from the
predictions of fold f's models of round r (the mean over seeds of the f{j} columns with
j = seed index x folds + f), which trained on the labeled videos of the other folds and on fold f's
earlier pool only; round r+1's fold-f model trains on that pool and predicts fold f's held-out videos.
No model that saw a fold-f label ever chooses a fold-f pseudo-label. (The test predictions, the mean of
every fold model, use every label, as they may.) Pools accumulate: round r's pool of fold f is round
r-1's plus the new picks; a video already in fold f's pool keeps the label it was given and is never
re-selected, since fold f's models trained on it (their prediction of it is in-sample); new picks come
only from videos fold f's models did not train on.

Source: per fold, the round's fusion head over all modalities with the best out-of-fold weighted F1 of
its seed ensemble on the labeled videos OUTSIDE that fold (`source: best`; never a model without a
valid score), or a named one (`fbp`, `late`, `fbp[audio+text]`, a feature set). Policy, applied in
this order to fold f's candidates:
- `threshold`: floor on the lineage's top probability (both policies; 0 disables it); `class_thresholds`
  replaces it per class (a map class -> floor);
- `agree_with` / `agree_min`: at least agree_min of the listed models (feature sets or heads of the round)
  predict the pick's class, each from its own fold-f lineage and at or above its own floor for that class
  (the MER 2025 2nd place kept the labels two independent models agreed on);
- `policy: threshold` keeps every row above the floor; `policy: topk` keeps the `top_k` most
  confident rows per predicted class (class-balanced, so the majority class does not take over);
- `agreement: true`: every seed's fold-f model predicts the same class (with `seeds: 1` this holds
  trivially: the fold models of other folds saw fold f's labels and are not asked);
- `max_per_class`: cap per class, most confident first; `max_per_round`: cap on one round's new picks,
  taken round-robin over classes by confidence so the cap keeps the balance (0 = no cap);
- `soft_labels: true`: the rows keep their probability vector (prob_<class>) and round r+1 trains
  on it instead of the one-hot class.
Selected rows carry their fold, confidence and the round that picked them.
Never in the pool (`--manifests`, `--faces-qc`): still images (a picture renamed .mp4: no expression
dynamics), and videos whose bytes equal another registered video's (a copy of a labeled or test clip would
be a pseudo-label of known, or leaked, content; of copies that are all unlabeled the first name stays).

Candidates are training outputs; their names (and whether they fuse all modalities) are read from the
identity in their metrics.json. Settings: --params over the schema defaults of config `pseudolabel` (the
schema is the only home of the defaults: select() fills what a caller leaves out from it).

    python -m expmae.train.pseudo --candidates results/fuse/round0/all/fbp ... --round 1 --classes ... \
        --previous results/pseudo/round0.parquet --out results/pseudo/round1.parquet --params '{"policy": "topk", ...}'
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from expmae import config
from expmae.io import write_table
from expmae.train.plan import is_subcombination
from expmae.train.scoring import n_fold_models, rank_score, weighted_f1

POOL_COLUMNS = ["name", "fold", "y", "discrete", "confidence", "agree", "round", "weight"]


def floors(classes: list[str], threshold: float, class_thresholds: dict[str, float]) -> np.ndarray:
    """[C] the confidence floor of every class: its pseudolabel.class_thresholds entry, else `threshold`."""
    unknown = sorted(set(class_thresholds) - set(classes))
    if unknown:
        raise SystemExit(f"config key pseudolabel.class_thresholds: {unknown} are not classes ({', '.join(classes)})")
    return np.array([float(class_thresholds.get(c, threshold)) for c in classes])


def select(probs: pd.DataFrame, classes: list[str], round_: int = 0, **params: Any) -> pd.DataFrame:
    """probs: a classify probs table (+ `votes` with pseudolabel.agree_with: how many of those models agree,
    see agreement_votes). params: config `pseudolabel` keys; the schema's defaults fill the rest (its only home).
    -> name, y, discrete, confidence, agree, round, weight (+ prob_<class> with soft_labels), sorted by name."""
    if params.get("policy", "threshold") not in ("threshold", "topk"):
        raise SystemExit(f"config key pseudolabel.policy: unknown policy {params['policy']!r}; one of threshold, topk")
    p = config.resolve("pseudolabel", params)
    policy, top_k, max_per_class, max_per_round = p["policy"], p["top_k"], p["max_per_class"], p["max_per_round"]
    # a row predicted without data (the class prior) is never a pseudo-label
    pool = probs[(probs["split"] == "unlabeled") & (probs["no_data"].fillna("") == "" if "no_data" in probs else True)]
    cols = [f"prob_{c}" for c in classes]
    P = pool[cols].to_numpy(np.float64)
    conf, y = (P.max(1), P.argmax(1)) if len(P) else (np.zeros(0), np.zeros(0, int))
    out = pd.DataFrame({"name": pool["name"].to_numpy(), "y": y.astype(np.int64),
                        "discrete": [classes[i] for i in y], "confidence": conf.astype(np.float32),
                        "agree": pool["agree"].to_numpy(np.float32) if "agree" in pool else np.float32(1.0),
                        "round": np.int64(round_), "weight": np.float32(1.0)})
    if p["soft_labels"]:
        for c in cols:
            out[c] = pool[c].to_numpy(np.float32)
    if p["agree_with"]:
        if "votes" not in pool:
            raise SystemExit("pseudolabel.agree_with is set but the candidates carry no votes (expmae.train.pseudo.grow)")
        out = out[pool["votes"].to_numpy() >= p["agree_min"]]
    # per class floor, compared in float32 as the confidence is stored (a floor of 0.9 keeps a stored 0.9)
    floor = floors(classes, p["threshold"], p["class_thresholds"]).astype(np.float32)
    out = out[out["confidence"].to_numpy() >= floor[out["y"].to_numpy()]]
    if p["agreement"]:
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


def lineage_score(df: pd.DataFrame, classes: list[str], fold: int | None) -> float | None:
    """Weighted F1 of a model's seed ensemble on the labeled videos it scored out of fold, those of `fold`
    left out (None: all); None without such rows."""
    rows = (df["split"] == "labeled") & (df["fold"] >= 0) & (df["fold"] != (-2 if fold is None else fold))
    if not rows.any():
        return None
    pred = df.loc[rows, [f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    return weighted_f1(df.loc[rows, "y"].to_numpy(), pred)


def read_probs(d: Path, tables: dict[Path, pd.DataFrame]) -> pd.DataFrame:
    """A candidate's probs table, read once per process (`tables` holds the ones read)."""
    if d not in tables:
        tables[d] = pd.read_parquet(d / "probs.parquet")
    return tables[d]


def choose_source(candidates: list[str], source: str = "best", fold: int | None = None,
                  classes: list[str] | None = None, tables: dict[Path, pd.DataFrame] | None = None) -> Path:
    """The candidate folder named `source`, or the all-modality one with the best OOF weighted F1 of its
    seed ensemble (first on ties): with `fold`, on the labeled videos outside that fold (from the
    candidates' probs tables, kept in `tables`; `classes` needed). A model without a valid score is never
    the source: an error."""
    dirs = [Path(c) for c in candidates]
    ms = [read_identity(d) for d in dirs]
    if source != "best":
        named = [(d, m) for d, m in zip(dirs, ms) if m["name"] == source]
        if not named:
            raise SystemExit(f"config key pseudolabel.source: {source!r} is not among {[m['name'] for m in ms]}")
        if named[0][1].get("skipped"):  # no usable data for it this run: the best model selects instead
            print(f"pseudolabel.source {source!r} was skipped ({named[0][1]['skipped']}): the best model selects")
            return choose_source(candidates, "best", fold, classes, tables)
        if not valid(named[0][1]):
            raise SystemExit(f"config key pseudolabel.source: {source!r} has no valid out-of-fold score; "
                             "it cannot select pseudo-labels")
        return named[0][0]
    # like the final model: among the heads over all modalities when there are any
    # (the candidates may also hold pseudolabel.agree_with's single feature sets: voters, not sources)
    pool = [(d, m) for d, m in zip(dirs, ms) if m.get("kind") == "fused" and not is_subcombination(m) and valid(m)] or [
        (d, m) for d, m in zip(dirs, ms) if valid(m)]
    if not pool:
        raise SystemExit(f"no candidate of {[m['name'] for m in ms]} has a valid out-of-fold score: no pseudo-labels "
                         "can be selected (see classify.folds)")
    if fold is None:
        score = [rank_score(m) for _, m in pool]
    else:
        tables = {} if tables is None else tables
        score = [lineage_score(read_probs(d, tables), classes, fold) for d, _ in pool]
        score = [-1.0 if v is None else v for v in score]
    return pool[int(np.argmax(score))][0]


def lineage(df: pd.DataFrame, classes: list[str], fold: int, folds: int) -> pd.DataFrame:
    """Fold `fold`'s view of a probs table: prob_<class> = the mean over seeds of that fold's models
    (f{j} columns, j = seed index x folds + fold), agree = share of those models whose top class is
    the mean's. Labeled rows keep their out-of-fold values (never candidates anyway)."""
    n_f = n_fold_models(df, classes)
    if n_f % folds:
        raise SystemExit(f"a probs table has {n_f} fold-model columns, not a multiple of classify.folds = {folds}")
    js = range(fold, n_f, folds)
    P = np.stack([df[[f"f{j}_{c}" for c in classes]].to_numpy(np.float64) for j in js])  # [S, N, C]
    mean = P.mean(0)
    out = df[["name", "split"] + (["no_data"] if "no_data" in df else [])].copy()
    for i, c in enumerate(classes):
        out[f"prob_{c}"] = mean[:, i]
    out["agree"] = (P.argmax(2) == mean.argmax(1)[None]).mean(0)
    return out


def agreement_votes(view: pd.DataFrame, candidates: list[str], p: dict, fold: int, folds: int, classes: list[str],
                    tables: dict[Path, pd.DataFrame]) -> np.ndarray:
    """[rows of view] how many of the pseudolabel.agree_with models predict the row's top class, each from its
    own fold-`fold` lineage (models that never saw fold f's labels) and at or above its own floor for that class.
    A model without data for a row casts no vote."""
    by_name = {read_identity(Path(c))["name"]: Path(c) for c in candidates}
    for n in p["agree_with"]:
        # a feature set that is not a candidate: the round's classifier beside the fused candidates
        # (<results>/fuse/round<r>/<combo>/<head> -> <results>/classify/round<r>/<name>; late fusion needs it first)
        near = [Path(c).parents[3] / "classify" / Path(c).parents[1].name / n for c in candidates
                if len(Path(c).parents) > 3 and Path(c).parents[2].name == "fuse"]
        if n not in by_name and near and (near[0] / "metrics.json").exists():
            by_name[n] = near[0]
    missing = [n for n in p["agree_with"] if n not in by_name]
    if missing:
        raise SystemExit(f"config key pseudolabel.agree_with: {missing} are not models of this round "
                         f"({', '.join(sorted(by_name))})")
    cols = [f"prob_{c}" for c in classes]
    top = view[cols].to_numpy().argmax(1)
    floor = floors(classes, p["threshold"], p["class_thresholds"]).astype(np.float32)
    votes = np.zeros(len(view), np.int64)
    for n in p["agree_with"]:
        if read_identity(by_name[n]).get("skipped"):  # no usable data: a skipped model casts no vote
            continue
        other = lineage(read_probs(by_name[n], tables), classes, fold, folds).set_index("name")
        if "no_data" in other:
            other = other[other["no_data"].fillna("") == ""]
        P = other.reindex(view["name"])[cols].to_numpy(np.float64)
        has = np.isfinite(P).all(1)
        P = np.nan_to_num(P)
        votes += has & (P.argmax(1) == top) & (P.max(1).astype(np.float32) >= floor[top])
    return votes


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
    from expmae.train.folds import read_manifests

    return content_groups(read_manifests(manifests))


def pool_filter(probs: pd.DataFrame, still: set[str], groups: list[list[str]]) -> pd.DataFrame:
    """probs without the unlabeled rows that must not become pseudo-labels: still images, and copies. A copy
    group with a labeled or test member loses every unlabeled member; an all-unlabeled group keeps its first."""
    split = dict(zip(probs["name"].astype(str), probs["split"]))
    drop = set(still)
    for g in groups:
        drop |= set(g) if any(split.get(n, "unlabeled") != "unlabeled" for n in g) else set(g[1:])
    return probs[~(probs["name"].astype(str).isin(drop) & (probs["split"] == "unlabeled"))]


def grow(prev: pd.DataFrame | None, candidates: list[str], round_: int, classes: list[str], p: dict,
         still: set[str], groups: list[list[str]]) -> tuple[pd.DataFrame, dict[int, str]]:
    """Round `round_`'s pools: `prev` (round r-1's, every fold's) plus, per fold, new picks from that fold's
    lineage of its source model. -> the pools (name, fold, y, ...), fold -> source model name."""
    folds = {int(read_identity(Path(c)).get("folds") or 0) for c in candidates} - {0}
    if len(folds) != 1:
        raise SystemExit(f"the candidates disagree on classify.folds ({sorted(folds)}): rerun them")
    k = folds.pop()
    cols = POOL_COLUMNS + ([f"prob_{c}" for c in classes] if p["soft_labels"] else [])
    prev = prev if prev is not None and len(prev) else pd.DataFrame(columns=cols)
    if "fold" not in prev:
        raise SystemExit("--previous: the table has no `fold` column (fold lineage): written by an older expmae; rerun it")
    tables: dict[Path, pd.DataFrame] = {}
    pools: dict[Path, pd.DataFrame] = {}  # a source's table without still images and copies, made once
    picks, sources = [prev], {}
    for f in range(k):
        src = choose_source(candidates, p["source"], f, classes, tables)
        if src not in pools:
            pools[src] = pool_filter(read_probs(src, tables), still, groups)
        view = lineage(pools[src], classes, f, k)
        view = view[~view["name"].isin(set(prev.loc[prev["fold"] == f, "name"]))]  # in-sample for fold f's models
        if p["agree_with"]:
            view = view.assign(votes=agreement_votes(view, candidates, p, f, k, classes, tables))
        sel = select(view, classes, round_=round_, **p)
        picks.append(sel.assign(fold=np.int64(f)))
        sources[f] = read_identity(src)["name"]
    pool = pd.concat([t for t in picks if len(t)] or [prev], ignore_index=True)
    pool = pool.astype({"fold": np.int64, "y": np.int64, "round": np.int64})
    return pool[[c for c in cols if c in pool]].sort_values(["fold", "name"], ignore_index=True), sources


def pool_meta(pool: pd.DataFrame, round_: int, classes: list[str], folds: int) -> dict:
    """What metrics.json and the report say of a round's pools: size per fold (cumulative and new), the
    class mix one fold model trains on (mean over folds), distinct videos."""
    new = pool[pool["round"] == round_]
    per_fold = [int((pool["fold"] == f).sum()) for f in range(folds)]
    return {"per_fold": per_fold, "new_per_fold": [int((new["fold"] == f).sum()) for f in range(folds)],
            "n_videos": int(pool["name"].nunique()),
            "class_mix": {c: round(float((pool["discrete"] == c).sum()) / folds, 1) for c in classes},
            "mean_confidence": float(new["confidence"].mean()) if len(new) else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Select pseudo-labels.")
    ap.add_argument("--candidates", nargs="+", required=True, help="training output folders of this round")
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--classes", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--previous", default="", help="the previous round's pools (they accumulate)")
    ap.add_argument("--params", default="{}", help="JSON over the schema defaults of config pseudolabel")
    ap.add_argument("--manifests", nargs="*", default=[], help="ingest shard manifests (sha256: copies)")
    ap.add_argument("--faces-qc", nargs="*", default=[], help="faces qc.parquet files (still images)")
    a = ap.parse_args(argv)
    # pseudolabel.rounds says how many rounds exist, not how one selects
    p = {k: v for k, v in config.resolve("pseudolabel", json.loads(a.params)).items() if k != "rounds"}
    classes = a.classes.split(",")
    prev = pd.read_parquet(a.previous) if a.previous else None
    pool, sources = grow(prev, a.candidates, a.round, classes, p, still_images(a.faces_qc), copy_groups(a.manifests))
    meta = pool_meta(pool, a.round, classes, len(sources))
    names = sorted(set(sources.values()))
    write_table(a.out, pool, meta={"round": a.round, "params": p, **meta, "sources": {str(f): n for f, n in sources.items()},
                                   "source": names[0] if len(names) == 1 else ",".join(names)})
    print(f"round {a.round}: pools per fold {meta['per_fold']} (new {meta['new_per_fold']}, {meta['n_videos']} videos)"
          f" from {sources}; per fold model {meta['class_mix']}")


if __name__ == "__main__":
    main()

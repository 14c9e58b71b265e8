"""Late fusion: the geometric mean of already trained per-feature-set classifiers.

No weights are fitted, so the members' out-of-fold rows stay out-of-fold and the fused OOF score
is as honest as theirs (each member's OOF prediction of a video comes from a model that never saw it,
whatever its folds). Seed s of the fusion fuses seed s of every member. Its inputs are the members'
outputs (expmae.train.cv folders), not features; its rule is `fuse_late`.

    python -m expmae.train.late --round 1 --combo all --name late \
        --members results/classify/round1/egemaps results/classify/round1/minilm ... \
        --labels labels.csv [--test-labels test_labels.csv] --classes neutral,... \
        --out results/fuse/round1/all/late --params '{"valence": "posterior", ...}'
Writes <out>/probs.parquet and <out>/metrics.json, as expmae.train.cv does.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.train import data, plan, scoring
from expmae.train.repro import pin_numerics
from expmae.train.scoring import probs_frame, summarize, write_result


def late_fuse(members: list[pd.DataFrame], classes: list[str], n_s: int | None = None) -> pd.DataFrame:
    """Geometric mean (mean log-probability, renormalised) of the members' probabilities, row by row,
    fold by fold (f{f}_<class> columns, for the agreement test) and seed by seed (s{s}_<class>).
    A member without data for a row (its no_data flag) stays out of that row's mean; a row no member
    has data for keeps their prior and its flag. A labeled row is out-of-fold when a member with data
    held it out. Valence: the members' mean. n_s: the seeds fused (the fewest any member has, from their
    metrics.json: expmae.train.scoring.seed_count; None: the fewest seed columns of the tables)."""
    base = members[0][["name", "split", "y"]].reset_index(drop=True)
    al = [m.set_index("name").loc[base["name"]].reset_index() for m in members]
    has = np.stack([(m["no_data"].fillna("") == "").to_numpy() if "no_data" in m else np.ones(len(m), bool) for m in al], 1)
    use = np.where(has.any(1, keepdims=True), has, True).astype(np.float64)      # [N, members]
    n_s = min(scoring.n_seeds(m, classes) for m in al) if n_s is None else n_s
    n_f = min(scoring.n_fold_models(m, classes) for m in al)

    def gmean(cols: list[str]) -> np.ndarray:
        logp = np.stack([np.log(np.clip(m[cols].to_numpy(np.float64), 1e-8, 1)) for m in al], 1)  # [N, members, C]
        logp = (logp * use[..., None]).sum(1) / use.sum(1, keepdims=True)
        e = np.exp(logp - logp.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    def vmean(col: str) -> np.ndarray:
        v = np.stack([m[col].to_numpy(float) for m in al], 1)
        if not all(np.isfinite(v[:, i]).any() for i in range(v.shape[1])):
            return np.full(len(base), np.nan)
        n = (np.isfinite(v) * use).sum(1)
        return np.where(n > 0, np.nansum(v * use, 1) / np.maximum(n, 1), np.nan)

    probs = gmean([f"prob_{c}" for c in classes])
    fold_probs = np.stack([gmean([f"f{f}_{c}" for c in classes]) for f in range(n_f)]) if n_f else np.zeros((0, len(base), len(classes)))
    seed_probs = np.stack([gmean([f"s{s}_{c}" for c in classes]) for s in range(n_s)]) if n_s else None
    seed_v = np.stack([vmean(f"s{s}_valence") for s in range(n_s)]) if n_s else None
    folds = np.stack([m["fold"].to_numpy() for m in al], 1)
    fold = np.where(has, folds, -1).max(1)
    no_data = np.where(has.any(1), "", al[0]["no_data"].to_numpy(object) if "no_data" in al[0] else "")
    return probs_frame(base["name"], base["split"].to_numpy(), base["y"].to_numpy(), fold, probs, fold_probs,
                       vmean("valence"), classes, seed_probs=seed_probs, seed_valence=seed_v, no_data=no_data)


def run_late(members: list[str], labels: str, test_labels: str, classes: list[str], p: dict,
             encoding: str = "") -> tuple[pd.DataFrame, dict]:
    """-> probs table and metrics of the late fusion of the classifier folders `members` (an empty table and
    metrics marked `skipped` when every member was skipped)."""
    mm = [json.loads((Path(d) / "metrics.json").read_text()) for d in members]
    # a member whose training job was skipped (no usable data) is left out, named in metrics.json
    skipped = {x.get("name", str(d)): x["skipped"] for x, d in zip(mm, members) if x.get("skipped")}
    members, mm = [d for d, x in zip(members, mm) if not x.get("skipped")], [x for x in mm if not x.get("skipped")]
    if not members:
        return scoring.empty_probs(classes), scoring.skipped_metrics(
            "every member was skipped", plan.LATE, p, members=[], skipped_members=skipped)
    n_s = min(scoring.seed_count(x, f"late fusion member {d}") for x, d in zip(mm, members))
    df = late_fuse([pd.read_parquet(Path(d) / "probs.parquet") for d in members], classes, n_s)
    lab, issues = data.read_labels(labels, classes, encoding)
    vmap = dict(zip(lab["name"], lab["valence"])) if p["valence"] != "none" else {}
    vals = np.array([vmap.get(n, np.nan) if s == "labeled" else np.nan for n, s in zip(df["name"], df["split"])])
    tl = data.read_labels(test_labels, classes, encoding)[0] if test_labels else pd.DataFrame(columns=["name", "y", "valence"])
    m = summarize(df, classes, vals, dict(zip(tl["name"], tl["y"])), {n: v for n, v in zip(tl["name"], tl["valence"]) if v == v})
    m.update(head=plan.LATE, members=[x["name"] for x in mm], seeds=mm[0].get("seeds", []),
             n_labeled=int(((df["split"] == "labeled") & (df["fold"] >= 0)).sum()), n_pseudo=max(x.get("n_pseudo", 0) for x in mm),
             curves=[], issues=issues, **({"skipped_members": skipped} if skipped else {}))
    return df, m


def main(argv: list[str] | None = None) -> None:
    pin_numerics(reexec=argv is None, with_torch=False)  # the same numbers on any x86-64 CPU
    ap = argparse.ArgumentParser(description="Late fusion of trained per-feature-set classifiers.")
    plan.add_identity_args(ap)
    ap.add_argument("--members", nargs="+", required=True, help="output folders of the classifiers fused")
    ap.add_argument("--labels", required=True)
    ap.add_argument("--test-labels", default="")
    ap.add_argument("--encoding", default="", help="config data.encoding of the CSVs")
    ap.add_argument("--classes", required=True, help="comma-separated class names")
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}", help="JSON over the schema defaults of config classify (+ fuse)")
    a = ap.parse_args(argv)
    t0 = time.time()
    p = plan.train_params(json.loads(a.params))
    if a.kind == "single":
        raise SystemExit("--kind single: late fusion is a fused model")
    ident = plan.identity_of(a, plan.LATE)
    df, m = run_late(a.members, a.labels, a.test_labels, a.classes.split(","), p, a.encoding)
    write_result(a.out, df, m, p, ident, t0)


if __name__ == "__main__":
    main()

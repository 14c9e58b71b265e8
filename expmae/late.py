"""Late fusion head: the geometric mean of already trained per-feature-set classifiers.

No weights are fitted, so the members' out-of-fold rows stay out-of-fold and the fused OOF score
is as honest as theirs (same stratified folds: same labels, same seed). Run by expmae.classify
with --head late --members <classify output folders>.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from expmae import dataset
from expmae.classify import evaluate, probs_frame


def late_fuse(members: list[pd.DataFrame], classes: list[str]) -> pd.DataFrame:
    """Geometric mean (mean log-probability, renormalised) of the members' probabilities, row by row
    and fold by fold (f{f}_<class> columns, for the agreement test). Valence: the members' mean."""
    base = members[0][["name", "split", "y", "fold"]].reset_index(drop=True)
    al = [m.set_index("name").loc[base["name"]].reset_index() for m in members]
    n_f = min(sum(c.startswith("f") and c.endswith(f"_{classes[0]}") and c[1:-len(classes[0]) - 1].isdigit()
                  for c in m.columns) for m in al)

    def gmean(cols: list[str]) -> np.ndarray:
        logp = np.mean([np.log(np.clip(m[cols].to_numpy(np.float64), 1e-8, 1)) for m in al], 0)
        e = np.exp(logp - logp.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    probs = gmean([f"prob_{c}" for c in classes])
    fold_probs = np.stack([gmean([f"f{f}_{c}" for c in classes]) for f in range(n_f)]) if n_f else np.zeros((0, len(base), len(classes)))
    v_hat = np.nanmean(np.stack([m["valence"].to_numpy(float) for m in al]), 0) if all(
        np.isfinite(m["valence"].to_numpy(float)).any() for m in al) else np.full(len(base), np.nan)
    return probs_frame(base["name"], base["split"].to_numpy(), base["y"].to_numpy(), base["fold"].to_numpy(),
                       probs, fold_probs, v_hat, classes)


def run_late(members: list[str], labels: str, test_labels: str, classes: list[str], p: dict) -> tuple[pd.DataFrame, dict]:
    """-> probs table and metrics of the late fusion of the classifier folders `members`."""
    df = late_fuse([pd.read_parquet(Path(d) / "probs.parquet") for d in members], classes)
    lab, issues = dataset.read_labels(labels, classes)
    vmap = dict(zip(lab["name"], lab["valence"])) if p.get("valence") != "none" else {}
    vals = np.array([vmap.get(n, np.nan) if s == "labeled" else np.nan for n, s in zip(df["name"], df["split"])])
    tl = dataset.read_labels(test_labels, classes)[0] if test_labels else pd.DataFrame(columns=["name", "y", "valence"])
    m = evaluate(df, classes, vals, dict(zip(tl["name"], tl["y"])), {n: v for n, v in zip(tl["name"], tl["valence"]) if v == v})
    m.update(head="late", members=[Path(d).name for d in members], n_labeled=int((df["split"] == "labeled").sum()),
             n_pseudo=max(json.loads((Path(d) / "metrics.json").read_text()).get("n_pseudo", 0) for d in members),
             curves=[], issues=issues)
    return df, m

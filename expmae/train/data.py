"""Assemble training data: cached feature shards + label CSV + test list (+ pseudo-labels).

Splits: a video listed in the label CSV with a known class is `labeled`; one in the test
list is `test`; every other registered video is `unlabeled`. Problems (unknown class,
label for a video that does not exist, a name both labeled and test) become QC rows and
never stop training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.io import read_csv_tolerant, read_features


def read_labels(path: str | os.PathLike | None, classes: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    """-> DataFrame(name, y int, valence float|nan), QC issues."""
    issues: list[dict] = []
    if not path or not Path(path).exists():
        return pd.DataFrame(columns=["name", "y", "valence"]), issues
    df, _ = read_csv_tolerant(path)
    if "name" not in df.columns or "discrete" not in df.columns:
        raise SystemExit(f"{path}: label CSV needs columns name,discrete[,valence] (config key data.labels)")
    idx = {c: i for i, c in enumerate(classes)}
    rows = []
    seen = set()
    for r in df.itertuples(index=False):
        name, lab = r.name.strip(), str(r.discrete).strip().lower()
        if name in seen:
            issues.append({"name": name, "stage": "labels", "reason": "duplicate label row (kept first)"})
            continue
        seen.add(name)
        if lab not in idx:
            issues.append({"name": name, "stage": "labels", "reason": f"unknown label {r.discrete!r} (treated as unlabeled)"})
            continue
        try:
            val = float(getattr(r, "valence", "") or "nan")
        except ValueError:
            val = float("nan")
        rows.append((name, idx[lab], val))
    return pd.DataFrame(rows, columns=["name", "y", "valence"]), issues


def read_names(path: str | os.PathLike | None) -> list[str]:
    if not path or not Path(path).exists():
        return []
    df, _ = read_csv_tolerant(path)
    return [n.strip() for n in df["name"]] if "name" in df.columns else []


@dataclass
class Dataset:
    names: list[str]
    X: list[np.ndarray]                  # one [N, D_m] float32 per modality
    mask: np.ndarray                     # [N, M] bool: modality present
    split: np.ndarray                    # [N] str: labeled | unlabeled | test
    y: np.ndarray                        # [N] int, -1 where unknown
    modalities: list[str]
    meta: dict = field(default_factory=dict)
    issues: list[dict] = field(default_factory=list)
    valence: np.ndarray | None = None    # [N] float, NaN where unknown (labeled rows only)


def load(features: dict[str, list[str]], labels: str | None, test: str | None, classes: list[str],
         test_labels: str | None = None) -> Dataset:
    """features: modality name -> list of shard parquet paths (all shards of one extractor)."""
    mods = list(features)
    base: list[str] | None = None
    Xs, masks, metas = [], [], {}
    for m in mods:
        names, X, mask, meta = read_features(sorted(features[m]))
        order = pd.Index(names)
        if base is None:
            base = names
        elif names != base:  # align rows by name (shards are identical across extractors, but be safe)
            pos = order.get_indexer(base)
            X = np.where((pos >= 0)[:, None], X[pos.clip(0)], 0.0)
            mask = np.where(pos >= 0, mask[pos.clip(0)], False)
        Xs.append(X.astype(np.float32))
        masks.append(mask)
        metas[m] = meta
    base = base or []
    lab, issues = read_labels(labels, classes)
    test_names = set(read_names(test))
    known = set(base)
    for n in lab["name"]:
        if n not in known:
            issues.append({"name": n, "stage": "labels", "reason": "label for a video that was not found"})
    ymap = dict(zip(lab["name"], lab["y"]))
    split = np.array(["test" if n in test_names else "labeled" if n in ymap else "unlabeled" for n in base], dtype=object)
    for n in sorted(test_names & set(ymap)):
        issues.append({"name": n, "stage": "labels", "reason": "in both label CSV and test list (kept as test)"})
    y = np.array([ymap.get(n, -1) if s == "labeled" else -1 for n, s in zip(base, split)], dtype=np.int64)
    vmap = dict(zip(lab["name"], lab["valence"]))
    valence = np.array([vmap.get(n, np.nan) if s == "labeled" else np.nan for n, s in zip(base, split)], np.float64)
    ds = Dataset(base, Xs, np.stack(masks, 1) if masks else np.zeros((0, 0), bool), split, y, mods, metas, issues,
                 valence)
    if test_labels:
        tl, _ = read_labels(test_labels, classes)
        ds.meta["test_truth"] = dict(zip(tl["name"], tl["y"]))
        ds.meta["test_valence"] = {n: v for n, v in zip(tl["name"], tl["valence"]) if v == v}
    return ds

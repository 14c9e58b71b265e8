"""Assemble training data: cached feature shards + label CSV + test list (+ pseudo-labels).

Splits: a video listed in the label CSV with a known class is `labeled`; one in the test
list is `test`; every other registered video is `unlabeled`; a labeled video whose bytes equal a test
clip's is `excluded` (neither trained nor scored: it would be train/test leakage; QC row). Each row also
gets its fold group (expmae.train.folds: byte copies, data.groups, a `group` column in the label CSV). Problems (unknown class,
label for a video that does not exist, a name both labeled and test) become QC rows and
never stop training. A test-list name with no registered video still gets a row (no data in any
modality; meta['no_video'] lists them) so the submission has a prediction for every test name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from expmae import labels as labels_csv
from expmae.io import read_features
from expmae.train import folds


def read_labels(path: str | os.PathLike | None, classes: list[str], encoding: str = "") -> tuple[pd.DataFrame, list[dict]]:
    """-> DataFrame(name, y int, valence float|nan), QC issues (expmae.labels: decoding, duplicates, valence)."""
    return labels_csv.read_labels(path, classes, encoding)


def read_names(path: str | os.PathLike | None, encoding: str = "") -> list[str]:
    """The test list's names (expmae.labels.read_names; its QC rows come from the inputs check)."""
    return labels_csv.read_names(path, encoding)[0]


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
    groups: np.ndarray | None = None     # [N] str: fold group (rows of one group share a fold)


def load(features: dict[str, list[str]], labels: str | None, test: str | os.PathLike | list[str] | None,
         classes: list[str], test_labels: str | None = None, encoding: str = "", groups_csv: str = "",
         manifests: list[str] | tuple[str, ...] = ()) -> Dataset:
    """features: modality name -> list of shard parquet paths (all shards of one extractor); groups_csv:
    config data.groups; manifests: the ingest shard manifests (content hashes: copies); test: one test list
    or several (data.test and the data.tracks label CSVs)."""
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
    lab, issues = read_labels(labels, classes, encoding)
    # several test lists: data.test and the tracks' label CSVs (expmae.tracks), their names once, in order
    test_list = list(dict.fromkeys(n for t in labels_csv.test_lists(test) for n in read_names(t, encoding)))
    test_names = set(test_list)
    no_video = [n for n in dict.fromkeys(test_list) if n not in set(base)]
    if no_video:  # rows without data in any modality: predicted from the class prior, flagged
        base = base + no_video
        Xs = [np.concatenate([X, np.zeros((len(no_video), X.shape[1]), X.dtype)]) for X in Xs]
        masks = [np.concatenate([mk, np.zeros(len(no_video), bool)]) for mk in masks]
    known = set(base) - set(no_video)
    for n in lab["name"]:
        if n not in known:
            issues.append({"name": n, "stage": "labels", "reason": "label for a video that was not found"})
    ymap = dict(zip(lab["name"], lab["y"]))
    split = np.array(["test" if n in test_names else "labeled" if n in ymap else "unlabeled" for n in base], dtype=object)
    for n in sorted(test_names & set(ymap)):
        issues.append({"name": n, "stage": "labels", "reason": "in both label CSV and test list (kept as test)"})
    man = folds.read_manifests(manifests)  # read once: copies of test clips and fold groups both need it
    copies = folds.test_copies(man, dict(zip(base, split)))
    if copies:
        split = np.array(["excluded" if n in copies else s for n, s in zip(base, split)], dtype=object)
        issues += folds.copy_rows(copies)
    y = np.array([ymap.get(n, -1) if s == "labeled" else -1 for n, s in zip(base, split)], dtype=np.int64)
    vmap = dict(zip(lab["name"], lab["valence"]))
    valence = np.array([vmap.get(n, np.nan) if s == "labeled" else np.nan for n, s in zip(base, split)], np.float64)
    groups, group_issues = folds.fold_groups(base, lab, groups_csv, man, encoding)
    ds = Dataset(base, Xs, np.stack(masks, 1) if masks else np.zeros((0, 0), bool), split, y, mods, metas,
                 issues + group_issues, valence, groups)
    ds.meta["no_video"] = no_video
    if test_labels:
        tl, _ = read_labels(test_labels, classes, encoding)
        ds.meta["test_truth"] = dict(zip(tl["name"], tl["y"]))
        ds.meta["test_valence"] = {n: v for n, v in zip(tl["name"], tl["valence"]) if v == v}
    return ds

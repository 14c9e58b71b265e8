"""Which labeled videos must share a cross-validation fold, and the folds themselves.

Why: an out-of-fold score is honest only when nothing of a held-out video was seen in training. Three
relations tie videos together, and the union of them (transitively: a~b by a group, b~c by bytes puts
a, b, c in one fold) defines the fold groups:
  - a `group` column in the label CSV (expmae.labels.read_labels keeps it when present);
  - the CSV `data.groups` (name,group: speaker, identity, source film...; a name may be in several);
  - identical bytes (expmae.labels.content_groups over the ingest manifests' sha256): a copy of a
    labeled video in another fold would be scored on what its twin trained on.
The two group namespaces stay apart (group "1" of the label CSV is not group "1" of data.groups). A name
in no relation is its own group. A labeled copy of a test clip is worse still (its test twin is scored on
a model that trained on it): test_copies finds those, and the caller leaves them out (copy_rows).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.labels import content_groups, qc, read_csv

KEY = "data.groups"
TEST_COPY = "labeled copy of a test clip: left out of training and scoring (train/test leakage)"


def read_manifests(manifests: list[str] | tuple[str, ...] | pd.DataFrame) -> pd.DataFrame:
    """The ingest manifests (results/ingest/<shard>.parquet) as one table: name, size, sha256 (a table
    already read is returned as it is, so a caller that needs it twice reads the files once)."""
    if isinstance(manifests, pd.DataFrame):
        return manifests
    if not len(manifests):
        return pd.DataFrame({"name": pd.Series([], dtype=str), "size": pd.Series([], dtype="int64"),
                             "sha256": pd.Series([], dtype=str)})
    man = pd.concat([pd.read_parquet(p) for p in manifests], ignore_index=True)
    return man.assign(sha256=man["sha256"] if "sha256" in man else "")[["name", "size", "sha256"]]


def read_groups(path: str | os.PathLike, known: set[str],
                encoding: str = "") -> tuple[list[tuple[str, str]], list[dict]]:
    """data.groups -> (name, group) pairs of known names, and QC rows for every odd row: a problem of the
    file is a row (stage inputs), never an error, because groups only sharpen the folds."""
    if not path:
        return [], []
    p = Path(path)
    if not p.is_file():
        return [], [qc(p.name, f"file not found: groups CSV (config key {KEY}), no groups from it")]
    df, rows = read_csv(p, encoding, KEY)
    if not len(df.columns):
        unparsable = any(r["reason"].startswith("unparsable CSV") for r in rows)
        return [], rows + ([] if unparsable else [qc(p.name, f"empty CSV: groups CSV (config key {KEY})")])
    missing = [c for c in ("name", "group") if c not in df.columns]
    if missing:
        return [], rows + [qc(p.name, f"no {missing[0]} column: {p.name} ({KEY}) needs name,group; no groups from it")]
    pairs: list[tuple[str, str]] = []
    seen: dict[str, list[str]] = {}
    for name, g in zip(df["name"].tolist(), df["group"].tolist()):
        name, g = name.strip(), g.strip()
        if not name:
            rows.append(qc("", f"groups row without a name: ({KEY})", "labels"))
        elif not g:
            rows.append(qc(name, f"empty group: row of {KEY} without a group (ignored)", "labels"))
        elif name not in known:
            rows.append(qc(name, f"group for a video that was not found: {g!r} (ignored)", "labels"))
        elif g in seen.get(name, []):
            rows.append(qc(name, f"duplicate groups row: {g!r} (kept once)", "labels"))
        else:
            have = seen.setdefault(name, [])
            if have:
                rows.append(qc(name, f"several groups: {', '.join(map(repr, have + [g]))} (all their videos share "
                                     "a fold)", "labels"))
            have.append(g)
            pairs.append((name, g))
    return pairs, rows


def fold_groups(names: list[str], labels: pd.DataFrame | None = None, groups_csv: str = "",
                manifests: list[str] | tuple[str, ...] | pd.DataFrame = (),
                encoding: str = "") -> tuple[np.ndarray, list[dict]]:
    """A fold group id per name (object array of str, aligned with `names`) and the QC rows of data.groups.
    A group's id is its alphabetically first member among `names`, so ids do not depend on row order.
    Known names (others in data.groups are QC rows): `names` and the manifests' names."""
    man = read_manifests(manifests)
    up: dict[tuple[str, str], tuple[str, str]] = {}

    def find(a: tuple[str, str]) -> tuple[str, str]:
        up.setdefault(a, a)
        while up[a] != a:
            up[a] = up[up[a]]
            a = up[a]
        return a

    def join(a: tuple[str, str], b: tuple[str, str]) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            up[max(ra, rb)] = min(ra, rb)

    if labels is not None and "group" in labels:
        for n, g in zip(labels["name"].astype(str), labels["group"]):
            if isinstance(g, str) and g.strip():
                join(("name", n), ("label", g.strip()))
    pairs, rows = read_groups(groups_csv, set(names) | set(man["name"].astype(str)), encoding)
    for n, g in pairs:
        join(("name", n), ("csv", g))
    for same in content_groups(man):
        for n in same[1:]:
            join(("name", same[0]), ("name", n))
    first: dict[tuple[str, str], str] = {}
    for n in sorted(set(names)):
        first.setdefault(find(("name", n)), n)
    return np.array([first[find(("name", n))] for n in names], dtype=object), rows


def assign_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index (0..folds-1) per row: stratified group k-fold, every group in exactly one fold.

    The algorithm of sklearn's StratifiedGroupKFold(shuffle=True, random_state=seed) (1.9), and its folds
    exactly (tests/test_folds.py compares them on random and skewed inputs): the groups, numbered by sorted
    value, are shuffled by a RandomState(seed) permutation, then placed one by one, most class-skewed first
    (stable: ties keep the shuffled order), into the fold where the mean over classes of the std across
    folds of each class's share is lowest (ties: the fold with fewer rows). So the folds depend on
    (y, groups, seed), not on the row order. With one row per group it stratifies like StratifiedKFold.
    Written out rather than imported because sklearn's import costs 0.65 s of every training job. A class
    with fewer groups than folds is missing from some folds (short_classes names it); fewer groups than
    folds in all, or every class smaller than `folds`, is refused."""
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    if len(y) < folds:
        _refuse(folds, f"Cannot have number of splits n_splits={folds} greater than the number of samples: "
                       f"n_samples={len(y)}.")
    _, y_inv, y_cnt = np.unique(y, return_inverse=True, return_counts=True)
    if np.all(folds > y_cnt):
        _refuse(folds, f"n_splits={folds} cannot be greater than the number of members in each class.")
    _, g_inv, g_cnt = np.unique(groups, return_inverse=True, return_counts=True)
    if folds > len(g_cnt):
        _refuse(folds, f"Cannot have number of splits n_splits={folds} greater than the number of groups: "
                       f"{len(g_cnt)}.")
    counts = np.zeros((len(g_cnt), len(y_cnt)))             # rows of each class per group
    np.add.at(counts, (g_inv, y_inv), 1)
    perm = np.arange(len(g_cnt))
    np.random.RandomState(seed).shuffle(perm)
    counts = counts[perm]
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    g_inv = inv[g_inv]                                      # group numbers after the shuffle
    per_fold = np.zeros((folds, len(y_cnt)))
    fold_of_group = np.empty(len(g_cnt), dtype=np.int64)
    for g in np.argsort(-np.std(counts, axis=1), kind="stable"):
        best, best_eval, best_rows = 0, np.inf, np.inf
        for f in range(folds):
            per_fold[f] += counts[g]
            evaluation = np.mean(np.std(per_fold / y_cnt.reshape(1, -1), axis=0))
            per_fold[f] -= counts[g]
            rows = np.sum(per_fold[f])
            if evaluation < best_eval or (np.isclose(evaluation, best_eval) and rows < best_rows):
                best, best_eval, best_rows = f, evaluation, rows
        per_fold[best] += counts[g]
        fold_of_group[g] = best
    return fold_of_group[g_inv]


def _refuse(folds: int, why: str) -> None:
    raise SystemExit(f"config key classify.folds = {folds}: {why} (videos of one group share a fold: "
                     f"{KEY}, the label CSV's group column, identical bytes). Lower classify.folds.")


def short_classes(y: np.ndarray, groups: np.ndarray, classes: list[str], folds: int) -> dict[str, int]:
    """Classes with labels whose rows form fewer than `folds` groups -> their number of groups: some folds
    hold none of that class, so its held-out rows are scored by models that saw few or none of it."""
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    n = {c: len(np.unique(groups[y == i])) for i, c in enumerate(classes)}
    return {c: k for c, k in n.items() if 0 < k < folds}


def test_copies(manifests: list[str] | tuple[str, ...] | pd.DataFrame, split: dict[str, str]) -> set[str]:
    """Labeled names (split[name] == "labeled") whose bytes equal a test clip's (split "test")."""
    out: set[str] = set()
    for same in content_groups(read_manifests(manifests)):
        if any(split.get(n) == "test" for n in same):
            out |= {n for n in same if split.get(n) == "labeled"}
    return out


def copy_rows(names: set[str] | list[str]) -> list[dict]:
    """The QC row (stage labels) of each labeled copy of a test clip left out of training and scoring."""
    return [qc(n, TEST_COPY, "labels") for n in sorted(names)]

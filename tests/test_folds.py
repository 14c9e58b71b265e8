"""Fold groups (expmae.train.folds): copies, speakers and source videos stay within one fold; labeled copies
of test clips are found; a bad groups CSV gives QC rows, never an exception."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmae import labels
from expmae.check import Row, check_groups
from expmae.train import folds as fg

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def manifest(path: Path, content: dict[str, str]) -> str:
    """An ingest manifest (name, path, size, mtime_ns, sha256) whose 'bytes' per name are `content`."""
    sha = [hashlib.sha256(c.encode()).hexdigest() for c in content.values()]
    pd.DataFrame({"name": list(content), "path": [f"/v/{n}.mp4" for n in content], "size": 100,
                  "mtime_ns": 0, "sha256": sha}).to_parquet(path)
    return str(path)


def test_copies_share_a_fold(tmp_path):
    names = [f"v{i:02d}" for i in range(40)]
    man = manifest(tmp_path / "s00000.parquet", {n: n for n in names} | {"v03": "same", "v27": "same"})
    gid, rows = fg.fold_groups(names, manifests=[man])
    assert rows == [] and gid[3] == gid[27] == "v03" and len(set(gid)) == 39
    y = np.arange(40) % 2
    for seed in range(5):
        f = fg.assign_folds(y, gid, 5, seed)
        assert f[3] == f[27] and set(f) == set(range(5))


def test_label_group_column_keeps_a_speaker_in_one_fold(tmp_path):
    p = tmp_path / "labels.csv"
    rng = np.random.default_rng(0)
    rows = [(f"spk{s}_{i}", CLASSES[rng.integers(3)], f"spk{s}") for s in range(12) for i in range(5)]
    pd.DataFrame(rows + [("lone", "happy", "")], columns=["name", "discrete", "group"]).to_csv(p, index=False)
    lab, issues = labels.read_labels(p, CLASSES)
    assert issues == [] and list(lab.columns) == ["name", "y", "valence", "group"]
    assert lab.set_index("name").loc["lone", "group"] == ""
    gid, _ = fg.fold_groups(lab["name"].tolist(), lab)
    assert len(set(gid)) == 13
    f = fg.assign_folds(lab["y"].to_numpy(), gid, 4, seed=1)
    by_speaker = pd.Series(f).groupby(lab["group"].str[:5].to_numpy()).nunique()
    assert (by_speaker == 1).all()
    # without a group column, read_labels' table is as before
    q = tmp_path / "plain.csv"
    q.write_text("name,discrete\na,happy\n")
    assert list(labels.read_labels(q, CLASSES)[0].columns) == ["name", "y", "valence"]


def test_union_across_relations_and_namespaces_apart(tmp_path):
    names = ["a", "b", "c", "d", "e", "f", "g"]
    lab = pd.DataFrame({"name": ["a", "b", "e", "f"], "y": 0, "valence": np.nan, "group": ["1", "1", "", "x"]})
    (tmp_path / "g.csv").write_text("name,group\nc,spk\nd,spk\ng,1\n")
    man = manifest(tmp_path / "s00000.parquet", {"b": "B", "c": "B", "e": "E", "f": "F", "g": "G"})
    gid, rows = fg.fold_groups(names, lab, str(tmp_path / "g.csv"), [man])
    # a~b (label group 1), b~c (bytes), c~d (data.groups spk); "1" of the label CSV is not "1" of data.groups
    assert rows == [] and list(gid) == ["a", "a", "a", "a", "e", "f", "g"]
    # ids and groups do not depend on the order of the names
    gid2, _ = fg.fold_groups(names[::-1], lab.iloc[::-1], str(tmp_path / "g.csv"), [man])
    assert list(gid2) == list(gid)[::-1]


def test_assign_folds_is_deterministic_under_row_permutation():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 4, n)
    groups = np.array([f"g{k}" for k in rng.integers(0, 90, n)], dtype=object)
    f = fg.assign_folds(y, groups, 5, seed=7)
    for _ in range(3):
        perm = rng.permutation(n)
        assert (fg.assign_folds(y[perm], groups[perm], 5, seed=7) == f[perm]).all()
    assert (pd.Series(f).groupby(groups).nunique() == 1).all()
    assert not (fg.assign_folds(y, groups, 5, seed=8) == f).all()


def sklearn_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    out = np.full(len(y), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has only ..."
        for f, (_, held) in enumerate(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
                np.zeros((len(y), 1)), y, groups)):
            out[held] = f
    return out


@pytest.mark.parametrize("case", range(40))
def test_assign_folds_equals_sklearns_stratified_group_kfold(case):
    """assign_folds is sklearn's StratifiedGroupKFold written out (no sklearn import in a training job):
    the very same folds, for singletons, speakers, skewed and missing classes, any seed and fold count."""
    rng = np.random.default_rng(case)
    n, k = int(rng.integers(12, 400)), int(rng.integers(2, 8))
    y = rng.choice(6, n, p=rng.dirichlet(np.ones(6) * (0.3 if case % 3 else 3)))
    per_group = 1 if case % 4 == 0 else int(rng.integers(2, 9))
    groups = np.array([f"g{i}" for i in rng.integers(0, max(k, n // per_group), n)], dtype=object)
    if case % 5 == 0:  # a group column that follows the class (a speaker with one emotion)
        groups = np.array([f"c{c}_{i % 7}" for i, c in enumerate(y)], dtype=object)
    seed = int(rng.integers(0, 2**31))
    try:
        ref = sklearn_folds(y, groups, k, seed)
    except ValueError as err:
        with pytest.raises(SystemExit, match=str(err).split(":")[0][:40]):
            fg.assign_folds(y, groups, k, seed)
        return
    assert (fg.assign_folds(y, groups, k, seed) == ref).all()


def test_training_jobs_do_not_import_sklearn():
    """The folds and the training loop load without sklearn and torch._dynamo (0.65 + 0.9 s of each of the
    demo's 38 training jobs): a fresh interpreter imports the job's module and assigns folds."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from expmae.train import cv, fit, optim;"
            "cv.assign_folds(np.arange(20) % 2, np.arange(20).astype(str), 5, 0);"
            "import torch; m = torch.nn.Linear(3, 2); o = optim.AdamW(m.parameters(), 1e-3, 1e-4);"
            "m(torch.ones(4, 3)).sum().backward(); o.step();"
            "print(sorted(k for k in ('sklearn', 'scipy', 'torch._dynamo') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_singleton_groups_stratify_like_stratified_kfold():
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(0)
    y = rng.choice(6, 700, p=[0.35, 0.2, 0.2, 0.1, 0.1, 0.05])
    names = np.array([f"v{i:04d}" for i in range(len(y))], dtype=object)
    f = fg.assign_folds(y, names, 5, seed=0)
    ref = np.zeros(len(y), int)
    for k, (_, held) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(y, y)):
        ref[held] = k

    def worst(folds: np.ndarray) -> float:  # largest gap between a fold's class share and the overall share
        share = pd.crosstab(folds, y, normalize="index")
        return float((share - np.bincount(y) / len(y)).abs().to_numpy().max())

    sizes = np.bincount(f)
    assert sizes.max() - sizes.min() <= 1, sizes
    assert worst(f) <= max(0.02, worst(ref) + 0.01), (worst(f), worst(ref))


def test_too_few_groups_refused_and_short_classes_named():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.array(["a", "a", "b", "b", "c", "c", "c", "d"])
    with pytest.raises(SystemExit, match="classify.folds"):
        fg.assign_folds(y, groups, 5, 0)
    assert fg.short_classes(y, groups, CLASSES, 3) == {"neutral": 2, "angry": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fg.assign_folds(y, groups, 3, 0)
    assert set(f) == {0, 1, 2} and f[0] == f[1] and f[4] == f[5] == f[6]


def test_labeled_copy_of_a_test_clip_is_found(tmp_path):
    man = manifest(tmp_path / "s00000.parquet", {"t1": "T", "l1": "T", "u1": "T", "l2": "L", "l3": "L", "t2": "X"})
    split = {"t1": "test", "t2": "test", "l1": "labeled", "l2": "labeled", "l3": "labeled", "u1": "unlabeled"}
    got = fg.test_copies([man], split)
    assert got == {"l1"}
    assert fg.copy_rows(got) == [{"name": "l1", "stage": "labels", "reason": fg.TEST_COPY}]
    assert fg.TEST_COPY.startswith("labeled copy of a test clip: ") and "train/test leakage" in fg.TEST_COPY
    assert fg.test_copies([], split) == set()


def test_bad_groups_csv_gives_qc_rows_not_exceptions(tmp_path):
    p = tmp_path / "groups.csv"
    p.write_bytes("name,group\nRenée,film1\nb,film1\nb,film1\nb,film2\nghost,film1\nc,\n,film3\nd,caf\xe9\n"
                  .encode("latin-1"))
    names = ["Renée", "b", "c", "d"]
    gid, rows = fg.fold_groups(names, groups_csv=str(p), encoding="latin-1")
    kinds = {(r["name"], r["reason"].split(":")[0]) for r in rows}
    assert {("b", "duplicate groups row"), ("b", "several groups"), ("ghost", "group for a video that was not found"),
            ("c", "empty group"), ("", "groups row without a name")} <= kinds, rows
    assert gid[0] == gid[1] == "Renée"
    # without the encoding: é is no UTF-8 / GB18030, so rows say so (bytes replaced, unknown names), no exception
    _, rows = fg.fold_groups(names, groups_csv=str(p))
    assert any(r["reason"].startswith("bytes replaced") for r in rows)
    # missing file, no group column, empty file: a row each
    (tmp_path / "nocol.csv").write_text("name,speaker\nb,x\n")
    (tmp_path / "empty.csv").write_text("")
    for f, kind in [("nope.csv", "file not found"), ("nocol.csv", "no group column"), ("empty.csv", "empty CSV")]:
        gid, rows = fg.fold_groups(names, groups_csv=str(tmp_path / f))
        assert [r["reason"].split(":")[0] for r in rows] == [kind] and list(gid) == names


def test_check_reports_groups(tmp_path):
    lab = tmp_path / "labels.csv"
    pd.DataFrame({"name": [f"v{i}" for i in range(12)],
                  "discrete": ["happy"] * 6 + ["sad"] * 6}).to_csv(lab, index=False)
    (tmp_path / "groups.csv").write_text("name,group\n" + "".join(f"v{i},s{i % 2}\n" for i in range(6))
                                         + "v6,s2\nv7,s2\nghost,s9\n")
    (tmp_path / "res" / "ingest").mkdir(parents=True)
    manifest(tmp_path / "res" / "ingest" / "s00000.parquet",
             {f"v{i}": f"v{i}" for i in range(12)} | {"v9": "T", "t": "T"})
    cfg = {"data": {"labels": str(lab), "groups": str(tmp_path / "groups.csv")}, "classes": CLASSES,
           "classify": {"folds": 3}, "results": str(tmp_path / "res")}
    names = {f"v{i}" for i in range(12)} | {"t"}
    rows: list[Row] = []
    check_groups(cfg, names, names - {"t"}, {"t"}, rows)
    text = "\n".join(f"{r.level} {r.item} {r.value}" for r in rows)
    assert "12 labeled videos in 7 groups" in text and "largest: 3 videos" in text, text
    assert any(r.level == "warn" and r.value.startswith("happy") and "2 group(s)" in r.value for r in rows), text
    assert any(r.item == "data.groups" and "group for a video that was not found" in r.value for r in rows), text
    assert any(r.item == "labeled copies of test clips" and "v9" in r.value for r in rows), text
    cfg["classify"]["folds"] = 8
    rows = []
    check_groups(cfg, names, names - {"t"}, {"t"}, rows)
    assert any(r.level == "error" and "form 7 groups" in r.value for r in rows)

"""expmae.train.cv: cross-validation learns and fuses, inner splits and epoch selection, grouped
modalities, seed ensembles, training rows only where a feature set has data, refusals before training,
the schema defaults as the training settings.

A feature set with too little data is skipped, not fatal: expmae.train.cv writes a `skipped` result,
fused heads and late fusion leave the set out, pseudo-label selection and the report never count it.

Real Parquet feature shards and real CLI entry points (cv.main, late.main, report.load_models); no
Snakemake (tests/test_workflow_optional_inputs.py runs the workflow without transcripts)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from expmae import config
from expmae.io import read_features, write_features
from expmae.report import load_models
from expmae.train import cv, data, fit, late, plan, scoring
from expmae.train.pseudo import choose_source, select
from fixtures.training import CLASSES, P0, make_ds

SKIP_CLASSES = ["neutral", "angry", "happy"]  # the skip path's three classes
PARAMS = json.dumps({"folds": 2, "seeds": 1, "epochs": 3, "early_stop": 0.0})
# the seed-ensemble tests: two seeds, a few epochs
P = plan.train_params({"early_stop": 0.0, "epochs": 8, "seeds": 2})

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def sets(tmp_path: Path) -> Path:
    """`audio` has data for every video; `text` for 3 labeled videos only (ASR found few words)."""
    rng = np.random.default_rng(0)
    n = 30
    names = [f"v{i:02d}" for i in range(n)]
    y = np.arange(n) % 3
    for fs, dim, has in (("audio", 6, np.ones(n, bool)), ("text", 4, np.arange(n) < 3)):
        X = np.eye(3)[y] @ rng.normal(size=(3, dim)) + rng.normal(size=(n, dim)) * 0.3
        write_features(tmp_path / f"{fs}.parquet", names, np.where(has[:, None], X, 0), has, {"extractor": fs})
    pd.DataFrame({"name": names[:24], "discrete": [SKIP_CLASSES[i] for i in y[:24]]}).to_csv(
        tmp_path / "labels.csv", index=False)
    return tmp_path


def _cv(d: Path, out: str, head: str, *features: str) -> dict:
    argv = ["--head", head, "--labels", str(d / "labels.csv"), "--classes", ",".join(SKIP_CLASSES),
            "--out", str(d / out), "--params", PARAMS]
    for fs in features:
        argv += ["--features", f"{fs}={d / fs}.parquet"]
    if head != "mlp":
        argv += ["--kind", "fused", "--combo", "all", "--name", head]
    cv.main(argv)
    return json.loads((d / out / "metrics.json").read_text())


def test_sparse_set_is_skipped_and_left_out_downstream(sets: Path, capsys):
    m = _cv(sets, "text", "mlp", "text")
    assert "text" in m["skipped"] and m["name"] == "text" and m["weighted_f1"] is None
    probs = pd.read_parquet(sets / "text" / "probs.parquet")
    assert len(probs) == 0 and {"name", "split", "y", "fold", "prob_happy", "no_data"} <= set(probs.columns)
    assert not (sets / "text" / "model.safetensors").exists()
    assert _cv(sets, "audio", "mlp", "audio")["weighted_f1"] >= 0
    # a fused head trains on the sets with data and names the one it left out
    fm = _cv(sets, "fbp", "fbp", "audio", "text")
    assert fm["modality_order"] == ["audio"] and set(fm["skipped_sets"]) == {"text"} and fm["weighted_f1"] >= 0
    # late fusion: the skipped member is out of the mean and named
    late.main(["--kind", "fused", "--combo", "all", "--name", "late", "--members", str(sets / "audio"),
               str(sets / "text"), "--labels", str(sets / "labels.csv"), "--classes", ",".join(SKIP_CLASSES),
               "--out", str(sets / "late"), "--params", PARAMS])
    lm = json.loads((sets / "late" / "metrics.json").read_text())
    assert lm["members"] == ["audio"] and set(lm["skipped_members"]) == {"text"}
    lp, ap = pd.read_parquet(sets / "late" / "probs.parquet"), pd.read_parquet(sets / "audio" / "probs.parquet")
    np.testing.assert_allclose(lp["prob_happy"], ap["prob_happy"], atol=1e-5)  # the mean of one member
    # only skipped members: late fusion is skipped too, with the empty table
    late.main(["--kind", "fused", "--combo", "all", "--name", "late", "--members", str(sets / "text"),
               "--labels", str(sets / "labels.csv"), "--classes", ",".join(SKIP_CLASSES), "--out", str(sets / "late2"),
               "--params", PARAMS])
    assert json.loads((sets / "late2" / "metrics.json").read_text())["skipped"]
    assert len(pd.read_parquet(sets / "late2" / "probs.parquet")) == 0
    # pseudo-labels: a skipped source gives way to the best model
    dirs = [str(sets / n) for n in ("text", "audio", "fbp")]
    assert choose_source(dirs, "text").name in {"audio", "fbp"}
    assert choose_source(dirs).name != "text"
    # the report: never a candidate, named with its reason
    rounds, _, _, skipped = load_models(dirs + [str(sets / "late2")], sets / "results")
    assert "text" not in rounds["0"] and {s["name"] for s in skipped} == {"text", "late"}
    assert "too few labeled videos" in next(s["reason"] for s in skipped if s["name"] == "text")


def test_too_few_labels_stays_an_error(sets: Path):
    """Labels too few for the folds (not a sparse set) is still refused, naming classify.folds."""
    lab = pd.read_csv(sets / "labels.csv").head(4)
    lab.to_csv(sets / "labels.csv", index=False)
    with pytest.raises(SystemExit, match="classify.folds"):
        _cv(sets, "audio", "mlp", "audio")


@pytest.mark.slow
def test_cross_validation_learns_and_fbp_fuses(tmp_path):
    paths, y = make_ds(tmp_path)
    ds = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES, tmp_path / "tl.csv")
    assert (ds.split == "labeled").sum() == 59 and (ds.split == "test").sum() == 20
    assert any("unknown label" in i["reason"] for i in ds.issues)
    _, X, mask, _ = read_features(paths["a"])
    assert not mask[3] and not X[3].any()
    p = {**P0, "epochs": 60}
    df, m, states = cv.cross_validate(ds, "fbp", CLASSES, p)
    assert m["weighted_f1"] > 0.6 and m["test_weighted_f1"] > 0.6
    # v003 (labeled, no modality at all) is no training or scored row: fold -1, flagged, the class prior
    assert set(df.loc[(df.split == "labeled") & (df.name != "v003"), "fold"]) == set(range(5))
    v3 = df.set_index("name").loc["v003"]
    assert v3["fold"] == -1 and v3["no_data"] == scoring.NO_DATA and m["n_labeled"] == 58
    assert m["n_labeled_without_data"] == 1
    df2, m2, _ = cv.cross_validate(ds, "fbp", CLASSES, p)
    pd.testing.assert_frame_equal(df, df2)  # deterministic given the seed
    assert any(k.startswith("seed0.fold4.") for k in states)
    # valence (posterior x class means, per fold), scored out-of-fold; better than predicting the mean
    lab = ds.split == "labeled"
    assert m["valence_mse"] < 0.75 * np.nanvar(ds.valence[lab]) and m["test_valence_mse"] < 1.0
    _, mr, st = cv.cross_validate(ds, "mlp", CLASSES, {**p, "valence": "ridge", "epochs": 5})
    assert mr["valence_mse"] < 0.5 * np.nanvar(ds.valence[lab]) and "seed0.fold0.valence.coef" in st
    _, mn, _ = cv.cross_validate(ds, "mlp", CLASSES, {**p, "valence": "none", "epochs": 5})
    assert "valence_mse" not in mn
    assert m["mer_combined"] == pytest.approx(m["weighted_f1"] - 0.25 * m["valence_mse"])
    assert df.loc[df.split == "test", "valence"].notna().all()
    # every fold model's probabilities are kept; `agree` is the share agreeing with the ensemble
    unl = (df.split != "labeled").to_numpy()
    folds = np.stack([df[[f"f{f}_{c}" for c in CLASSES]].to_numpy() for f in range(5)])
    np.testing.assert_allclose(folds.mean(0)[unl], df[[f"prob_{c}" for c in CLASSES]].to_numpy()[unl], atol=1e-6)
    assert ((folds.argmax(2) == folds.mean(0).argmax(1)).mean(0)[unl] == df["agree"].to_numpy()[unl]).all()
    assert len(m["curves"]) == 5 and len(m["curves"][0]["train"]) == 60 and len(m["curves"][0]["val"]) == 60
    assert m["epoch_selection"]["mode"] == ["fixed"] and m["epoch_selection"]["chosen"] == [60] * 5
    # early stopping on a large enough holdout of the training rows: keeps the best inner-loss epoch
    de, me, _ = cv.cross_validate(ds, "fbp", CLASSES, {**p, "early_stop": 0.25, "early_stop_min_rows": 5})
    c = me["curves"][0]
    assert c["selection"] == "holdout" and me["weighted_f1"] > 0.6
    assert len(c["inner"]) == 60 and c["best_epoch"] == int(np.argmin(c["inner"])) + 1
    # a holdout below early_stop_min_rows: inner cross-validation picks the count, the model trains on every row
    di, mi, _ = cv.cross_validate(ds, "fbp", CLASSES, {**p, "early_stop": 0.2, "early_stop_min_rows": 50})
    c = mi["curves"][0]
    assert c["selection"] == "inner-cv" and mi["weighted_f1"] > 0.6
    assert c["best_epoch"] == fit.best_epoch(c["inner"], c["inner_acc"]) == len(c["train"])
    # the inner models stop once the pooled curve has not improved for `patience` epochs
    assert len(c["inner"]) == min(60, c["best_epoch"] + p["patience"])
    ci = cv.cross_validate(ds, "fbp", CLASSES, {**p, "early_stop": 0.2, "patience": 3})[1]["curves"][0]
    assert len(ci["inner"]) == min(60, ci["best_epoch"] + 3)
    es = mi["epoch_selection"]
    assert es["chosen"] == [cc["best_epoch"] for cc in mi["curves"]] and es["flag"] == bool(es["at_edge"])
    # attention and concat over grouped modalities train too; modality dropout stays deterministic
    pa = {**p, "modality_dropout": 0.3}
    da, ma, _ = cv.cross_validate(ds, "attention", CLASSES, pa, spec={"ab": ["a", "b"], "b": ["b"]})
    assert ma["weighted_f1"] > 0.6 and ma["modalities"] == {"ab": ["a", "b"], "b": ["b"]}
    pd.testing.assert_frame_equal(da, cv.cross_validate(ds, "attention", CLASSES, pa, spec={"ab": ["a", "b"], "b": ["b"]})[0])


def test_inner_split_is_stratified():
    y = np.array([0] * 10 + [1] * 5 + [2] * 2)
    inner = fit.inner_split(y, 0.2, seed=0)
    assert np.bincount(y[inner], minlength=3).tolist() == [2, 1, 0]
    np.testing.assert_array_equal(inner, fit.inner_split(y, 0.2, seed=0))
    parts = fit.inner_parts(y, 3, seed=0)  # disjoint, covering, stratified, equal in size
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(y))) and [len(q) for q in parts] == [6, 6, 5]
    assert all(np.bincount(y[q], minlength=3)[0] in (3, 4) for q in parts)


def test_epoch_edges_are_flagged():
    curves = [{"best_epoch": 1, "selection": "inner-cv"}, {"best_epoch": 40, "selection": "inner-cv"},
              {"best_epoch": 100, "selection": "holdout"}, {"best_epoch": 100, "selection": "fixed"}]
    es = cv.epoch_summary(curves, folds=2, epochs=100)
    assert es["at_edge"] == ["seed0.fold0: epoch 1 of 100", "seed1.fold0: epoch 100 of 100"] and es["flag"]
    assert es["mode"] == ["fixed", "holdout", "inner-cv"] and es["median"] == 70.0


def test_group_concatenates_a_modality_and_merges_masks(tmp_path):
    paths, _ = make_ds(tmp_path)
    ds = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES)
    ds.mask[7, 0] = False
    inp, mask, mods = cv.group(ds, {"both": ["b", "a"], "a": ["a"]})
    X = inp.xs
    assert mods == ["both", "a"] and X[0].shape == (120, 32) and X[1].shape == (120, 12)
    np.testing.assert_array_equal(X[0][:, :20], ds.X[1])
    assert mask[7].tolist() == [True, False] and mask[3].tolist() == [False, False]
    with pytest.raises(SystemExit, match="fuse.modalities"):
        cv.group(ds, {"x": ["nope"]})
    stats = fit.scaler(inp)
    Z = fit.scale(inp, stats)
    assert not Z[1][7].any() and abs(Z[1][mask[:, 1]].mean()) < 1e-5  # absent -> 0, present standardised
    # inside a modality each feature set has its own mask: v007 has b but not a; a's zeros stay out of the
    # statistics and a's block is 0 after scaling, b's block standardised
    has_a = ds.mask[:, 0]
    np.testing.assert_allclose(stats[0][0][20:], X[0][has_a, 20:].mean(0), rtol=1e-5, atol=1e-6)
    assert not Z[0][7, 20:].any() and Z[0][7, :20].any()
    assert abs(Z[0][has_a, 20:].mean()) < 1e-5 and abs(Z[0][mask[:, 0], :20].mean()) < 1e-5


def test_train_params_are_the_schema_defaults():
    """A direct `python -m expmae.train.cv` trains with exactly the workflow's settings."""
    p = plan.train_params({})
    cls, fuse = config.defaults("classify"), config.defaults("fuse")
    assert p == {**{k: v for k, v in cls.items() if k != "feature_sets"}, "seed": 0, "seeds": 3,
                 **{k: fuse[k] for k in ("modality_dropout", "fbp_dim", "fbp_factor")}}
    assert p["early_stop"] == 0.2 and p["folds"] == 5 and p["batch_size"] == 32
    assert plan.train_params({"epochs": 3, "seed": 4, "fbp_dim": 8}) == {**p, "epochs": 3, "seed": 4, "fbp_dim": 8}
    with pytest.raises(ValueError, match=r"classify\.folds"):
        plan.train_params({"folds": 1})
    with pytest.raises(ValueError, match="classify"):
        plan.train_params({"nope": 1})


def synthetic(tmp_path, per_class=8, n_unl=10, masked=()):
    """Two feature sets a, b carrying the class; `masked`: (set, row) pairs without data."""
    rng = np.random.default_rng(0)
    n_lab = per_class * len(CLASSES)
    y = np.r_[np.arange(n_lab) % len(CLASSES), rng.integers(0, 6, n_unl)]
    names = [f"v{i:03d}" for i in range(len(y))]
    paths = {}
    for m, dim in (("a", 6), ("b", 8)):
        X = rng.normal(size=(6, dim))[y] * 2 + rng.normal(size=(len(y), dim))
        mask = np.ones(len(y), bool)
        mask[[r for s, r in masked if s == m]] = False
        write_features(tmp_path / f"{m}.parquet", names, np.where(mask[:, None], X, 0.0), mask, {"extractor": m})
        paths[m] = [str(tmp_path / f"{m}.parquet")]
    pd.DataFrame({"name": names[:n_lab], "discrete": [CLASSES[i] for i in y[:n_lab]]}).to_csv(tmp_path / "l.csv", index=False)
    pd.DataFrame({"name": names[n_lab:n_lab + 3] + ["ghost"]}).to_csv(tmp_path / "t.csv", index=False)
    return paths


def test_seed_ensemble_means_and_keeps_every_seed(tmp_path):
    paths = synthetic(tmp_path)
    ds = data.load(paths, tmp_path / "l.csv", tmp_path / "t.csv", CLASSES)
    df, m, states = cv.cross_validate(ds, "fbp", CLASSES, {**P, "folds": 4})
    assert m["seeds"] == [0, 1] and len(m["per_seed"]) == 2 and m["weighted_f1_std"] is not None
    f1s = [s["weighted_f1"] for s in m["per_seed"]]
    assert m["weighted_f1_seed_mean"] == pytest.approx(np.mean(f1s))
    assert m["weighted_f1_std"] == pytest.approx(np.std(f1s, ddof=1)) and scoring.rank_score(m) == m["weighted_f1"]  # ranked on what is deployed
    seeds = np.stack([df[[f"s{s}_{c}" for c in CLASSES]].to_numpy() for s in range(2)])
    np.testing.assert_allclose(df[[f"prob_{c}" for c in CLASSES]].to_numpy(), seeds.mean(0), atol=1e-6)
    # the reported score is the seed ensemble's (the written predictions'), inside its interval
    oof = (df.split == "labeled").to_numpy() & (df.fold >= 0).to_numpy()
    ens = f1_score(df.y[oof], seeds.mean(0)[oof].argmax(1), average="weighted", zero_division=0)
    lo, hi = m["weighted_f1_ci"]
    assert m["weighted_f1"] == pytest.approx(ens) and lo <= ens <= hi
    assert {k.split(".")[0] for k in states} == {"seed0", "seed1"} and "f7_neutral" in df and "f8_neutral" not in df
    # a test-list name without a video: a row, the class prior, flagged
    ghost = df.set_index("name").loc["ghost"]
    assert ghost["split"] == "test" and ghost["no_data"] == scoring.NO_VIDEO
    assert ghost[[f"prob_{c}" for c in CLASSES]].to_numpy(float) == pytest.approx(np.full(6, 1 / 6))


def test_a_feature_set_trains_only_on_its_rows_and_fusion_uses_masks(tmp_path):
    # v000: no a-data (b present); v001: no data at all; v050 (unlabeled): no data -> never a pseudo-label
    paths = synthetic(tmp_path, masked=[("a", 0), ("a", 1), ("b", 1), ("a", 50), ("b", 50)])
    da, ma, _ = cv.cross_validate(data.load({"a": paths["a"]}, tmp_path / "l.csv", "", CLASSES), "mlp", CLASSES,
                                  {**P, "folds": 4, "seeds": 1})
    rows = da.set_index("name")
    assert rows.loc["v000", "fold"] == -1 and rows.loc["v000", "no_data"] == scoring.NO_DATA and ma["n_labeled"] == 46
    ds = data.load(paths, tmp_path / "l.csv", "", CLASSES)
    df, m, _ = cv.cross_validate(ds, "attention", CLASSES, {**P, "folds": 4, "seeds": 1})
    rows = df.set_index("name")
    assert rows.loc["v000", "fold"] >= 0 and rows.loc["v001", "fold"] == -1 and m["n_labeled"] == 47
    assert m["n_labeled_without_data"] == 1
    issues = cv.data_issues(ds, cv.group(ds, None)[1])
    assert [i["name"] for i in issues] == ["v001"] and "left out of training and scoring" in issues[0]["reason"]
    assert "v050" not in set(select(df, CLASSES, threshold=0.0)["name"])


def test_too_few_labels_for_the_folds_is_refused_with_the_counts(tmp_path):
    paths = synthetic(tmp_path, per_class=1)
    ds = data.load(paths, tmp_path / "l.csv", "", CLASSES)
    with pytest.raises(SystemExit, match=r"classify\.folds = 5.*'neutral': 1.*label at least 2"):
        cv.cross_validate(ds, "mlp", CLASSES, {**P, "folds": 5})
    ds.y[ds.split == "labeled"] = 0  # one class only
    with pytest.raises(SystemExit, match=r"classify\.folds.*2 classes"):
        cv.cross_validate(ds, "mlp", CLASSES, {**P, "folds": 1})

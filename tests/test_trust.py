"""Numbers a reviewer can trust (issue 14): bootstrap intervals against a direct computation, seed
ensembles, training rows only where a feature set has data, refusals before training; and, end to
end on the tiny demo, identical scores for --cores 1 and 2, a seed spread > 0, a 1e-6 perturbation
moving the final OOF F1 less than its interval, a labeled zero-byte video that is no training row,
and the too-few-labels refusal on the console."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from expmae.io import write_features
from expmae.train import cv, data, plan, scoring, stats
from expmae.train.pseudo import choose_source, select

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
P = plan.train_params({"early_stop": 0.0, "epochs": 8, "seeds": 2})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bootstrap_interval_matches_a_direct_computation():
    """A small fixed table: 3 classes, 12 videos, 2 seeds. The interval is the 2.5/97.5% quantile of
    the seed-mean weighted F1 (sklearn) over the same resamples, computed here one by one."""
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    a = np.array([[0, 0, 1, 0, 1, 1, 2, 1, 2, 2, 0, 2], [0, 1, 1, 0, 1, 1, 1, 1, 2, 2, 2, 2]])
    b = np.array([[0, 0, 0, 0, 1, 2, 2, 2, 2, 1, 0, 0], [1, 0, 0, 0, 1, 1, 2, 2, 2, 0, 0, 0]])
    idx = stats.resamples(len(y), 100, seed=3)

    def direct(p):
        return np.array([np.mean([f1_score(y[i], s[i], average="weighted", zero_division=0) for s in p]) for i in idx])

    assert stats.bootstrap_ci(y, a, 3, n_boot=100, seed=3) == pytest.approx(
        [np.quantile(direct(a), 0.025), np.quantile(direct(a), 0.975)], abs=1e-12)
    d = direct(a) - direct(b)
    full = np.mean([f1_score(y, s, average="weighted") for s in a]) - np.mean([f1_score(y, s, average="weighted") for s in b])
    cmp = stats.paired_diff(y, a, b, 3, n_boot=100, seed=3)
    assert cmp["diff"] == pytest.approx(full, abs=1e-4) and cmp["n"] == 12
    assert cmp["ci"] == pytest.approx([np.quantile(d, 0.025), np.quantile(d, 0.975)], abs=1e-4)
    assert cmp["within_noise"] == (cmp["ci"][0] <= 0 <= cmp["ci"][1])
    # a model against itself: difference 0, interval [0, 0], within the noise
    assert stats.paired_diff(y, a, a, 3)["ci"] == [0.0, 0.0]
    # the same resamples every call: reruns give the same interval
    assert stats.bootstrap_ci(y, a, 3) == stats.bootstrap_ci(y, a, 3)


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


def test_an_unscored_model_is_never_the_pseudo_label_source(tmp_path):
    for name, f1 in (("fbp", None), ("late", 0.3)):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({**plan.identity(0, "fused", name, name, "all"), "weighted_f1": f1}))
    assert choose_source([str(tmp_path / "fbp"), str(tmp_path / "late")]).name == "late"
    with pytest.raises(SystemExit, match="valid out-of-fold score: no pseudo-labels"):
        choose_source([str(tmp_path / "fbp")])
    with pytest.raises(SystemExit, match="pseudolabel.source"):
        choose_source([str(tmp_path / "fbp"), str(tmp_path / "late")], "fbp")

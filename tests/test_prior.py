"""Prior-shift correction (expmae.train.prior): EM recovers a known shifted prior from calibrated
probabilities alone, leaves an unshifted pool alone, and its interval covers the truth."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from expmae.train import prior
from expmae.train.scoring import probs_frame

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
BALANCED = np.full(6, 1 / 6)
MER2023_TEST3 = np.array([166, 183, 169, 257, 45, 14]) / 834  # sad 31%, worried 5%
TOL = 0.03  # max absolute error per class share, 4000 rows, classes 1.5 sd apart


def calibrated_pool(target: np.ndarray, n: int, seed: int, source: np.ndarray = BALANCED) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn with class prior `target` from 2-d Gaussians (one mean per class, unit variance) and their
    exact Bayes posteriors under the prior `source`: a classifier calibrated on the source distribution."""
    rng = np.random.default_rng(seed)
    means = 1.5 * np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], 1) * 1.5
    y = rng.choice(6, size=n, p=target)
    x = means[y] + rng.normal(size=(n, 2))
    loglik = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(2)
    P = np.exp(loglik) * source[None]
    return P / P.sum(1, keepdims=True), y


def test_em_recovers_a_shifted_prior():
    P, y = calibrated_pool(MER2023_TEST3, 4000, 0)
    est, iters = prior.em_prior(P, BALANCED)
    truth = np.bincount(y, minlength=6) / len(y)
    assert np.abs(est - truth).max() < TOL, (est.round(3), truth.round(3))
    # the raw probabilities' mean is far off (what EM corrects): sad under-, worried over-estimated
    assert np.abs(P.mean(0) - truth).max() > 2 * TOL
    assert 1 < iters < 1000


def test_em_leaves_an_unshifted_prior_alone():
    P, y = calibrated_pool(BALANCED, 4000, 1)
    est, _ = prior.em_prior(P, BALANCED)
    assert np.abs(est - BALANCED).max() < TOL
    changed = (prior.reweight(P, BALANCED, est).argmax(1) != P.argmax(1)).mean()
    assert changed < 0.03  # re-weighting to the estimate moves few decisions when nothing shifted


def test_bootstrap_interval_covers_the_truth_and_reweighting_helps():
    P, y = calibrated_pool(MER2023_TEST3, 1500, 2)
    lo, hi = prior.bootstrap_prior(P, BALANCED, n_boot=100)
    truth = np.bincount(y, minlength=6) / len(y)
    assert ((lo <= truth + 1e-9) & (truth <= hi + 1e-9)).all()
    est, _ = prior.em_prior(P, BALANCED)
    acc = lambda Q: (Q.argmax(1) == y).mean()  # noqa: E731
    assert acc(prior.reweight(P, BALANCED, est)) > acc(P)


def test_prior_report_and_corrected_table():
    """On a probs table: labeled OOF rows give the source prior, test rows the estimate; with test truth the
    corrected test F1 is recorded; corrected() re-weights only the test rows."""
    P_lab, y_lab = calibrated_pool(BALANCED, 600, 3)
    P_test, y_test = calibrated_pool(MER2023_TEST3, 600, 4)
    n_lab, n_test = len(y_lab), len(y_test)
    names = [f"v{i:04d}" for i in range(n_lab + n_test)]
    split = np.array(["labeled"] * n_lab + ["test"] * n_test)
    y = np.concatenate([y_lab, np.full(n_test, -1)])
    fold = np.concatenate([np.arange(n_lab) % 5, np.full(n_test, -1)])
    P = np.concatenate([P_lab, P_test]).astype(np.float32)
    df = probs_frame(names, split, y, fold, P, P[None], np.full(len(y), np.nan), CLASSES)
    truth = dict(zip(names[n_lab:], y_test.tolist()))
    rep = prior.prior_report(df, CLASSES, truth, n_boot=50)
    assert abs(rep["test_estimate"]["sad"] - rep["test_true"]["sad"]) < 0.05
    assert rep["test_estimate_ci"]["sad"][0] > rep["source"]["sad"]  # the shift is outside the noise
    assert abs(rep["oof_estimate"]["sad"] - rep["source"]["sad"]) < TOL  # no shift on the OOF rows
    assert rep["test_weighted_f1_corrected"] > rep["test_weighted_f1"]
    est = np.array([rep["test_estimate"][c] for c in CLASSES])
    out = prior.corrected(df, CLASSES, np.array([rep["source"][c] for c in CLASSES]), est)
    cols = [f"prob_{c}" for c in CLASSES]
    pd.testing.assert_frame_equal(out.iloc[:n_lab], df.iloc[:n_lab])
    assert not np.allclose(out[cols].to_numpy()[n_lab:], df[cols].to_numpy()[n_lab:])
    assert (out["pred"].iloc[n_lab:] == np.asarray(CLASSES)[out[cols].to_numpy()[n_lab:].argmax(1)]).all()


def test_calibration_undoes_overconfidence_before_em():
    """Outputs sharpened to the power 3 (an overconfident model): EM on them misses the prior; bias-corrected
    temperature scaling fitted on labeled source rows finds T ~ 3 and EM after it recovers the prior."""
    P_src, y_src = calibrated_pool(BALANCED, 3000, 5)
    P_test, y_test = calibrated_pool(MER2023_TEST3, 3000, 6)
    sharp = lambda P: P ** 3 / (P ** 3).sum(1, keepdims=True)  # noqa: E731
    T, b = prior.calibrate(sharp(P_src), y_src)
    assert abs(T - 3) < 0.3 and np.abs(b).max() < 0.2
    truth = np.bincount(y_test, minlength=6) / len(y_test)
    src = prior.calibrated(sharp(P_src), T, b).mean(0)
    fixed, _ = prior.em_prior(prior.calibrated(sharp(P_test), T, b), src)
    assert np.abs(fixed - truth).max() < TOL


def test_the_report_records_the_estimate_and_submits_the_correction_on_request(tmp_path):
    """expmae.report.options.prior_step on a real probs folder: the estimate always lands in final, the
    submission changes only with prior.correct."""
    from expmae import config
    from expmae.report.options import prior_step

    P_lab, y_lab = calibrated_pool(BALANCED, 300, 7)
    P_test, y_test = calibrated_pool(MER2023_TEST3, 300, 8)
    names = [f"v{i:04d}" for i in range(600)]
    df = probs_frame(names, np.array(["labeled"] * 300 + ["test"] * 300), np.concatenate([y_lab, np.full(300, -1)]),
                     np.concatenate([np.arange(300) % 5, np.full(300, -1)]), np.concatenate([P_lab, P_test]),
                     np.concatenate([P_lab, P_test])[None], np.zeros(600), CLASSES)
    df.to_parquet(tmp_path / "probs.parquet")
    truth = dict(zip(names[300:], y_test.tolist()))
    final = {"dir": str(tmp_path)}
    assert prior_step(final, CLASSES, truth, config.resolve("prior", {})) is None  # default: not applied
    assert final["prior_estimate"]["applied"] is False and final["prior_estimate"]["test_estimate"]["sad"] > 0.25
    csv = prior_step(final, CLASSES, truth, config.resolve("prior", {"correct": True, "calibrate": True}))
    sub = pd.read_csv(io.StringIO(csv))
    assert len(sub) == 300 and final["prior_estimate"]["calibration"]["temperature"] > 0
    assert (sub["discrete"] == "sad").sum() > (df["pred"].iloc[300:] == "sad").sum()
    from expmae.report.tables import prior_table  # the report page shows the estimate beside the truth

    page = prior_table(final["prior_estimate"])
    assert "test estimate [95%]" in page and f"{final['prior_estimate']['test_estimate']['sad']:.2f} [" in page
    assert "applied to the submission" in page


def test_the_demo_draws_its_test_split_with_mer2023s_prior():
    """expmae.demo --test-prior mer2023: the test classes in test3's proportion (largest remainder), and the
    draws of the other splits unchanged (the same RNG consumption), so their videos stay byte-identical."""
    from expmae.demo.dataset import class_counts, plan_clips
    from expmae.demo.spec import TEST_PRIORS

    assert class_counts(TEST_PRIORS["mer2023"], 96).tolist() == [19, 21, 19, 30, 5, 2]
    assert class_counts(TEST_PRIORS["balanced"], 48).tolist() == [8] * 6
    names = [f"t{i}" for i in range(96)]
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    shifted = plan_clips(names, "test", rng_a, 16, TEST_PRIORS["mer2023"])
    plan_clips(names, "test", rng_b, 16)
    assert pd.Series([r["discrete"] for r in shifted]).value_counts()["sad"] == 30
    assert rng_a.random() == rng_b.random()  # what is drawn after the test split does not move

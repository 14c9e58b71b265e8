"""Prior-shift correction: estimate the test pool's class prior from a model's own test probabilities
and re-weight them (config `prior:`).

A classifier trained where class c has prior q_c outputs p(c|x) calibrated to q. On a pool whose prior
is pi, Bayes gives p'(c|x) proportional to p(c|x) * pi_c / q_c, and pi is unknown. Saerens, Latinne and
Decaestecker (2002, "Adjusting the outputs of a classifier to new a priori probabilities: a simple
procedure") estimate it by EM: start at pi = q, re-weight every row's probabilities by pi / q (E step),
set pi to the mean of the re-weighted rows (M step), repeat until pi moves less than `tol`. It uses no
label of the pool. MER 2023 needs it: sad is 11% of train and 31% of test3, worried 14% -> 5%.

q, the prior the outputs are calibrated to, is the mean of the model's out-of-fold probabilities on
the labeled videos (what its outputs say the labeled prior is), not the label counts: pseudo-labels
and class-balanced training move a model's implicit prior away from the counts. The labeled counts
are reported beside it. The estimate's 95% interval is a bootstrap over the pool's videos (EM rerun on
every resample; fixed seed as in expmae.train.stats).

The same EM on the model's out-of-fold rows (labeled prior = q by construction) is the no-shift check:
it should leave the OOF score where it was; report.prior_report records both.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from expmae.train import stats
from expmae.train.scoring import weighted_f1

EPS = 1e-12


def reweight(P: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Bayes' correction of probabilities P [N, C] calibrated to prior `source` to the prior `target`."""
    W = P * (np.asarray(target, float) / np.maximum(np.asarray(source, float), EPS))[None]
    return W / np.maximum(W.sum(1, keepdims=True), EPS)


def em_prior(P: np.ndarray, source: np.ndarray, tol: float = 1e-6, max_iter: int = 1000) -> tuple[np.ndarray, int]:
    """EM estimate of the prior of the pool whose probabilities are P [N, C] (calibrated to `source`).
    -> (prior [C], iterations). An empty pool keeps `source`."""
    P, q = np.asarray(P, np.float64), np.asarray(source, np.float64)
    q = q / q.sum()
    if not len(P):
        return q, 0
    pi = q.copy()
    for it in range(1, max_iter + 1):
        new = reweight(P, q, pi).mean(0)
        if np.abs(new - pi).max() < tol:
            return new, it
        pi = new
    return pi, max_iter


def bootstrap_prior(P: np.ndarray, source: np.ndarray, n_boot: int = 200, seed: int = stats.BOOT_SEED,
                    level: float = stats.LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of em_prior over resamples of the pool's rows -> (lo [C], hi [C])."""
    P = np.asarray(P, np.float64)
    if not len(P):
        q = np.asarray(source, float) / np.sum(source)
        return q, q
    est = np.stack([em_prior(P[i], source)[0] for i in stats.resamples(len(P), n_boot, seed)])
    a = (1 - level) / 2
    return np.quantile(est, a, 0), np.quantile(est, 1 - a, 0)


def calibrate(P: np.ndarray, y: np.ndarray, iters: int = 200) -> tuple[float, np.ndarray]:
    """Bias-corrected temperature scaling (Alexandari et al. 2020, "Maximum likelihood with bias-corrected
    calibration is hard-to-beat at label shift adaptation"): T > 0 and class biases b minimising the
    cross-entropy of softmax(log P / T + b) on labeled rows. EM assumes calibrated outputs; a fused or
    pseudo-label-trained model's are not (late fusion's geometric mean is sharper than its members)."""
    from scipy.optimize import minimize

    Z, Y = np.log(np.clip(np.asarray(P, np.float64), EPS, 1)), np.eye(P.shape[1])[np.asarray(y, int)]

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        inv_t, b = np.exp(theta[0]), theta[1:]
        Q = _softmax(Z * inv_t + b)
        G = (Q - Y) / len(Z)
        return float(-(Y * np.log(np.clip(Q, 1e-12, 1))).sum() / len(Z)), np.concatenate([[(G * Z).sum() * inv_t], G.sum(0)])

    res = minimize(nll, np.zeros(1 + P.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": iters})
    return float(np.exp(-res.x[0])), res.x[1:]


def calibrated(P: np.ndarray, T: float, b: np.ndarray) -> np.ndarray:
    return _softmax(np.log(np.clip(np.asarray(P, np.float64), EPS, 1)) / T + b)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _rows(df: pd.DataFrame, split: str, oof: bool = False) -> pd.Series:
    ok = df["split"] == split
    if "no_data" in df:
        ok &= df["no_data"].fillna("") == ""  # rows predicted without data carry the prior, not evidence
    if oof:
        ok &= df["fold"] >= 0
    return ok


def corrected(df: pd.DataFrame, classes: list[str], source: np.ndarray, target: np.ndarray,
              cal: dict | None = None) -> pd.DataFrame:
    """A probs table whose test rows (those with data) are re-weighted to `target` (after the calibration map
    `cal` of prior_report, when given), pred/confidence with them; the seed and fold-model columns stay as trained."""
    cols = [f"prob_{c}" for c in classes]
    out = df.copy()
    rows = _rows(df, "test")
    if rows.any():
        P = df.loc[rows, cols].to_numpy(np.float64)
        if cal:
            P = calibrated(P, cal["temperature"], np.asarray(cal["bias"]))
        P = reweight(P, source, target)
        out.loc[rows, cols] = P.astype(np.float32)
        if "pred" in out:
            out.loc[rows, "pred"] = np.asarray(classes, object)[P.argmax(1)]
        if "confidence" in out:
            out.loc[rows, "confidence"] = P.max(1).astype(np.float32)
    return out


def prior_report(df: pd.DataFrame, classes: list[str], test_truth: dict[str, int] | None = None,
                 n_boot: int = 200, calibrate_first: bool = False) -> dict | None:
    """What metrics.json records of a (final) model's probs table: the labeled prior (counts), the prior its
    outputs are calibrated to (mean OOF probability), the test pool's EM estimate with its bootstrap interval,
    and with test labels the test weighted F1 before and after re-weighting; the same EM on the OOF rows as
    the no-shift check. None without test rows with data."""
    cols = [f"prob_{c}" for c in classes]
    lab, test = _rows(df, "labeled", oof=True), _rows(df, "test")
    if not test.any() or not lab.any():
        return None
    y_lab = df.loc[lab, "y"].to_numpy(int)
    P_lab, P_test = df.loc[lab, cols].to_numpy(np.float64), df.loc[test, cols].to_numpy(np.float64)
    raw_lab, raw_test = P_lab, P_test
    cal = None
    if calibrate_first:  # on the OOF rows (their labels are known), then the same map for the test rows
        T, b = calibrate(P_lab, y_lab)
        P_lab, P_test, cal = calibrated(P_lab, T, b), calibrated(P_test, T, b), {"temperature": round(T, 4),
                                                                                  "bias": [round(float(v), 4) for v in b]}
    source = P_lab.mean(0)
    est, iters = em_prior(P_test, source)
    lo, hi = bootstrap_prior(P_test, source, n_boot)
    oof_est, _ = em_prior(P_lab, source)

    def share(v: np.ndarray) -> dict[str, float]:
        return {c: round(float(x), 4) for c, x in zip(classes, v)}

    out = {"labeled_counts": share(np.bincount(y_lab, minlength=len(classes)) / len(y_lab)),
           "source": share(source), "test_estimate": share(est), "test_estimate_ci": {
               c: [round(float(a), 4), round(float(b), 4)] for c, a, b in zip(classes, lo, hi)},
           "em_iterations": iters, "n_test": int(test.sum()), "oof_estimate": share(oof_est), "calibration": cal,
           "weighted_f1": round(weighted_f1(y_lab, raw_lab.argmax(1)), 4),
           "weighted_f1_corrected": round(weighted_f1(y_lab, reweight(P_lab, source, oof_est).argmax(1)), 4)}
    truth = test_truth or {}
    names = df.loc[test, "name"].astype(str).to_numpy()
    known = np.array([n in truth for n in names])
    if known.any():
        y = np.array([truth[n] for n in names[known]], int)
        out["test_true"] = share(np.bincount(y, minlength=len(classes)) / len(y))
        out["test_weighted_f1"] = round(weighted_f1(y, raw_test[known].argmax(1)), 4)
        out["test_weighted_f1_corrected"] = round(weighted_f1(y, reweight(P_test[known], source, est).argmax(1)), 4)
    return out


def note(rep: dict, classes: list[str], min_change: float = 0.05) -> str:
    """One headline line: the classes whose estimated test share moves by >= min_change from the source."""
    moved = [c for c in classes if abs(rep["test_estimate"][c] - rep["source"][c]) >= min_change]
    parts = [f"{c} {rep['source'][c]:.0%} -> {rep['test_estimate'][c]:.0%} "
             f"[{rep['test_estimate_ci'][c][0]:.0%}, {rep['test_estimate_ci'][c][1]:.0%}]" for c in moved]
    return ", ".join(parts) or "no class moves by 5 points or more"

"""Scores of the MER 2023 challenge, in one place (checked against scikit-learn in the tests).

- weighted F1 over the discrete classes (the MER-SEMI ranking metric);
- accuracy;
- valence MSE (MER-MULTI's dimensional score);
- the MER 2023 combined score of the official baseline (MERTools `overall_metric`):
      combined = weighted_F1 - 0.25 * valence_MSE
NaN marks "not computable" (no rows, no valence), so a missing valence never fakes a score.
"""
from __future__ import annotations

import numpy as np

MSE_WEIGHT = 0.25  # MER 2023 baseline: final_score = emo_fscore - val_mse * 0.25


def confusion(y: np.ndarray, pred: np.ndarray, n_cls: int) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted."""
    cm = np.zeros((n_cls, n_cls), np.int64)
    np.add.at(cm, (np.asarray(y, int), np.asarray(pred, int)), 1)
    return cm


def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Per-class F1 averaged with the support of each true class (sklearn average='weighted',
    zero_division=0); classes that only appear in `pred` have zero weight."""
    y, pred = np.asarray(y, int), np.asarray(pred, int)
    if not len(y):
        return float("nan")
    n = int(max(y.max(), pred.max())) + 1
    cm = confusion(y, pred, n)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted  # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (support + predicted)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float((f1 * support).sum() / support.sum())


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    return float((y == pred).mean()) if len(y) else float("nan")


def mse(v: np.ndarray, v_hat: np.ndarray) -> float:
    """Mean squared error over the rows whose true value is known (NaN rows skipped)."""
    v, v_hat = np.asarray(v, float), np.asarray(v_hat, float)
    ok = np.isfinite(v) & np.isfinite(v_hat)
    return float(((v[ok] - v_hat[ok]) ** 2).mean()) if ok.any() else float("nan")


def combined(f1: float, valence_mse: float) -> float:
    """MER 2023 combined score; NaN when either part is unknown."""
    return float(f1 - MSE_WEIGHT * valence_mse)


def scores(y: np.ndarray, pred: np.ndarray, v: np.ndarray | None = None, v_hat: np.ndarray | None = None,
           prefix: str = "") -> dict[str, float]:
    """All scores of one split, keys prefixed (e.g. 'test_')."""
    out = {"weighted_f1": weighted_f1(y, pred), "accuracy": accuracy(y, pred)}
    if v is not None and v_hat is not None:
        out["valence_mse"] = mse(v, v_hat)
        out["mer_combined"] = combined(out["weighted_f1"], out["valence_mse"])
    return {prefix + k: v for k, v in out.items()}

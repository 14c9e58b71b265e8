"""Noise of a score: the spread over seeds and bootstrap intervals over videos.

A training job trains its head once per seed (config `seeds`); each seed's out-of-fold predictions
give one weighted F1. The reported score is the mean over seeds, with their std, and a 95%
percentile bootstrap interval over videos: resample the scored videos with replacement, score every
seed's predictions on the resample, average over seeds; the 2.5% and 97.5% quantiles of that mean
over `n_boot` resamples. A comparison of two models is paired: the same resampled videos score both,
so the interval is that of their difference (what the videos, not the seeds, leave uncertain).

Resamples come from a fixed seed (BOOT_SEED): reruns give the same interval.
"""
from __future__ import annotations

import numpy as np

N_BOOT = 1000
BOOT_SEED = 12345
LEVEL = 0.95


def resamples(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """[n_boot, n] row indices drawn with replacement (the same for every model of one comparison)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def weighted_f1_rows(y: np.ndarray, pred: np.ndarray, n_cls: int) -> np.ndarray:
    """Weighted F1 of many resamples at once: y, pred [B, n] ints -> [B] (= scoring.weighted_f1 row by
    row, sklearn's average='weighted', zero_division=0)."""
    y, pred = np.atleast_2d(y), np.atleast_2d(pred)
    B = len(y)
    onehot_y = np.zeros((B, n_cls), np.int64)
    onehot_p = np.zeros((B, n_cls), np.int64)
    rows = np.repeat(np.arange(B), y.shape[1])
    np.add.at(onehot_y, (rows, y.ravel()), 1)      # support per class
    np.add.at(onehot_p, (rows, pred.ravel()), 1)   # predicted per class
    tp = np.zeros((B, n_cls), np.int64)
    hit = y == pred
    np.add.at(tp, (rows[hit.ravel()], y.ravel()[hit.ravel()]), 1)
    denom = onehot_y + onehot_p
    f1 = np.divide(2 * tp, denom, out=np.zeros((B, n_cls)), where=denom > 0)
    return (f1 * onehot_y).sum(1) / np.maximum(onehot_y.sum(1), 1)


def seed_mean_f1(y: np.ndarray, preds: np.ndarray, idx: np.ndarray, n_cls: int) -> np.ndarray:
    """Mean over seeds of the weighted F1 on resamples idx [B, n]: preds [S, n] -> [B]."""
    return np.mean([weighted_f1_rows(y[idx], p[idx], n_cls) for p in preds], 0)


def interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    a = (1 - level) / 2
    return [float(np.quantile(values, a)), float(np.quantile(values, 1 - a))]


def bootstrap_ci(y: np.ndarray, preds: np.ndarray, n_cls: int, n_boot: int = N_BOOT,
                 seed: int = BOOT_SEED) -> list[float] | None:
    """95% interval of the seed-mean weighted F1. y [n] classes, preds [S, n] (or [n]) predicted
    classes. None without rows."""
    y, preds = np.asarray(y, int), np.atleast_2d(np.asarray(preds, int))
    if not len(y):
        return None
    return interval(seed_mean_f1(y, preds, resamples(len(y), n_boot, seed), n_cls))


def paired_diff(y: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, n_cls: int, n_boot: int = N_BOOT,
                seed: int = BOOT_SEED) -> dict | None:
    """Seed-mean weighted F1 of A minus that of B on the same videos, with the paired bootstrap's 95%
    interval; `within_noise`: the interval contains 0 (the data cannot tell A and B apart)."""
    y = np.asarray(y, int)
    a, b = np.atleast_2d(np.asarray(preds_a, int)), np.atleast_2d(np.asarray(preds_b, int))
    if not len(y):
        return None
    full = np.arange(len(y))[None]
    diff = float(seed_mean_f1(y, a, full, n_cls)[0] - seed_mean_f1(y, b, full, n_cls)[0])
    idx = resamples(len(y), n_boot, seed)
    lo, hi = interval(seed_mean_f1(y, a, idx, n_cls) - seed_mean_f1(y, b, idx, n_cls))
    return {"diff": round(diff, 4), "ci": [round(lo, 4), round(hi, 4)], "n": int(len(y)),
            "within_noise": bool(lo <= 0.0 <= hi)}

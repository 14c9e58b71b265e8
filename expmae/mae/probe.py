"""Linear-probe check of encoder features: k-fold logistic regression, weighted F1.

Used to show that pretrained expMAE features carry more expression information than a
randomly initialised encoder of the same size (the standard MAE linear-probing protocol,
scaled down: features are standardised, then a multinomial logistic regression is fit).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def linear_probe_f1(X: np.ndarray, y: Sequence, folds: int = 5, seed: int = 0, C: float = 1.0) -> float:
    """Out-of-fold weighted F1 of a logistic regression on features X [N, D] with labels y [N]."""
    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min()))
    if k < 2 or len(counts) < 2:
        raise ValueError(f"need at least 2 classes with >= 2 samples each for a {folds}-fold probe, got counts {counts}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    pred = cross_val_predict(clf, np.asarray(X, np.float64), y, cv=cv)
    return float(f1_score(y, pred, average="weighted"))

"""Stacking head: a weighted vote over one round's trained models, fitted on their out-of-fold predictions
(config `stack:`).

The vote is log-linear: logit_c = sum_m w_m log p_m(c) + b_c, softmax over classes, with every member
weight w_m >= 0 (a weighted geometric mean, late fusion's rule with learned weights) and a class bias
b. w and b minimise the cross-entropy of the members' out-of-fold probabilities on the labeled videos
plus a small L2 penalty (L-BFGS-B, weights bounded at 0).

Cross-fitting inside the run's fixed folds keeps the head's own OOF score honest: the prediction of a
fold-f video uses weights fitted on the OOF rows of the other folds only, never on fold f's labels.
(The members' OOF predictions of those rows come from fold models that trained on fold f: a fold-f
label can reach the weights only through what the other folds' models learned from it, the channel
every stacked ensemble scored by cross-validation has; with at most a dozen weights it is small, and the
permuted-label test in tests/test_stack.py holds it at chance.) Test and unlabeled rows get the weights
fitted on every OOF row, applied to the members' fold-model means. Each seed is stacked on its own
columns (s{s}_<class>), so the head has a seed spread like every other model. Not a pseudo-label source:
its fold-f weights are not fold f's lineage.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from expmae.train import stats
from expmae.train.scoring import n_seeds, weighted_f1

L2 = 1e-2       # ridge on weights and biases, per labeled row: keeps a dozen parameters on ~100 rows stable
EPS = 1e-8


def _logp(tables: list[pd.DataFrame], cols: list[str], rows: np.ndarray) -> np.ndarray:
    """[N, M, C] the members' log-probabilities of `cols` on `rows`."""
    return np.stack([np.log(np.clip(t[cols].to_numpy(np.float64)[rows], EPS, 1)) for t in tables], 1)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def fit(L: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights [M] (>= 0) and class biases [C] on log-probabilities L [N, M, C] and classes y [N]."""
    n, M, C = L.shape
    Y = np.eye(C)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:M], theta[M:]
        P = _softmax(np.einsum("nmc,m->nc", L, w) + b)
        nll = -(Y * np.log(np.clip(P, 1e-12, 1))).sum() / n + L2 * (w @ w + b @ b)
        G = (P - Y) / n                                      # d nll / d logits
        grad = np.concatenate([np.einsum("nc,nmc->m", G, L), G.sum(0)]) + 2 * L2 * theta
        return float(nll), grad

    start = np.concatenate([np.full(M, 1.0 / M), np.zeros(C)])  # late fusion's equal weights
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0, None)] * M + [(None, None)] * C)
    return res.x[:M], res.x[M:]


def apply(L: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _softmax(np.einsum("nmc,m->nc", L, w) + b)


def cross_fit(tables: list[pd.DataFrame], classes: list[str], cols: list[str]) -> tuple[np.ndarray, dict]:
    """The stacked probabilities [N, C] of `cols` (prob_ or one seed's s{s}_ columns): OOF rows cross-fitted
    fold by fold, every other row from the weights fitted on all OOF rows. -> probs, {weights, fold_weights}."""
    base = tables[0]
    y, fold = base["y"].to_numpy(), base["fold"].to_numpy()
    oof = np.flatnonzero((base["split"] == "labeled").to_numpy() & (fold >= 0))
    L = _logp(tables, cols, np.arange(len(base)))
    P = np.zeros((len(base), len(classes)))
    fold_w = {}
    for f in sorted(set(fold[oof].tolist())):
        tr, te = oof[fold[oof] != f], oof[fold[oof] == f]
        w, b = fit(L[tr], y[tr])
        P[te] = apply(L[te], w, b)
        fold_w[int(f)] = w
    w, b = fit(L[oof], y[oof])
    rest = np.setdiff1d(np.arange(len(base)), oof)
    P[rest] = apply(L[rest], w, b)
    return P, {"weights": w, "bias": b, "fold_weights": fold_w}


def align(tables: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The members' tables in the first one's row order (every member of a run has the same rows)."""
    names = tables[0]["name"]
    return [t.set_index("name").loc[names].reset_index() for t in tables]


def stack(dirs: dict[str, str | Path], classes: list[str], test_truth: dict[str, int] | None = None) -> tuple[pd.DataFrame, dict]:
    """Stack the models in `dirs` (name -> training output folder). -> probs table (name, split, y, fold,
    prob_<class>, s{s}_<class>) and what metrics.json records: weights per member (fitted on all OOF rows, and
    per fold), OOF and test weighted F1 of the seed ensemble with 95% intervals, and every seed's."""
    names = list(dirs)
    tables = align([pd.read_parquet(Path(d) / "probs.parquet") for d in dirs.values()])
    P, fitted = cross_fit(tables, classes, [f"prob_{c}" for c in classes])
    S = min(n_seeds(t, classes) for t in tables)
    seed_P = [cross_fit(tables, classes, [f"s{s}_{c}" for c in classes])[0] for s in range(S)]
    base = tables[0]
    df = base[["name", "split", "y", "fold"]].copy()
    for i, c in enumerate(classes):
        df[f"prob_{c}"] = P[:, i].astype(np.float32)
        for s, Ps in enumerate(seed_P):
            df[f"s{s}_{c}"] = Ps[:, i].astype(np.float32)
    m = {"members": names, "weights": {n: round(float(v), 4) for n, v in zip(names, fitted["weights"])},
         "bias": {c: round(float(v), 4) for c, v in zip(classes, fitted["bias"])},
         "fold_weights": {str(f): {n: round(float(v), 4) for n, v in zip(names, w)}
                          for f, w in fitted["fold_weights"].items()},
         **scores(df, classes, test_truth or {})}
    return df, m


def scores(df: pd.DataFrame, classes: list[str], test_truth: dict[str, int]) -> dict:
    """Weighted F1 of a probs table's seed ensemble (OOF and, with truth, test) with 95% bootstrap intervals,
    and of each seed's columns."""
    cols = [f"prob_{c}" for c in classes]
    oof = ((df["split"] == "labeled") & (df["fold"] >= 0)).to_numpy()
    test = (df["split"] == "test").to_numpy() & df["name"].isin(list(test_truth)).to_numpy()
    out: dict = {}
    for key, rows, y in (("weighted_f1", oof, df["y"].to_numpy()[oof]),
                         ("test_weighted_f1", test, np.array([test_truth[n] for n in df.loc[test, "name"]], int))):
        if not rows.any():
            continue
        pred = df.loc[rows, cols].to_numpy().argmax(1)
        out[key] = round(weighted_f1(y, pred), 4)
        out[f"{key}_ci"] = stats.bootstrap_ci(y, pred, len(classes))
        S = n_seeds(df, classes)
        out[f"{key}_per_seed"] = [round(weighted_f1(y, df.loc[rows, [f"s{s}_{c}" for c in classes]].to_numpy().argmax(1)), 4)
                                  for s in range(S)]
    return out

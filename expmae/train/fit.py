"""Training one head on one fold: input scaling, the training loop (modality dropout, early stopping),
prediction. expmae.train.cv calls these once per seed and fold.

Inputs come with their modality mask [n, M] (True = the video has data for that modality): absent
modalities stay out of the scaling statistics, and the heads get the mask itself (expmae.train.heads)."""
from __future__ import annotations

from typing import Callable

import numpy as np


def scaler(xs: list[np.ndarray], mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-modality z-score statistics from the training rows where the modality is present
    (never from the held-out fold; absent rows are zero vectors and would bias them)."""
    out = []
    for m, x in enumerate(xs):
        rows = x[mask[:, m]] if mask[:, m].any() else x
        out.append((rows.mean(0), rows.std(0) + 1e-6))
    return out


def scale(xs: list[np.ndarray], mask: np.ndarray, stats: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    # an absent modality becomes 0 after scaling; the head reads the mask, not this value
    return [np.where(mask[:, [m]], (x - mu) / sd, 0.0).astype(np.float32) for m, (x, (mu, sd)) in enumerate(zip(xs, stats))]


def inner_split(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Positions of a stratified `share` of the rows (at least one per class with 3+ rows), for early stopping."""
    rng = np.random.default_rng(seed)
    out = [rng.permutation(np.flatnonzero(y == c))[:max(1, round(share * (y == c).sum()))]
           for c in np.unique(y) if (y == c).sum() >= 3]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, int)


def _tensors(xs: list[np.ndarray], mask: np.ndarray, rows=slice(None)):
    import torch

    return [torch.from_numpy(x[rows]) for x in xs], torch.from_numpy(mask[rows].astype(np.float32))


def fit_head(kind: str, xs: list[np.ndarray], mask: np.ndarray, T: np.ndarray, w: np.ndarray, p: dict, seed: int,
             val: tuple[list[np.ndarray], np.ndarray, np.ndarray] | None = None, inner: np.ndarray | None = None):
    """Train one head on soft targets T [n, C] (one-hot for labels) with row weights w [n]; mask [n, M].
    Modality dropout (p['modality_dropout']) drops a whole present modality of a training row from
    its mask, never all of them, so a fusion head cannot lean on one modality alone. Early stopping:
    rows `inner` (a labeled part of the training rows, never the held-out fold) are left out of
    training and the weights of the epoch with their lowest loss are kept. `val` (xs, mask, y of the
    held-out fold) is only recorded as a curve. -> model, curves."""
    import torch
    import torch.nn.functional as F

    from expmae.train.heads import build_head

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    stop = None
    if inner is not None and len(inner):
        fit = np.setdiff1d(np.arange(len(T)), inner)
        stop = (*_tensors(xs, mask, inner), torch.from_numpy(T[inner].astype(np.float32)))
        xs, mask, T, w = [x[fit] for x in xs], mask[fit], T[fit], w[fit]
    model = build_head(kind, [x.shape[1] for x in xs], T.shape[1], p)
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    tx, tm = _tensors(xs, mask)
    tT, tw = torch.from_numpy(T.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
    vx = (*_tensors(val[0], val[1]), torch.from_numpy(val[2])) if val is not None and len(val[2]) else None
    n, bs, M = len(T), max(1, min(p["batch_size"], len(T))), len(xs)
    md = float(p["modality_dropout"]) if M > 1 else 0.0
    curves: dict[str, list[float]] = {"train": [], "val": [], "inner": []}
    best = (float("inf"), None, 0)
    for _ in range(p["epochs"]):
        model.train()
        perm, total = torch.randperm(n, generator=g), 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            bm = tm[idx]
            if md > 0:
                keep = bm * (torch.rand(len(idx), M, generator=g) >= md)               # [b, M]
                lost = keep.sum(1) == 0
                if lost.any():  # never drop all: keep one present modality, at random
                    pick = (torch.rand(int(lost.sum()), M, generator=g) + 1) * bm[lost]
                    keep[lost] = F.one_hot(pick.argmax(1), M).float()
                bm = keep
            loss = (F.cross_entropy(model([x[idx] for x in tx], bm), tT[idx], reduction="none") * tw[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        curves["train"].append(round(total / n, 4))
        model.eval()
        with torch.inference_mode():
            if vx is not None:
                curves["val"].append(round(float(F.cross_entropy(model(vx[0], vx[1]), vx[2])), 4))
            if stop is not None:
                loss = float(F.cross_entropy(model(stop[0], stop[1]), stop[2]))
                curves["inner"].append(round(loss, 4))
                if loss < best[0] - 1e-4:
                    best = (loss, {k: v.clone() for k, v in model.state_dict().items()}, len(curves["train"]))
    if best[1] is not None:
        model.load_state_dict(best[1])
        curves["best_epoch"] = best[2]
    return model.eval(), curves


def predict(model, xs: list[np.ndarray], mask: np.ndarray, n_cls: int) -> np.ndarray:
    import torch

    if len(xs[0]) == 0:
        return np.zeros((0, n_cls), np.float32)
    with torch.inference_mode():
        return torch.softmax(model(*_tensors(xs, mask)), -1).numpy()


def fit_valence(xs: list[np.ndarray], v: np.ndarray):
    """valence: ridge — ridge regression of valence on the scaled inputs (alpha by leave-one-out
    inside the training rows); None when fewer than 5 training rows have a valence."""
    from sklearn.linear_model import RidgeCV

    ok = np.isfinite(v)
    if ok.sum() < 5:
        return None
    return RidgeCV(alphas=np.logspace(-1, 4, 11)).fit(np.concatenate(xs, 1)[ok], v[ok])


def class_valence(y: np.ndarray, v: np.ndarray, n_cls: int) -> np.ndarray | None:
    """valence: posterior — mean valence of each class over the training rows [C] (the overall mean
    for a class without any); the prediction is then P(class | x) @ means. Valence follows the
    discrete emotion closely, so this borrows the classifier's strength; None below 5 rows."""
    ok = np.isfinite(v)
    if ok.sum() < 5:
        return None
    return np.array([v[ok & (y == c)].mean() if (ok & (y == c)).any() else v[ok].mean() for c in range(n_cls)])


def valence_model(vmode: str, Xtr: list[np.ndarray], v_tr: np.ndarray, y_lab: np.ndarray, v_lab: np.ndarray,
                  n_cls: int) -> tuple[Callable | None, dict[str, np.ndarray]]:
    """One fold's valence predictor (xs, P) -> [n] (None: no valence learned) and its weights.
    Xtr / v_tr: all training rows (ridge); y_lab / v_lab: the fold's labeled training rows (posterior)."""
    reg = fit_valence(Xtr, v_tr) if vmode == "ridge" else None
    if reg is not None:
        return (lambda xs, P: reg.predict(np.concatenate(xs, 1))), {
            "valence.coef": np.asarray(reg.coef_, np.float32), "valence.intercept": np.asarray([reg.intercept_], np.float32)}
    means = class_valence(y_lab, v_lab, n_cls) if vmode == "posterior" else None
    if means is not None:
        return (lambda xs, P: P @ means), {"valence.class_means": means.astype(np.float32)}
    return None, {}

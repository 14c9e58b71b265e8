"""Training one head on one fold: input scaling, epoch selection, the training loop (modality dropout),
prediction. expmae.train.cv calls these once per seed and fold.

Inputs (class Inputs) are one matrix per modality, its feature sets side by side, with a mask per
feature set: a set a video has no data for stays out of the scaling statistics and is 0 after scaling
(the training rows' mean), also when another set of the same modality is present; the heads get the
modality mask (present = any of its sets), see expmae.train.heads.

Epoch selection (config classify.early_stop, early_stop_min_rows, inner_folds): the fold's labeled
training rows alone decide how long to train, never its held-out fold:
- holdout: a stratified `early_stop` share of them is held out and the epoch with the lowest loss on it is
  kept; used when that share holds at least `early_stop_min_rows` rows (about 250+ labeled training rows);
- inner-cv: on smaller sets one holdout of a dozen rows cannot rank epochs (it kept the network after one
  step from random weights), so the labeled training rows are split into `inner_folds` stratified parts,
  one model per part is trained on the rest for `epochs` epochs, their held-out accuracy (and loss, to
  break ties) is pooled over every labeled training row epoch by epoch (5-epoch moving mean; they stop
  once it has not improved for `patience` epochs, so `epochs` can be generous at little cost), and the
  fold model is trained on all its rows for the best epoch count (best_epoch), once per fold whatever
  the number of seeds (choose_epochs: the fold's labeled training rows are the same for every seed);
- fixed (early_stop: 0): `epochs` epochs.
Pseudo-labeled rows always train. The chosen epoch is recorded per fold model (curves["best_epoch"],
["selection"]); expmae.train.cv flags one among the first two or the last.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SMOOTH = 5  # epochs of the moving mean the inner-cv curve is ranked on


@dataclass
class Inputs:
    """xs: one [n, D_m] matrix per modality (its feature sets side by side); sets: per modality [n, S_m]
    bool (each feature set present); widths: per modality the feature sets' dims."""
    xs: list[np.ndarray]
    sets: list[np.ndarray]
    widths: list[list[int]]

    @property
    def mask(self) -> np.ndarray:
        """[n, M] modality present (any of its feature sets)."""
        return np.stack([s.any(1) for s in self.sets], 1) if self.sets else np.zeros((0, 0), bool)

    def rows(self, idx) -> "Inputs":
        return Inputs([x[idx] for x in self.xs], [s[idx] for s in self.sets], self.widths)


def _blocks(widths: list[int]):
    start = np.cumsum([0, *widths])
    return [slice(int(a), int(b)) for a, b in zip(start[:-1], start[1:])]


def scaler(inp: Inputs) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-modality z-score statistics, feature set by feature set, from the training rows where that
    set is present (never from the held-out fold; absent rows are zero vectors and would bias them)."""
    out = []
    for x, s, w in zip(inp.xs, inp.sets, inp.widths):
        mu, sd = np.zeros(x.shape[1], x.dtype), np.zeros(x.shape[1], x.dtype)
        for j, b in enumerate(_blocks(w)):
            rows = x[s[:, j], b] if s[:, j].any() else x[:, b]
            mu[b], sd[b] = rows.mean(0), rows.std(0)
        out.append((mu, sd + 1e-6))
    return out


def scale(inp: Inputs, stats: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    # an absent feature set becomes 0 after scaling; the head reads the modality mask, not this value
    return [np.where(np.repeat(s, w, axis=1), (x - mu) / sd, 0.0).astype(np.float32)
            for x, s, w, (mu, sd) in zip(inp.xs, inp.sets, inp.widths, stats)]


def inner_split(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Positions of a stratified `share` of the rows (at least one per class with 3+ rows), for early stopping."""
    rng = np.random.default_rng(seed)
    out = [rng.permutation(np.flatnonzero(y == c))[:max(1, round(share * (y == c).sum()))]
           for c in np.unique(y) if (y == c).sum() >= 3]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, int)


def inner_parts(y: np.ndarray, parts: int, seed: int) -> list[np.ndarray]:
    """`parts` disjoint stratified sets of positions covering the rows (each class dealt round-robin
    after a seeded shuffle; a class with fewer rows than parts is in some parts only)."""
    rng = np.random.default_rng(seed)
    part = np.zeros(len(y), int)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        part[idx] = (np.arange(len(idx)) + offset) % parts
        offset += len(idx)  # the next class starts where this one stopped: parts stay equal in size
    return [np.flatnonzero(part == k) for k in range(parts)]


def smooth(curve: np.ndarray, k: int = SMOOTH) -> np.ndarray:
    """Centred moving mean (shorter at the ends)."""
    c = np.asarray(curve, float)
    h = k // 2
    return np.array([c[max(0, i - h):i + h + 1].mean() for i in range(len(c))])


def _tensors(xs: list[np.ndarray], mask: np.ndarray, rows=slice(None)):
    import torch

    return [torch.from_numpy(x[rows]) for x in xs], torch.from_numpy(mask[rows].astype(np.float32))


def fit_head(kind: str, xs: list[np.ndarray], mask: np.ndarray, T: np.ndarray, w: np.ndarray, p: dict, seed: int,
             val: tuple[list[np.ndarray], np.ndarray, np.ndarray] | None = None, inner: np.ndarray | None = None,
             epochs: int | None = None, keep_best: bool = True):
    """Train one head for `epochs` (default p['epochs']) on soft targets T [n, C] (one-hot for labels)
    with row weights w [n]; xs scaled, mask [n, M] per modality. Modality dropout
    (p['modality_dropout']) drops a whole present modality of a training row from its mask, never all
    of them, so a fusion head cannot lean on one modality alone. `inner` (positions of labeled training
    rows, never the held-out fold) are left out of training and their loss and accuracy are recorded
    every epoch (curves['inner'], ['inner_acc']); with keep_best the weights of the epoch with the lowest
    inner loss are kept. `val` (xs, mask, y of the held-out fold) is only recorded as a curve.
    -> model, curves."""
    for model, curves in train_epochs(kind, xs, mask, T, w, p, seed, val, inner, epochs, keep_best):
        pass
    return model, curves


def train_epochs(kind: str, xs: list[np.ndarray], mask: np.ndarray, T: np.ndarray, w: np.ndarray, p: dict, seed: int,
                 val=None, inner: np.ndarray | None = None, epochs: int | None = None, keep_best: bool = True):
    """fit_head epoch by epoch: yields (model, curves) after each epoch (the last one after the best
    weights are restored), so a caller can stop early (choose_epochs)."""
    import torch
    import torch.nn.functional as F

    from expmae.train.heads import build_head
    from expmae.train.optim import AdamW  # torch.optim.AdamW's numbers without its start-up and per-step cost

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    stop = None
    if inner is not None and len(inner):
        fit = np.setdiff1d(np.arange(len(T)), inner)
        stop = (*_tensors(xs, mask, inner), torch.from_numpy(T[inner].astype(np.float32)))
        xs, mask, T, w = [x[fit] for x in xs], mask[fit], T[fit], w[fit]
    model = build_head(kind, [x.shape[1] for x in xs], T.shape[1], p)
    opt = AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    tx, tm = _tensors(xs, mask)
    tT, tw = torch.from_numpy(T.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
    vx = (*_tensors(val[0], val[1]), torch.from_numpy(val[2])) if val is not None and len(val[2]) else None
    n, bs, M = len(T), max(1, min(p["batch_size"], len(T))), len(xs)
    md = float(p["modality_dropout"]) if M > 1 else 0.0
    curves: dict[str, list[float]] = {"train": [], "val": [], "inner": []}
    best = (float("inf"), None, 0)
    E = p["epochs"] if epochs is None else epochs
    for e in range(E):
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
                logits = model(stop[0], stop[1])
                loss = float(F.cross_entropy(logits, stop[2]))
                curves["inner"].append(round(loss, 4))
                curves.setdefault("inner_acc", []).append(float((logits.argmax(1) == stop[2].argmax(1)).float().mean()))
                if keep_best and loss < best[0] - 1e-4:
                    best = (loss, {k: v.clone() for k, v in model.state_dict().items()}, len(curves["train"]))
        if e < E - 1:
            yield model, curves
    if best[1] is not None:
        model.load_state_dict(best[1])
        curves["best_epoch"] = best[2]
    yield model.eval(), curves


def best_epoch(loss: np.ndarray, acc: np.ndarray) -> int:
    """The inner-cv epoch: the highest smoothed inner accuracy, the lower smoothed loss among equals.
    Accuracy, not loss: on weak features the cross-entropy of an MLP rises after a few epochs from
    over-confidence while its accuracy still improves (expMAE on the demo: loss picked epoch ~4 and
    OOF F1 0.19, where a logistic probe of the same features reaches 0.37)."""
    key = np.round(smooth(acc), 6) - 1e-6 * smooth(loss)
    return int(np.argmax(key)) + 1


def selection_mode(n_lab: int, p: dict) -> str:
    """holdout | inner-cv | fixed for a fold with n_lab labeled training rows (module docstring)."""
    if not p["early_stop"]:
        return "fixed"
    return "holdout" if round(p["early_stop"] * n_lab) >= p["early_stop_min_rows"] else "inner-cv"


def choose_epochs(kind: str, xs: list[np.ndarray], mask: np.ndarray, T: np.ndarray, w: np.ndarray,
                  y_lab: np.ndarray, p: dict, seed: int) -> dict:
    """inner-cv: the epoch count for a fold, from `inner_folds` models each trained with one part of its
    labeled training rows held out (module docstring), side by side epoch by epoch; they stop once the
    pooled curve has not improved for `patience` epochs (or at `epochs`). -> best_epoch, inner (pooled
    loss), inner_acc."""
    parts = [q for q in inner_parts(y_lab, p["inner_folds"], seed) if len(q)]
    runs = [train_epochs(kind, xs, mask, T, w, p, seed + 7919 * (k + 1), None, q, keep_best=False)
            for k, q in enumerate(parts)]
    wts = [len(q) for q in parts]  # each part weighs by its rows: the mean over the labeled training rows
    for e in range(p["epochs"]):
        curves = [next(r)[1] for r in runs]
        inner = np.average([c["inner"] for c in curves], axis=0, weights=wts)
        acc = np.average([c["inner_acc"] for c in curves], axis=0, weights=wts)
        best = best_epoch(inner, acc)
        if e + 1 - best >= p["patience"]:
            break
    return {"best_epoch": best, "inner": [round(float(v), 4) for v in inner],
            "inner_acc": [round(float(v), 4) for v in acc]}


def train_selected(kind: str, xs: list[np.ndarray], mask: np.ndarray, T: np.ndarray, w: np.ndarray, y_lab: np.ndarray,
                   p: dict, seed: int, val=None, chosen: dict | None = None):
    """One fold model with its epoch chosen on the fold's own labeled training rows (the first len(y_lab)
    rows of xs/T; pseudo-labeled rows after them always train). chosen: choose_epochs' result for this
    fold (inner-cv; computed once, shared by the seeds), else computed here.
    -> model, curves (+ best_epoch, selection)."""
    mode = selection_mode(len(y_lab), p)
    if mode == "fixed":
        model, curves = fit_head(kind, xs, mask, T, w, p, seed, val)
        curves["best_epoch"] = p["epochs"]
    elif mode == "holdout":
        model, curves = fit_head(kind, xs, mask, T, w, p, seed, val, inner_split(y_lab, p["early_stop"], seed))
    else:
        chosen = chosen or choose_epochs(kind, xs, mask, T, w, y_lab, p, seed)
        model, curves = fit_head(kind, xs, mask, T, w, p, seed, val, epochs=chosen["best_epoch"])
        curves.update(chosen)
    curves["selection"] = mode
    return model, curves


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

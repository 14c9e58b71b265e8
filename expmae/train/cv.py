"""Train a classifier head with k-fold cross-validation on the labeled set (+ pseudo-labels).

The labeled videos are split into `folds` stratified folds; fold f's model trains on the
other folds plus every pseudo-labeled video, and predicts its held-out fold (out-of-fold
probabilities give the weighted F1 reported for the labeled set — the MER metric). The
mean of the fold models' probabilities predicts the unlabeled pool and the test split;
each fold model's own probabilities are kept too (columns f{f}_{class}) so pseudo-labelling
can ask that all fold models agree. When the label CSV has valence, each fold also predicts it
(`valence: posterior` = the class posterior times the training rows' mean valence per class;
`ridge` = ridge regression on the same inputs; `none`): valence MSE and the MER 2023 combined score.

Heads (expmae.train.heads): mlp (one feature set), concat | fbp | attention over modalities
(--modality groups feature sets; default one modality per feature set). Late fusion trains no
weights and has its own program: expmae.train.late. Settings: --params over the schema defaults
of config `classify` (+ `fuse`'s training keys), see expmae.train.plan.train_params.

    python -m expmae.train.cv --round 1 --kind fused --combo all --head fbp --name fbp \
        --features expmae=results/features/expmae/s0.parquet,... --features egemaps=... \
        --modality visual=expmae --modality audio=egemaps --labels labels.csv --test test.csv \
        [--pseudo results/pseudo/round0.parquet] --out results/fuse/round1/all/fbp --params '{"folds": 5, ...}'
Writes <out>/probs.parquet (name, split, y, fold, prob_<class>..., pred, confidence, agree, valence,
f{f}_<class>...), <out>/metrics.json (identity, scores, per-fold training curves), <out>/model.safetensors.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from expmae.io import atomic_path
from expmae.train import data, plan
from expmae.train.scoring import evaluate, probs_frame, write_result


def group(ds: data.Dataset, spec: dict[str, list[str]] | None) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Feature sets -> modality inputs. One modality = its feature sets' columns side by side.
    -> X per modality [N, sum D], mask [N, M] (present when any of its sets is), modality names."""
    spec = spec or {m: [m] for m in ds.modalities}
    pos = {m: i for i, m in enumerate(ds.modalities)}
    missing = [fs for sets in spec.values() for fs in sets if fs not in pos]
    if missing:
        raise SystemExit(f"config key fuse.modalities: feature sets {missing} were not passed with --features")
    xs = [np.concatenate([ds.X[pos[fs]] for fs in sets], 1) for sets in spec.values()]
    mask = np.stack([ds.mask[:, [pos[fs] for fs in sets]].any(1) for sets in spec.values()], 1)
    return xs, mask, list(spec)


def scaler(xs: list[np.ndarray], mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-modality z-score statistics from the training rows where the modality is present
    (never from the held-out fold; absent rows are zero vectors and would bias them)."""
    out = []
    for m, x in enumerate(xs):
        rows = x[mask[:, m]] if mask[:, m].any() else x
        out.append((rows.mean(0), rows.std(0) + 1e-6))
    return out


def scale(xs: list[np.ndarray], mask: np.ndarray, stats: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    # an absent modality becomes the training mean (0 after scaling): "no evidence", not a fake value
    return [np.where(mask[:, [m]], (x - mu) / sd, 0.0).astype(np.float32) for m, (x, (mu, sd)) in enumerate(zip(xs, stats))]


def fit_head(kind: str, xs: list[np.ndarray], T: np.ndarray, w: np.ndarray, p: dict, seed: int,
             val: tuple[list[np.ndarray], np.ndarray] | None = None, inner: np.ndarray | None = None):
    """Train one head on soft targets T [n, C] (one-hot for labels) with row weights w [n].
    Modality dropout (p['modality_dropout']) zeroes a whole modality of a training row, at most
    all but one, so a fusion head cannot lean on one modality alone. Early stopping: rows `inner`
    (a labeled part of the training rows, never the held-out fold) are left out of training and
    the weights of the epoch with their lowest loss are kept. `val` (the held-out fold) is only
    recorded as a curve. -> model, curves."""
    import torch
    import torch.nn.functional as F

    from expmae.train.heads import build_head

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    stop = None
    if inner is not None and len(inner):
        fit = np.setdiff1d(np.arange(len(T)), inner)
        stop = ([torch.from_numpy(x[inner]) for x in xs], torch.from_numpy(T[inner].astype(np.float32)))
        xs, T, w = [x[fit] for x in xs], T[fit], w[fit]
    model = build_head(kind, [x.shape[1] for x in xs], T.shape[1], p)
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    tx = [torch.from_numpy(x) for x in xs]
    tT, tw = torch.from_numpy(T.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
    vx = [torch.from_numpy(x) for x in val[0]] if val is not None and len(val[1]) else None
    n, bs, M = len(T), max(1, min(p["batch_size"], len(T))), len(xs)
    md = float(p["modality_dropout"]) if M > 1 else 0.0
    curves: dict[str, list[float]] = {"train": [], "val": [], "inner": []}
    best = (float("inf"), None, 0)
    for _ in range(p["epochs"]):
        model.train()
        perm, total = torch.randperm(n, generator=g), 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            batch = [x[idx] for x in tx]
            if md > 0:
                keep = torch.rand(len(idx), M, generator=g) >= md                 # [b, M]
                keep[keep.sum(1) == 0, torch.randint(M, (1,), generator=g)] = True  # never drop all
                batch = [x * keep[:, m:m + 1] for m, x in enumerate(batch)]
            loss = (F.cross_entropy(model(batch), tT[idx], reduction="none") * tw[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        curves["train"].append(round(total / n, 4))
        model.eval()
        with torch.inference_mode():
            if vx is not None:
                curves["val"].append(round(float(F.cross_entropy(model(vx), torch.from_numpy(val[1]))), 4))
            if stop is not None:
                loss = float(F.cross_entropy(model(stop[0]), stop[1]))
                curves["inner"].append(round(loss, 4))
                if loss < best[0] - 1e-4:
                    best = (loss, {k: v.clone() for k, v in model.state_dict().items()}, len(curves["train"]))
    if best[1] is not None:
        model.load_state_dict(best[1])
        curves["best_epoch"] = best[2]
    return model.eval(), curves


def inner_split(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Positions of a stratified `share` of the rows (at least one per class with 3+ rows), for early stopping."""
    rng = np.random.default_rng(seed)
    out = [rng.permutation(np.flatnonzero(y == c))[:max(1, round(share * (y == c).sum()))]
           for c in np.unique(y) if (y == c).sum() >= 3]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, int)


def predict(model, xs: list[np.ndarray], n_cls: int) -> np.ndarray:
    import torch

    if len(xs[0]) == 0:
        return np.zeros((0, n_cls), np.float32)
    with torch.inference_mode():
        return torch.softmax(model([torch.from_numpy(x) for x in xs]), -1).numpy()


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


def pseudo_rows(ds: data.Dataset, pseudo: pd.DataFrame | None, classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-labels on unlabeled rows -> (row index, targets [n, C], weights). Soft targets when the
    table carries prob_<class> columns (pseudolabel.soft_labels), else one-hot on y."""
    n_cls = len(classes)
    if pseudo is None or not len(pseudo):
        return np.zeros(0, int), np.zeros((0, n_cls)), np.zeros(0)
    pos = pd.Index(ds.names).get_indexer(pseudo["name"])
    keep = (pos >= 0) & (ds.split[pos.clip(0)] == "unlabeled")
    cols = [f"prob_{c}" for c in classes]
    if all(c in pseudo for c in cols):
        T = pseudo[cols].to_numpy(np.float64)[keep]
        T = T / T.sum(1, keepdims=True)
    else:
        T = np.eye(n_cls)[pseudo["y"].to_numpy()[keep]]
    w = pseudo["weight"].to_numpy(np.float64)[keep] if "weight" in pseudo else np.ones(keep.sum())
    return pos[keep], T, w


def fold_splits(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold over the labeled rows (y: their classes), k = min(folds, smallest class).
    Below 2 (too few labels to cross-validate): one model on everything, no OOF score."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    k = int(min(folds, counts[counts > 0].min())) if len(y) else 0
    if k >= 2:
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y))
    return [(np.arange(len(y)), np.zeros(0, int))] if len(y) else []


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


def train_fold(kind: str, X: list[np.ndarray], mask: np.ndarray, rows: tuple[np.ndarray, np.ndarray, np.ndarray],
               T: np.ndarray, w: np.ndarray, y_lab: np.ndarray, y_va: np.ndarray, p: dict, f: int):
    """Fold f: scale on its training rows, train (early stopping on an inner split of its labeled
    training rows; pseudo rows always train). rows = (train, held-out, other) row indices.
    -> model, curves, scaled inputs of the three row sets."""
    tr_idx = rows[0]
    stats = scaler([x[tr_idx] for x in X], mask[tr_idx])
    Xtr, Xva, Xot = (scale([x[i] for x in X], mask[i], stats) for i in rows)
    seed = p["seed"] * 1000 + f
    inner = inner_split(y_lab, p["early_stop"], seed) if p["early_stop"] else None
    model, curve = fit_head(kind, Xtr, T, w, p, seed, (Xva, y_va), inner)
    return model, curve, (Xtr, Xva, Xot)


def cross_validate(ds: data.Dataset, kind: str, classes: list[str], p: dict, pseudo: pd.DataFrame | None = None,
                   spec: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """-> probs table, metrics (scores, curves, counts), model weights (fold{f}.<tensor>)."""
    n_cls, N = len(classes), len(ds.names)
    X, mask, mods = group(ds, spec)
    lab, other = np.flatnonzero(ds.split == "labeled"), np.flatnonzero(ds.split != "labeled")
    ps_idx, ps_T, ps_w = pseudo_rows(ds, pseudo, classes)
    vmode = p["valence"]
    vals = ds.valence if ds.valence is not None and vmode != "none" else np.full(N, np.nan)
    splits = fold_splits(ds.y[lab], p["folds"], p["seed"])
    probs = np.zeros((N, n_cls), np.float32)
    fold_probs = np.zeros((len(splits), N, n_cls), np.float32)
    v_hat, fold_of = np.full(N, np.nan), np.full(N, -1)
    states, curves = {}, []
    for f, (tr, va) in enumerate(splits):
        tr_idx, va_idx = np.concatenate([lab[tr], ps_idx]), lab[va]
        T = np.concatenate([np.eye(n_cls)[ds.y[lab[tr]]], ps_T])
        w = np.concatenate([np.ones(len(tr)), ps_w])
        model, curve, (Xtr, Xva, Xot) = train_fold(kind, X, mask, (tr_idx, va_idx, other), T, w, ds.y[lab[tr]],
                                                   ds.y[va_idx], p, f)
        curves.append(curve)
        if len(va):
            probs[va_idx] = fold_probs[:, va_idx] = predict(model, Xva, n_cls)  # OOF: the same in every fold column
            fold_of[va_idx] = f
        fold_probs[f, other] = predict(model, Xot, n_cls)
        probs[other] += fold_probs[f, other] / len(splits)
        pv, vstates = valence_model(vmode, Xtr, vals[tr_idx], ds.y[lab[tr]], vals[lab[tr]], n_cls)
        if pv is not None:
            if len(va):
                v_hat[va_idx] = pv(Xva, probs[va_idx])
            v_hat[other] = np.nan_to_num(v_hat[other]) + pv(Xot, fold_probs[f, other]) / len(splits)
        states.update({f"fold{f}.{n}": t for n, t in vstates.items()})
        states.update({f"fold{f}.{n}": t.detach().numpy() for n, t in model.state_dict().items()})
    df = probs_frame(ds.names, ds.split, ds.y, fold_of, probs, fold_probs, v_hat, classes)
    m = evaluate(df, classes, vals, ds.meta.get("test_truth") or {}, ds.meta.get("test_valence") or {})
    m.update(run_summary(ds, kind, classes, spec, mods, pseudo, len(splits), len(lab), len(ps_idx)), curves=curves)
    return df, m, states


def run_summary(ds: data.Dataset, kind: str, classes: list[str], spec: dict[str, list[str]] | None, mods: list[str],
                pseudo: pd.DataFrame | None, folds: int, n_lab: int, n_pseudo: int) -> dict:
    """The counts and layout metrics.json records beside the scores."""
    return {"head": kind, "modalities": {mm: (spec or {mm: [mm]})[mm] for mm in mods}, "folds": folds,
            "n_labeled": int(n_lab), "n_pseudo": int(n_pseudo),
            "soft_pseudo": bool(n_pseudo) and bool(pseudo is not None and f"prob_{classes[0]}" in pseudo),
            "n_unlabeled": int((ds.split == "unlabeled").sum()), "n_test": int((ds.split == "test").sum())}


def parse_pairs(items: list[str]) -> dict[str, list[str]]:
    """['name=a,b', 'name=c'] -> {'name': ['a', 'b', 'c']} (--features / --modality)."""
    out: dict[str, list[str]] = {}
    for it in items:
        name, _, vals = it.partition("=")
        out.setdefault(name, []).extend(p for p in vals.split(",") if p)
    return out


def save_model(path: Path, states: dict[str, np.ndarray], head: str, classes: list[str], p: dict) -> None:
    if not states:
        return
    from safetensors.numpy import save_file

    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in states.items()}, str(tmp),
                  metadata={"head": head, "classes": ",".join(classes), "params": json.dumps(p)})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="k-fold classifier over cached features.")
    ap.add_argument("--head", default=plan.SINGLE_HEAD, help=" | ".join(plan.TRAINED_HEADS))
    plan.add_identity_args(ap)
    ap.add_argument("--features", action="append", default=[], help="name=shard1.parquet,shard2.parquet")
    ap.add_argument("--modality", action="append", default=[], help="modality=featureset1,featureset2")
    ap.add_argument("--labels", required=True)
    ap.add_argument("--test", default="")
    ap.add_argument("--test-labels", default="")
    ap.add_argument("--pseudo", default="")
    ap.add_argument("--classes", required=True, help="comma-separated class names")
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}", help="JSON over the schema defaults of config classify (+ fuse)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    if a.head == plan.LATE:
        raise SystemExit("--head late: late fusion trains nothing; it is `python -m expmae.train.late --members ...`")
    t0 = time.time()
    p = plan.train_params(json.loads(a.params))
    classes, features, out = a.classes.split(","), parse_pairs(a.features), Path(a.out)
    ident = plan.identity_of(a, a.head, list(features))
    import torch

    torch.set_num_threads(1)  # tiny heads: more threads only contend with the parallel jobs
    ds = data.load(features, a.labels, a.test, classes, a.test_labels or None)
    pseudo = pd.read_parquet(a.pseudo) if a.pseudo else None
    df, m, states = cross_validate(ds, a.head, classes, p, pseudo, parse_pairs(a.modality) or None)
    m.update(feature_meta={fs: {k: v for k, v in meta.items() if k in ("extractor", "model_id", "dim", "encoder_sha256")}
                           for fs, meta in ds.meta.items() if isinstance(meta, dict) and not fs.startswith("test_")},
             issues=ds.issues)
    save_model(out / "model.safetensors", states, a.head, classes, p)
    write_result(out, df, m, p, ident, t0)


if __name__ == "__main__":
    main()

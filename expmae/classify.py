"""Train a classifier head with k-fold cross-validation on the labeled set (+ pseudo-labels).

The labeled videos are split into `folds` stratified folds; fold f's model trains on the
other folds plus every pseudo-labeled video, and predicts its held-out fold (out-of-fold
probabilities give the weighted F1 reported for the labeled set — the MER metric). The
mean of the fold models' probabilities predicts the unlabeled pool and the test split;
each fold model's own probabilities are kept too (columns f{f}_{class}) so pseudo-labelling
can ask that all fold models agree. When the label CSV has valence, each fold also predicts it
(`valence: posterior` = the class posterior times the training rows' mean valence per class;
`ridge` = ridge regression on the same inputs; `none`): valence MSE and the MER 2023 combined score.

Heads: mlp (one feature set), concat | fbp | attention over modalities (--modality groups
feature sets; default one modality per feature set), and late (expmae/late.py): no training,
the geometric mean of already trained per-feature-set classifiers (--members their folders).

    python -m expmae.classify --head fbp --features expmae=results/features/expmae/s0.parquet,... \
        --features egemaps=... --modality visual=expmae --modality audio=egemaps --labels labels.csv \
        --test test.csv [--pseudo results/pseudo/round0.parquet] --out results/fuse/round1/all/fbp \
        --params '{"folds": 5, ...}'
    python -m expmae.classify --head late --members results/classify/round1/egemaps,... --labels ... --out ...
Writes <out>/probs.parquet (name, split, y, fold, prob_<class>..., pred, confidence, agree, valence,
f{f}_<class>...), <out>/metrics.json (scores, per-fold training curves), <out>/model.safetensors.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from expmae import dataset, metrics
from expmae.io import atomic_path, config_hash, write_json, write_table

DEFAULTS = {"folds": 5, "hidden": 128, "dropout": 0.3, "epochs": 200, "lr": 1e-3, "weight_decay": 1e-4,
            "batch_size": 256, "seed": 0, "fbp_dim": 64, "fbp_factor": 4, "modality_dropout": 0.0,
            "valence": "posterior", "early_stop": 0.0}
weighted_f1 = metrics.weighted_f1  # kept for callers of the first version


def group(ds: dataset.Dataset, spec: dict[str, list[str]] | None) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
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

    from expmae.fusion import build_head

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
    md = float(p.get("modality_dropout", 0.0)) if M > 1 else 0.0
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


def pseudo_rows(ds: dataset.Dataset, pseudo: pd.DataFrame | None, classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def cross_validate(ds: dataset.Dataset, kind: str, classes: list[str], p: dict, pseudo: pd.DataFrame | None = None,
                   spec: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict, dict]:
    from sklearn.model_selection import StratifiedKFold

    n_cls, N = len(classes), len(ds.names)
    X, mask, mods = group(ds, spec)
    lab, other = np.flatnonzero(ds.split == "labeled"), np.flatnonzero(ds.split != "labeled")
    ps_idx, ps_T, ps_w = pseudo_rows(ds, pseudo, classes)
    vmode = p.get("valence", "posterior")
    vals = ds.valence if ds.valence is not None and vmode != "none" else np.full(N, np.nan)
    counts = np.bincount(ds.y[lab], minlength=n_cls)
    k = int(min(p["folds"], counts[counts > 0].min())) if len(lab) else 0
    if k >= 2:
        splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=p["seed"]).split(lab, ds.y[lab]))
    else:  # too few labels to cross-validate: one model on everything, no OOF score
        splits = [(np.arange(len(lab)), np.zeros(0, int))] if len(lab) else []
    probs = np.zeros((N, n_cls), np.float32)
    fold_probs = np.zeros((len(splits), N, n_cls), np.float32)
    v_hat, fold_of = np.full(N, np.nan), np.full(N, -1)
    states, curves = {}, []
    for f, (tr, va) in enumerate(splits):
        tr_idx, va_idx = np.concatenate([lab[tr], ps_idx]), lab[va]
        T = np.concatenate([np.eye(n_cls)[ds.y[lab[tr]]], ps_T])
        w = np.concatenate([np.ones(len(tr)), ps_w])
        stats = scaler([x[tr_idx] for x in X], mask[tr_idx])
        Xtr, Xva, Xot = (scale([x[i] for x in X], mask[i], stats) for i in (tr_idx, va_idx, other))
        # early stopping on an inner split of the fold's labeled training rows (pseudo rows always train)
        inner = inner_split(ds.y[lab[tr]], p["early_stop"], p["seed"] * 1000 + f) if p.get("early_stop") else None
        model, curve = fit_head(kind, Xtr, T, w, p, p["seed"] * 1000 + f, (Xva, ds.y[va_idx]), inner)
        curves.append(curve)
        if len(va):
            probs[va_idx] = fold_probs[:, va_idx] = predict(model, Xva, n_cls)  # OOF: the same in every fold column
            fold_of[va_idx] = f
        fold_probs[f, other] = predict(model, Xot, n_cls)
        probs[other] += fold_probs[f, other] / len(splits)
        reg = fit_valence(Xtr, vals[tr_idx]) if vmode == "ridge" else None
        means = class_valence(ds.y[lab[tr]], vals[lab[tr]], n_cls) if vmode == "posterior" else None
        if reg is not None or means is not None:
            pv = (lambda xs, P: reg.predict(np.concatenate(xs, 1))) if reg is not None else (lambda xs, P: P @ means)
            if len(va):
                v_hat[va_idx] = pv(Xva, probs[va_idx])
            v_hat[other] = np.nan_to_num(v_hat[other]) + pv(Xot, fold_probs[f, other]) / len(splits)
            if reg is not None:
                states[f"fold{f}.valence.coef"] = np.asarray(reg.coef_, np.float32)
                states[f"fold{f}.valence.intercept"] = np.asarray([reg.intercept_], np.float32)
            else:
                states[f"fold{f}.valence.class_means"] = means.astype(np.float32)
        states.update({f"fold{f}.{n}": t.detach().numpy() for n, t in model.state_dict().items()})
    df = probs_frame(ds.names, ds.split, ds.y, fold_of, probs, fold_probs, v_hat, classes)
    m = evaluate(df, classes, vals, ds.meta.get("test_truth") or {}, ds.meta.get("test_valence") or {})
    m.update({"head": kind, "modalities": {mm: (spec or {mm: [mm]})[mm] for mm in mods}, "folds": len(splits),
              "n_labeled": int(len(lab)), "n_pseudo": int(len(ps_idx)), "soft_pseudo": bool(len(ps_idx)) and bool(
                  pseudo is not None and f"prob_{classes[0]}" in pseudo),
              "n_unlabeled": int((ds.split == "unlabeled").sum()), "n_test": int((ds.split == "test").sum()),
              "curves": curves})
    return df, m, states


def probs_frame(names, split, y, fold_of, probs, fold_probs, v_hat, classes) -> pd.DataFrame:
    df = pd.DataFrame({"name": list(names), "split": split, "y": y, "fold": fold_of})
    for c, name in enumerate(classes):
        df[f"prob_{name}"] = probs[:, c]
    pred = probs.argmax(1)
    df["pred"] = [classes[i] for i in pred]
    df["confidence"] = probs.max(1)
    # share of fold models whose own top class is the ensemble's (1.0 = all agree)
    df["agree"] = (fold_probs.argmax(2) == pred[None]).mean(0) if len(fold_probs) else 1.0
    df["valence"] = v_hat
    for f in range(len(fold_probs)):
        for c, name in enumerate(classes):
            df[f"f{f}_{name}"] = fold_probs[f, :, c]
    return df


def evaluate(df: pd.DataFrame, classes: list[str], valence: np.ndarray, test_truth: dict, test_valence: dict) -> dict:
    """OOF scores on labeled rows (+ test scores where the test truth is known)."""
    pred = df[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    oof = np.flatnonzero((df["split"] == "labeled").to_numpy() & (df["fold"] >= 0).to_numpy())
    has_v = np.isfinite(valence[oof]).any()
    v_hat = df["valence"].to_numpy(float)
    m = metrics.scores(df["y"].to_numpy()[oof], pred[oof], valence[oof] if has_v else None, v_hat[oof] if has_v else None)
    t_idx = [i for i in np.flatnonzero((df["split"] == "test").to_numpy()) if df["name"].iat[i] in test_truth]
    if t_idx:
        yt = np.array([test_truth[df["name"].iat[i]] for i in t_idx])
        vt = np.array([test_valence.get(df["name"].iat[i], np.nan) for i in t_idx])
        tv = np.isfinite(vt).any()
        m.update(metrics.scores(yt, pred[t_idx], vt if tv else None, v_hat[t_idx] if tv else None, prefix="test_"))
    m["confusion"] = metrics.confusion(df["y"].to_numpy()[oof], pred[oof], len(classes)).tolist()
    return m


def parse_pairs(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for it in items:
        name, _, vals = it.partition("=")
        out.setdefault(name, []).extend(p for p in vals.split(",") if p)
    return out


parse_features = parse_pairs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="k-fold classifier over cached features.")
    ap.add_argument("--head", default="mlp", help="mlp | concat | fbp | attention | late")
    ap.add_argument("--features", action="append", default=[], help="name=shard1.parquet,shard2.parquet")
    ap.add_argument("--modality", action="append", default=[], help="modality=featureset1,featureset2")
    ap.add_argument("--members", nargs="*", default=[], help="late head: output folders of the classifiers fused")
    ap.add_argument("--labels", required=True)
    ap.add_argument("--test", default="")
    ap.add_argument("--test-labels", default="")
    ap.add_argument("--pseudo", default="")
    ap.add_argument("--classes", required=True, help="comma-separated class names")
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}")
    a = ap.parse_args(argv)
    t0 = time.time()
    p = {**DEFAULTS, **json.loads(a.params)}
    classes = a.classes.split(",")
    out = Path(a.out)
    if a.head == "late":
        from expmae.late import run_late

        df, m = run_late(a.members, a.labels, a.test_labels, classes, p)
    else:
        import torch

        torch.set_num_threads(1)  # tiny heads: more threads only contend with the parallel jobs
        ds = dataset.load(parse_pairs(a.features), a.labels, a.test, classes, a.test_labels or None)
        pseudo = pd.read_parquet(a.pseudo) if a.pseudo else None
        df, m, states = cross_validate(ds, a.head, classes, p, pseudo, parse_pairs(a.modality) or None)
        m.update(feature_meta={fs: {k: v for k, v in meta.items() if k in ("extractor", "model_id", "dim", "encoder_sha256")}
                               for fs, meta in ds.meta.items() if isinstance(meta, dict) and not fs.startswith("test_")},
                 issues=ds.issues)
        if states:
            from safetensors.numpy import save_file

            with atomic_path(out / "model.safetensors", suffix=".safetensors") as tmp:
                save_file({k: np.ascontiguousarray(v) for k, v in states.items()}, str(tmp),
                          metadata={"head": a.head, "classes": ",".join(classes), "params": json.dumps(p)})
    m.update(params=p, config_hash=config_hash(p), seconds=round(time.time() - t0, 2))
    write_table(out / "probs.parquet", df)
    write_json(out / "metrics.json", m)
    print(f"{a.head}: wF1 {m['weighted_f1']:.4f} acc {m['accuracy']:.4f} valence MSE {m.get('valence_mse', float('nan')):.3f}"
          f" (labeled {m['n_labeled']}, pseudo {m['n_pseudo']}) in {m['seconds']}s")


if __name__ == "__main__":
    main()

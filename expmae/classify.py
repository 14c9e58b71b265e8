"""Train a classifier head with k-fold cross-validation on the labeled set (+ pseudo-labels).

The labeled videos are split into `folds` stratified folds; fold f's model trains on the
other folds plus every pseudo-labeled video, and predicts its held-out fold (out-of-fold
probabilities give the weighted F1 reported for the labeled set — the MER metric). The
mean of the fold models' probabilities predicts the unlabeled pool and the test split.

    python -m expmae.classify --head fbp --features expmae=results/features/expmae/s0.parquet,... \
        --features egemaps=... --labels labels.csv --test test.csv [--pseudo results/pseudo/round0.parquet] \
        --out results/classify/round1/fbp --params '{"folds": 5, ...}'
Writes <out>/probs.parquet (name, split, y, fold, prob_<class>..., pred), <out>/metrics.json,
<out>/model.safetensors (all fold models).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from expmae import dataset
from expmae.fusion import build_head
from expmae.io import atomic_path, config_hash, write_json, write_table

DEFAULTS = {"folds": 5, "hidden": 128, "dropout": 0.3, "epochs": 200, "lr": 1e-3, "weight_decay": 1e-4,
            "batch_size": 256, "seed": 0, "fbp_dim": 64, "fbp_factor": 4}


def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, average="weighted", zero_division=0)) if len(y) else float("nan")


def standardise(train: list[np.ndarray], *others: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Per-modality z-score with the training rows' statistics (never the held-out fold's)."""
    mu = [x.mean(0) for x in train]
    sd = [x.std(0) + 1e-6 for x in train]
    return [[(x - m) / s for x, m, s in zip(xs, mu, sd)] for xs in (train, *others)]


def fit_head(kind: str, xs: list[np.ndarray], y: np.ndarray, w: np.ndarray, n_cls: int, p: dict, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = build_head(kind, [x.shape[1] for x in xs], n_cls, p)
    opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    tx = [torch.from_numpy(x) for x in xs]
    ty, tw = torch.from_numpy(y), torch.from_numpy(w.astype(np.float32))
    n, bs = len(y), max(1, min(p["batch_size"], len(y)))
    model.train()
    for _ in range(p["epochs"]):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = (torch.nn.functional.cross_entropy(model([x[idx] for x in tx]), ty[idx], reduction="none") * tw[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.inference_mode()
def predict(model: torch.nn.Module, xs: list[np.ndarray], n_cls: int) -> np.ndarray:
    if len(xs[0]) == 0:
        return np.zeros((0, n_cls), np.float32)
    return torch.softmax(model([torch.from_numpy(x) for x in xs]), -1).numpy()


def cross_validate(ds: dataset.Dataset, kind: str, classes: list[str], p: dict,
                   pseudo: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict, dict]:
    n_cls = len(classes)
    lab = np.flatnonzero(ds.split == "labeled")
    other = np.flatnonzero(ds.split != "labeled")
    ps_idx, ps_y, ps_w = np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    if pseudo is not None and len(pseudo):
        pos = pd.Index(ds.names).get_indexer(pseudo["name"])
        keep = (pos >= 0) & (ds.split[pos.clip(0)] == "unlabeled")
        ps_idx, ps_y = pos[keep], pseudo["y"].to_numpy()[keep]
        ps_w = pseudo["weight"].to_numpy()[keep] if "weight" in pseudo else np.ones(keep.sum())
    probs = np.zeros((len(ds.names), n_cls), np.float32)
    fold_of = np.full(len(ds.names), -1)
    counts = np.bincount(ds.y[lab], minlength=n_cls)
    k = int(min(p["folds"], counts[counts > 0].min())) if len(lab) else 0
    states: dict[str, torch.Tensor] = {}
    if k >= 2:
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=p["seed"])
        splits = list(skf.split(lab, ds.y[lab]))
    else:  # too few labels to cross-validate: one model on everything, no OOF score
        splits = [(np.arange(len(lab)), np.zeros(0, int))] if len(lab) else []
    for f, (tr, va) in enumerate(splits):
        tr_idx = np.concatenate([lab[tr], ps_idx])
        y_tr = np.concatenate([ds.y[lab[tr]], ps_y])
        w_tr = np.concatenate([np.ones(len(tr)), ps_w])
        Xtr, Xva, Xot = standardise([x[tr_idx] for x in ds.X], [x[lab[va]] for x in ds.X], [x[other] for x in ds.X])
        model = fit_head(kind, Xtr, y_tr, w_tr, n_cls, p, p["seed"] * 1000 + f)
        if len(va):
            probs[lab[va]] = predict(model, Xva, n_cls)
            fold_of[lab[va]] = f
        probs[other] += predict(model, Xot, n_cls) / len(splits)
        states.update({f"fold{f}.{n}": t.contiguous() for n, t in model.state_dict().items()})
    pred = probs.argmax(1)
    df = pd.DataFrame({"name": ds.names, "split": ds.split, "y": ds.y, "fold": fold_of})
    for c, name in enumerate(classes):
        df[f"prob_{name}"] = probs[:, c]
    df["pred"] = [classes[i] for i in pred]
    df["confidence"] = probs.max(1)
    oof = lab[fold_of[lab] >= 0]
    metrics = {"head": kind, "modalities": ds.modalities, "folds": len(splits), "n_labeled": int(len(lab)),
               "n_pseudo": int(len(ps_idx)), "n_unlabeled": int((ds.split == "unlabeled").sum()),
               "n_test": int((ds.split == "test").sum()),
               "weighted_f1": weighted_f1(ds.y[oof], pred[oof]),
               "accuracy": float(accuracy_score(ds.y[oof], pred[oof])) if len(oof) else float("nan")}
    truth = ds.meta.get("test_truth") or {}
    t_idx = [i for i in np.flatnonzero(ds.split == "test") if ds.names[i] in truth]
    if t_idx:
        yt = np.array([truth[ds.names[i]] for i in t_idx])
        metrics["test_weighted_f1"] = weighted_f1(yt, pred[t_idx])
        metrics["test_accuracy"] = float(accuracy_score(yt, pred[t_idx]))
    return df, metrics, states


def parse_features(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for it in items:
        name, _, paths = it.partition("=")
        out.setdefault(name, []).extend(p for p in paths.split(",") if p)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="k-fold classifier over cached features.")
    ap.add_argument("--head", default="mlp", help="mlp | concat | fbp")
    ap.add_argument("--features", action="append", required=True, help="name=shard1.parquet,shard2.parquet")
    ap.add_argument("--labels", required=True)
    ap.add_argument("--test", default="")
    ap.add_argument("--test-labels", default="")
    ap.add_argument("--pseudo", default="")
    ap.add_argument("--classes", required=True, help="comma-separated class names")
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}")
    a = ap.parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    p = {**DEFAULTS, **json.loads(a.params)}
    classes = a.classes.split(",")
    ds = dataset.load(parse_features(a.features), a.labels, a.test, classes, a.test_labels or None)
    pseudo = pd.read_parquet(a.pseudo) if a.pseudo else None
    df, metrics, states = cross_validate(ds, a.head, classes, p, pseudo)
    metrics.update(params=p, config_hash=config_hash(p), seconds=round(time.time() - t0, 2),
                   feature_meta={m: {k: v for k, v in meta.items() if k in ("extractor", "model_id", "dim", "encoder_sha256")}
                                 for m, meta in ds.meta.items() if isinstance(meta, dict) and m != "test_truth"},
                   issues=ds.issues)
    out = Path(a.out)
    write_table(out / "probs.parquet", df)
    if states:
        with atomic_path(out / "model.safetensors", suffix=".safetensors") as tmp:
            save_file(states, str(tmp), metadata={"head": a.head, "classes": ",".join(classes), "params": json.dumps(p)})
    write_json(out / "metrics.json", metrics)
    print(f"{a.head}[{'+'.join(ds.modalities)}]: wF1 {metrics['weighted_f1']:.4f} "
          f"(labeled {metrics['n_labeled']}, pseudo {metrics['n_pseudo']}) in {metrics['seconds']}s")


if __name__ == "__main__":
    main()

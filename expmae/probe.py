"""Linear-probe check of encoder features: k-fold logistic regression, weighted F1.

It judges what expmae.mae pretrained through the feature extractors (expmae.features) and the training
package's labels and statistics, so it sits above all three (tests/test_layout.py's floors).

Shows that pretrained expMAE features carry more expression information than a randomly
initialised encoder of the same size (the MAE linear-probing protocol, scaled down: features
are standardised, then a multinomial logistic regression is fit, out-of-fold over stratified
k folds, repeated over a few fold shuffles because the labeled set is small).

    python -m expmae.probe --encoder results/mae/encoder.safetensors --faces results/faces/s0000* \
        --labels data/demo/labels.csv --out results/mae/probe.json --params '{"folds": 5, "seed": 0}'

The random-init baseline is the model pretraining starts from without an init (same config, same
seed: pretrain.build_model after torch.manual_seed(seed)). With mae.init, the init checkpoint
itself is probed too ("init", when its file is still there), so `delta` is what all pretraining
(generic + faces) added over random weights and `delta_vs_init` what the face pretraining added.
Both encoders see the same crops with the same pooling as the feature jobs (the expmae_image /
expmae_video extractors of expmae.features.mae, run by features.run.run_visual).

The spread over fold shuffles (f1_std) says nothing about what the few labeled videos leave open, so
each difference is also paired over videos: every encoder's probe predicts the same videos out of
fold, with the same folds (they depend on the labels and the shuffle seed only), and
expmae.train.stats.paired_diff resamples the videos once for both, the repeats' predictions being its
seeds -> `paired_vs_random` (and `paired_vs_init`): {diff, ci (95%), n, within_noise}.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

log = logging.getLogger("expmae.probe")


def oof_predictions(X: np.ndarray, y: Sequence, folds: int = 5, seed: int = 0, C: float = 1.0) -> np.ndarray:
    """Out-of-fold predicted labels [N] of a logistic regression on features X [N, D] with labels y [N];
    the folds depend on y and seed only (stratified, shuffled), so two encoders' features get the same."""
    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min()))
    if k < 2 or len(counts) < 2:
        raise ValueError(f"need at least 2 classes with >= 2 samples each for a {folds}-fold probe, got counts {counts}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cross_val_predict(clf, np.asarray(X, np.float64), y, cv=cv)


def linear_probe_f1(X: np.ndarray, y: Sequence, folds: int = 5, seed: int = 0, C: float = 1.0) -> float:
    """Out-of-fold weighted F1 of a logistic regression on features X [N, D] with labels y [N]."""
    return float(f1_score(np.asarray(y), oof_predictions(X, y, folds, seed, C), average="weighted"))


def repeated_oof(X: np.ndarray, y: Sequence, folds: int, seed: int, repeats: int) -> np.ndarray:
    """oof_predictions over `repeats` fold shuffles (seeds seed, seed+1, ...) -> [repeats, N]."""
    return np.stack([oof_predictions(X, y, folds, seed + r) for r in range(repeats)])


def probe_scores(y: Sequence, preds: np.ndarray) -> dict[str, Any]:
    """Weighted F1 of each repeat's predictions [R, N] -> {"f1": mean, "f1_std": std, "f1_runs": [...]}."""
    runs = [float(f1_score(np.asarray(y), p, average="weighted")) for p in preds]
    return {"f1": float(np.mean(runs)), "f1_std": float(np.std(runs)), "f1_runs": runs}


def repeated_probe(X: np.ndarray, y: Sequence, folds: int, seed: int, repeats: int) -> dict[str, Any]:
    """linear_probe_f1 over `repeats` fold shuffles -> {"f1": mean, "f1_std": std, "f1_runs": [...]}."""
    return probe_scores(y, repeated_oof(X, y, folds, seed, repeats))


def paired_vs(oof: dict[str, tuple[list[str], np.ndarray, np.ndarray]], a: str, b: str,
              n_cls: int) -> dict[str, Any] | None:
    """Weighted F1 of probe a minus probe b on the videos both predicted out of fold, with the paired
    bootstrap's 95% interval over videos (expmae.train.stats.paired_diff; the repeats are its seeds);
    None when either probe could not run. oof: tag -> (names, y [N] class ids, preds [R, N])."""
    from expmae.train.stats import paired_diff

    if a not in oof or b not in oof:
        return None
    (na, ya, pa), (nb, _, pb) = oof[a], oof[b]
    if na != nb:  # the same crops give the same videos; align anyway
        ib = {n: i for i, n in enumerate(nb)}
        keep = [i for i, n in enumerate(na) if n in ib]
        ya, pa, pb = ya[keep], pa[:, keep], pb[:, [ib[na[i]] for i in keep]]
    return paired_diff(ya, pa, pb, n_cls)


def labeled_features(model: Any, faces: Sequence[str | Path], labels: pd.DataFrame,
                     batch_size: int = 256) -> tuple[list[str], np.ndarray]:
    """Per-video features [N, D] of the labeled videos that have face crops (any shard)."""
    from expmae.features.mae import for_model
    from expmae.features.run import run_visual

    ext = for_model(model, batch_size)

    want = set(labels["name"].astype(str))
    names: list[str] = []
    feats: list[np.ndarray] = []
    for f in faces:
        fpath = Path(f) / "frames.parquet"
        if not fpath.exists():
            continue
        in_shard = sorted(want & set(pd.read_parquet(fpath, columns=["name"])["name"].astype(str)))
        if not in_shard:
            continue
        _, X, mask = run_visual(ext, in_shard, str(f))
        names += [n for n, m in zip(in_shard, mask) if m]
        feats.append(X[mask])
    return names, (np.concatenate(feats) if feats else np.zeros((0, ext.dim), np.float32))


def probe(encoder: str | Path, faces: Sequence[str | Path], labels_csv: str | Path, out: str | Path,
          params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe the pretrained encoder and its random init on the labeled set; write `out` (JSON)."""
    import torch

    from expmae import config
    from expmae.device import resolve_device
    from expmae.io import file_sha256, write_json

    from expmae.mae.checkpoint import load_encoder
    from expmae.mae.pretrain import PretrainConfig, build_model

    # a direct call gets the workflow's defaults (schema): classify.folds, seed, mae.probe_repeats, device
    p = {"folds": config.defaults("classify")["folds"], "seed": config.default("seed"),
         "repeats": config.defaults("mae")["probe_repeats"], "device": config.default("device"), "batch_size": 256,
         **(params or {})}
    t0 = time.time()
    device = resolve_device(str(p["device"]))
    pre, info = load_encoder(encoder, device)
    kind = info.get("kind", "image")
    seed = int(info.get("seed", p["seed"]))
    torch.manual_seed(seed)  # pretraining's own init (pretrain.train seeds the same way)
    rnd = build_model(PretrainConfig.from_params({**info["model_config"], "kind": kind})).to(device).eval()

    # The classifiers' label reader: non-UTF-8 bytes, duplicate rows and labels outside
    # `classes` never fail the probe (they are QC rows of the report already).
    from expmae.train.data import read_labels
    from expmae.io import read_csv_tolerant

    classes = p.get("classes") or sorted(  # direct calls without the config: every label seen is a class
        {str(v).strip().lower() for v in read_csv_tolerant(labels_csv)[0].get("discrete", []) if str(v).strip()})
    labels, _ = read_labels(labels_csv, list(classes))
    res: dict[str, Any] = {"kind": kind, "encoder_sha256": file_sha256(encoder), "encoder_step": info.get("step"),
                           "untrained": bool(info.get("untrained")), "folds": int(p["folds"]),
                           "repeats": int(p["repeats"]), "seed": int(p["seed"]),
                           "model_config": info["model_config"], "metric": "out-of-fold weighted F1, "
                           "standardised features + logistic regression (C=1)"}
    by_name = labels.set_index("name")["y"]
    models = [("pretrained", pre), ("random_init", rnd)]
    src = (info.get("init") or {}).get("path")
    if src and Path(src).exists():  # the public checkpoint pretraining continued from, before any face step
        torch.manual_seed(seed)
        init_cfg = PretrainConfig.from_params({**info["model_config"], "init": src, "kind": kind})
        models.append(("init", build_model(init_cfg).to(device).eval()))
        res["init_source"] = {k: info["init"].get(k) for k in ("path", "format", "sha256")}
    oof: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}  # tag -> names, y, preds [repeats, N]
    for tag, model in models:
        names, X = labeled_features(model, faces, labels, int(p["batch_size"]))
        y = by_name.loc[names].to_numpy().astype(np.int64)
        res["n_videos"] = len(names)
        try:
            preds = repeated_oof(X, y, int(p["folds"]), int(p["seed"]), int(p["repeats"]))
        except ValueError as e:  # too few labeled videos with faces: say so, do not fail the run
            res[tag] = {"f1": None, "error": str(e)}
            continue
        res[tag] = probe_scores(y, preds)
        oof[tag] = (names, y, preds)
    # the differences, paired over videos: {diff, ci, n, within_noise} (None when a probe could not run)
    res["paired_vs_random"] = paired_vs(oof, "pretrained", "random_init", len(classes))
    if "init" in res:
        res["paired_vs_init"] = paired_vs(oof, "pretrained", "init", len(classes))
    a, b = res["pretrained"].get("f1"), res["random_init"].get("f1")
    res["delta"] = None if a is None or b is None else a - b
    c = res.get("init", {}).get("f1")
    res["delta_vs_init"] = None if a is None or c is None else a - c  # what the face pretraining added
    res["seconds"] = time.time() - t0
    from expmae.mae import plots  # matplotlib only here

    plots.probe_plot(Path(out).with_suffix(".png"), res)
    write_json(out, res)  # last: the rule's main output
    log.info("%s probe on %d labeled videos: pretrained %s vs random init %s", kind, res["n_videos"], a, b)
    return res


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="linear probe: pretrained vs random-init MAE encoder")
    ap.add_argument("--encoder", required=True, help="encoder.safetensors (image or video MAE)")
    ap.add_argument("--faces", nargs="*", default=[], help="face cache folders results/faces/{shard}")
    ap.add_argument("--labels", required=True, help="labels CSV (name, discrete)")
    ap.add_argument("--out", required=True, help="probe.json (probe.png is written beside it)")
    ap.add_argument("--params", default="{}", help='JSON: {"folds": 5, "seed": 0, "repeats": 3, "device": "auto"}')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    probe(args.encoder, args.faces, args.labels, args.out, json.loads(args.params))


if __name__ == "__main__":
    main()

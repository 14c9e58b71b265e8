"""Apply a trained model to feature tables, exactly as its training job predicted the test split.

A trained model is an expmae.train.cv output folder: metrics.json (head, modalities = modality ->
feature sets, params, seeds, labeled class counts) and model.safetensors (every seed x fold member
seed{s}.fold{f}.<tensor>, its input scaling seed{s}.fold{f}.scaler{m}.mean|std and its valence
predictor seed{s}.fold{f}.valence.*). Prediction repeats cv.run_folds_and_seeds' arithmetic for rows outside
the training set: per seed the mean of the fold models' softmax (float32, fold by fold), then the
mean over seeds; valence the same way; a row without data for any of the model's modalities gets
the labeled class prior and its no_data flag. Late fusion (expmae.train.late) has no weights: its
members are predicted and fused by late.late_fuse itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.train.scoring import NO_DATA, probs_frame, seed_count


@dataclass
class Features:
    """Every feature set's table over the same rows: names [N], X {set: [N, D]}, mask {set: [N]}."""
    names: list[str]
    X: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]

    @classmethod
    def read(cls, paths: dict[str, list[str]]) -> "Features":
        """feature set -> its shard Parquets (expmae.io.write_features tables); rows aligned on the first set's names."""
        from expmae.io import read_features

        names: list[str] | None = None
        X, mask = {}, {}
        for fs, files in paths.items():
            n, x, m, _ = read_features(list(files))
            if names is None:
                names = n
            elif n != names:
                pos = pd.Index(n).get_indexer(names)
                x = np.where((pos >= 0)[:, None], x[pos.clip(0)], 0.0).astype(np.float32)
                m = np.where(pos >= 0, m[pos.clip(0)], False)
            X[fs], mask[fs] = x, m
        return cls(names or [], X, mask)


def read_metrics(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "metrics.json").read_text())


def modality_inputs(feats: Features, spec: dict[str, list[str]]):
    """As expmae.train.cv.group: one input per modality (its feature sets side by side, each with its own
    mask: expmae.train.fit.Inputs), and the modality mask [N, M]."""
    from expmae.train.fit import Inputs

    missing = [fs for sets in spec.values() for fs in sets if fs not in feats.X]
    if missing:
        raise SystemExit(f"the model needs feature sets {missing}; they were not computed")
    inp = Inputs([np.concatenate([feats.X[fs] for fs in sets], 1) for sets in spec.values()],
                 [np.stack([feats.mask[fs] for fs in sets], 1) for sets in spec.values()],
                 [[feats.X[fs].shape[1] for fs in sets] for sets in spec.values()])
    return inp, inp.mask


def ordered_spec(m: dict) -> dict[str, list[str]]:
    """modality -> feature sets in the order the head was trained on (metrics.json's keys are sorted)."""
    spec = m["modalities"]
    if "modality_order" not in m and len(spec) > 1:
        raise SystemExit(f"model {m.get('name')}: its metrics.json records no modality_order (written by an older "
                         "expmae): rerun its training job")
    return {k: spec[k] for k in m.get("modality_order", list(spec))}


def _members(states: dict[str, np.ndarray], seed: int) -> list[str]:
    prefix = f"seed{seed}."
    folds = sorted({k[len(prefix):].split(".", 1)[0] for k in states if k.startswith(prefix)}, key=lambda f: int(f[4:]))
    return [f"{prefix}{f}." for f in folds]


def predict_trained(folder: str | Path, feats: Features, classes: list[str]) -> pd.DataFrame:
    """A cv folder's predictions of the rows of `feats` (all treated as unseen, split 'predict')."""
    import torch
    from expmae import weights
    from expmae.train.fit import predict, scale
    from expmae.train.heads import build_head

    m = read_metrics(folder)
    states = weights.load(Path(folder) / "model.safetensors", "numpy", what="classifier weights")  # sha256 checked
    spec, p, n_cls = ordered_spec(m), m["params"], len(classes)
    inp, mask = modality_inputs(feats, spec)
    xs = inp.xs
    present = mask.any(1)
    rows = np.flatnonzero(present)
    N = len(feats.names)
    counts = np.asarray(m["class_counts"]["labeled"], np.float64)
    prior = counts / counts.sum()
    seed_probs, seed_v, fold_all = [], [], []
    for s in range(seed_count(m, str(folder))):
        members = _members(states, s)
        if not members:
            raise SystemExit(f"{folder}/model.safetensors holds no members of seed {s}")
        probs = np.zeros((N, n_cls), np.float32)
        fold_probs = np.zeros((len(members), N, n_cls), np.float32)
        v_hat = np.full(N, np.nan)
        for f, pre in enumerate(members):
            if f"{pre}scaler0.mean" not in states:
                raise SystemExit(f"{folder}/model.safetensors has no input scaling ({pre}scaler*): written by an older "
                                 "expmae; rerun its training job")
            stats = [(states[f"{pre}scaler{i}.mean"], states[f"{pre}scaler{i}.std"]) for i in range(len(xs))]
            model = build_head(m["head"], [x.shape[1] for x in xs], n_cls, p)
            model.load_state_dict({k[len(pre):]: torch.from_numpy(v) for k, v in states.items()
                                   if k.startswith(pre) and not k[len(pre):].startswith(("scaler", "valence."))})
            model.eval()
            x_in = scale(inp.rows(rows), stats)
            fold_probs[f, rows] = predict(model, x_in, mask[rows], n_cls)
            probs[rows] += fold_probs[f, rows] / len(members)
            v = _valence(states, pre, x_in, fold_probs[f, rows])
            if v is not None:
                v_hat[rows] = np.nan_to_num(v_hat[rows]) + v / len(members)
        probs[~present] = prior
        fold_probs[:, ~present] = prior
        seed_probs.append(probs)
        seed_v.append(v_hat)
        fold_all.append(fold_probs)
    sp, sv = np.stack(seed_probs), np.stack(seed_v)
    no_data = np.where(present, "", NO_DATA).astype(object)
    return probs_frame(feats.names, np.full(N, "predict", object), np.full(N, -1), np.full(N, -1), sp.mean(0),
                       np.concatenate(fold_all), sv.mean(0), classes, seed_probs=sp, seed_valence=sv, no_data=no_data)


def _valence(states: dict[str, np.ndarray], pre: str, xs: list[np.ndarray], P: np.ndarray) -> np.ndarray | None:
    """One fold's valence (expmae.train.fit.valence_model): ridge on the scaled inputs, or P @ class means."""
    if f"{pre}valence.coef" in states:
        return np.concatenate(xs, 1) @ states[f"{pre}valence.coef"].astype(np.float64) + float(
            states[f"{pre}valence.intercept"][0])
    if f"{pre}valence.class_means" in states:
        return P @ states[f"{pre}valence.class_means"].astype(np.float64)
    return None


def predict_folder(folder: str | Path, feats: Features, classes: list[str],
                   members: dict[str, Path] | None = None) -> pd.DataFrame:
    """Any trained model folder: a cv head, or late fusion of `members` (member name -> its folder)."""
    m = read_metrics(folder)
    if m.get("head") != "late":
        return predict_trained(folder, feats, classes)
    from expmae.train.late import late_fuse

    if members is None or any(n not in members for n in m["members"]):
        raise SystemExit(f"{folder}: late fusion of {m['members']} needs those classifiers' folders")
    n_s = min(seed_count(read_metrics(members[n]), str(members[n])) for n in m["members"])
    return late_fuse([predict_trained(members[n], feats, classes) for n in m["members"]], classes, n_s)


def missing_modalities(folder: str | Path, feats: Features, members: dict[str, Path] | None = None) -> list[str]:
    """Per row: the model's modalities without data, ';'-joined ('' = every input present)."""
    m = read_metrics(folder)
    if m.get("head") == "late":
        spec = {n: read_metrics(members[n])["modalities"][n] if members else [n] for n in m["members"]}
    else:
        spec = ordered_spec(m)
    _, mask = modality_inputs(feats, spec)
    names = list(spec)
    return [";".join(n for n, ok in zip(names, row) if not ok) for row in mask]

"""The stacking head (expmae.train.stack): cross-fitted inside the fixed folds, its OOF score stays at
chance under permuted labels (a head fitted on all OOF rows and scored on them does not), and with real
labels it weights the informative member."""
from __future__ import annotations

import json

import numpy as np

from expmae.train import stack
from expmae.train.scoring import probs_frame, weighted_f1

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
COLS = [f"prob_{c}" for c in CLASSES]


def members(rng: np.random.Generator, y_true: np.ndarray, labels: np.ndarray, signals: list[float],
            seeds: int = 1) -> list:
    """One probs table per member: softmax of noise plus `signal` on the true class, scored against `labels`
    (5 fixed folds; a few test rows)."""
    n = len(y_true)
    split = np.array(["labeled"] * (n - 12) + ["test"] * 12)
    fold = np.where(split == "labeled", np.arange(n) % 5, -1)
    out = []
    for sig in signals:
        per_seed = []
        for _ in range(seeds):
            z = rng.normal(size=(n, 6))
            z[np.arange(n), y_true] += sig
            per_seed.append(np.exp(z) / np.exp(z).sum(1, keepdims=True))
        S = np.stack(per_seed)
        out.append(probs_frame([f"v{i:03d}" for i in range(n)], split, labels, fold, S.mean(0), S[:1],
                               np.full(n, np.nan), CLASSES, seed_probs=S, seed_valence=np.full((seeds, n), np.nan)))
    return out


def test_permuted_labels_stay_at_chance():
    honest, leaky = [], []
    for r in range(10):
        rng = np.random.default_rng(r)
        y = rng.integers(0, 6, 102)
        labels = rng.permutation(y)  # half the members know y, the labels are a permutation of it
        tabs = members(rng, y, labels, [0.5] * 12 + [0.0] * 12)
        P, _ = stack.cross_fit(tabs, CLASSES, COLS)
        oof = np.flatnonzero(tabs[0]["fold"].to_numpy() >= 0)
        honest.append(weighted_f1(labels[oof], P[oof].argmax(1)))
        # the same head fitted on every OOF row and scored on them: what cross-fitting prevents
        L = stack._logp(tabs, COLS, oof)
        w, b = stack.fit(L, labels[oof])
        leaky.append(weighted_f1(labels[oof], stack.apply(L, w, b).argmax(1)))
    # chance is ~1/6 (0.167); 10 runs of 90 OOF videos: the mean's sd is ~0.015
    assert np.mean(honest) < 0.2, honest
    assert np.mean(leaky) > 0.2, leaky    # the check has the power to see the leak


def test_weights_follow_the_informative_member(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 162)
    tabs = members(rng, y, y, [2.5, 0.0, 0.0], seeds=3)
    dirs = {}
    for name, t in zip(("strong", "noise_a", "noise_b"), tabs):
        (tmp_path / name).mkdir()
        t.to_parquet(tmp_path / name / "probs.parquet")
        (tmp_path / name / "metrics.json").write_text(json.dumps({"name": name, "seeds": [0, 1, 2]}))
        dirs[name] = tmp_path / name
    truth = {n: int(v) for n, v, s in zip(tabs[0]["name"], y, tabs[0]["split"]) if s == "test"}
    df, m = stack.stack(dirs, CLASSES, truth)
    assert m["weights"]["strong"] > 5 * max(m["weights"]["noise_a"], m["weights"]["noise_b"])
    assert set(m["fold_weights"]) == {str(f) for f in range(5)}
    assert m["weighted_f1"] > 0.6 and len(m["weighted_f1_per_seed"]) == 3 and "test_weighted_f1_ci" in m
    assert list(df.columns[:4]) == ["name", "split", "y", "fold"] and "s2_sad" in df

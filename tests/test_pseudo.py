"""Pseudo-label policies of expmae.train.pseudo: per-class thresholds, agreement across models (each from
its own fold lineage), their composition with caps and soft labels, and the schema as the only home of
the selection defaults."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from expmae import config
from expmae.train import pseudo
from expmae.train.scoring import probs_frame

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
A, H, S = 1, 2, 3  # angry, happy, sad


def table(rows: list[tuple[int, float]], split: list[str] | None = None) -> pd.DataFrame:
    """One row per (class, confidence); the rest of the mass on the next class."""
    P = np.zeros((len(rows), 6))
    for i, (c, conf) in enumerate(rows):
        P[i, c], P[i, (c + 1) % 6] = conf, 1 - conf
    df = pd.DataFrame({"name": [f"v{i}" for i in range(len(rows))], "split": split or ["unlabeled"] * len(rows)})
    for i, c in enumerate(CLASSES):
        df[f"prob_{c}"] = P[:, i]
    return df


def test_class_thresholds_select_exactly_the_expected_rows():
    df = table([(A, 0.995), (A, 0.95), (H, 0.86), (H, 0.84), (S, 0.91), (S, 0.89), (H, 0.99), (A, 0.999)],
               ["unlabeled"] * 7 + ["labeled"])
    p = {"threshold": 0.9, "class_thresholds": {"angry": 0.99, "happy": 0.85}}
    sel = pseudo.select(df, CLASSES, **p)
    # angry needs 0.99 (v1 out), happy 0.85 (v2, v6 in; v3 out), sad the global 0.9 (v4 in, v5 out); v7 labeled
    assert sel["name"].tolist() == ["v0", "v2", "v4", "v6"]
    # composes with the caps, top-k and soft labels: the floor first, then the most confident per class
    capped = pseudo.select(df, CLASSES, max_per_class=1, soft_labels=True, **p)
    assert capped["name"].tolist() == ["v0", "v4", "v6"] and "prob_happy" in capped
    topk = pseudo.select(df, CLASSES, policy="topk", top_k=1, **p)
    assert topk["name"].tolist() == ["v0", "v4", "v6"]
    with pytest.raises(SystemExit, match="pseudolabel.class_thresholds"):
        pseudo.select(df, CLASSES, class_thresholds={"joy": 0.5})


def test_select_takes_its_defaults_from_the_schema(monkeypatch):
    """select() repeats no default: a changed schema default is what a caller that leaves the key out gets."""
    df = table([(A, 0.6), (H, 0.95)])
    assert pseudo.select(df, CLASSES)["name"].tolist() == ["v1"]  # the schema's threshold 0.9
    real = config.defaults
    monkeypatch.setattr(config, "defaults", lambda s: {**real(s), "threshold": 0.5} if s == "pseudolabel" else real(s))
    assert pseudo.select(df, CLASSES)["name"].tolist() == ["v0", "v1"]


def model_dir(root, name: str, kind: str, fold_probs: np.ndarray, no_data: list[str] | None = None):
    """A real training output folder: probs.parquet with 2 fold models (folds=2, seeds=1) + metrics.json."""
    names = [f"u{i}" for i in range(6)] + [f"l{i}" for i in range(4)]
    split = np.array(["unlabeled"] * 6 + ["labeled"] * 4)
    y = np.array([-1] * 6 + [A, A, H, H])
    fold = np.array([-1] * 6 + [0, 1, 0, 1])
    lab = np.eye(6)[[A, A, H, H]] * 0.9 + 0.1 / 6
    F = np.concatenate([fold_probs, np.stack([lab, lab])], 1)  # labeled rows: right, out of fold
    df = probs_frame(names, split, y, fold, F.mean(0), F, np.full(10, np.nan), CLASSES,
                     no_data=np.array((no_data or [""] * 6) + [""] * 4, object))
    d = root / name
    d.mkdir()
    df.to_parquet(d / "probs.parquet")
    (d / "metrics.json").write_text(json.dumps({"name": name, "kind": kind, "combo": "all" if kind == "fused" else None,
                                                "folds": 2, "weighted_f1": 1.0, "seeds": [0]}))
    return str(d)


def onehot(rows: list[tuple[int, float]]) -> np.ndarray:
    return table(rows)[[f"prob_{c}" for c in CLASSES]].to_numpy()


def test_agreement_across_models_selects_exactly_the_expected_rows(tmp_path):
    """Source fbp predicts angry at 0.95 for u0..u5 in both folds. Fold 0: egemaps and minilm vote from their
    fold-0 models; from their fold-1 models both agree on all but u4 (egemaps has no data for it).
    agree_min 2 of [egemaps, minilm], floor 0.6."""
    src = onehot([(A, 0.95)] * 6)
    ege0 = onehot([(A, 0.9), (A, 0.5), (H, 0.9), (A, 0.9), (A, 0.9), (A, 0.9)])  # u1 under its floor, u2 other class
    mini0 = onehot([(A, 0.9), (A, 0.9), (A, 0.9), (S, 0.9), (A, 0.9), (A, 0.9)])  # u3 other class
    all1 = onehot([(A, 0.9)] * 6)
    cands = [model_dir(tmp_path, "fbp", "fused", np.stack([src, src])),
             model_dir(tmp_path, "egemaps", "single", np.stack([ege0, all1]),
                       no_data=["", "", "", "", "no usable data", ""]),  # u4: no vote from egemaps
             model_dir(tmp_path, "minilm", "single", np.stack([mini0, all1]))]
    p = {**config.resolve("pseudolabel", {"threshold": 0.6, "agree_with": ["egemaps", "minilm"], "agree_min": 2})}
    p.pop("rounds")
    pool, sources = pseudo.grow(None, cands, 1, CLASSES, p, set(), [])
    assert sources == {0: "fbp", 1: "fbp"}  # voters are never the source
    got = {f: sorted(pool.loc[pool["fold"] == f, "name"]) for f in (0, 1)}
    assert got == {0: ["u0", "u5"], 1: ["u0", "u1", "u2", "u3", "u5"]}
    one = pseudo.grow(None, cands, 1, CLASSES, {**p, "agree_min": 1}, set(), [])[0]
    assert sorted(one.loc[one["fold"] == 0, "name"]) == ["u0", "u1", "u2", "u3", "u4", "u5"]
    with pytest.raises(SystemExit, match="pseudolabel.agree_with"):
        pseudo.grow(None, cands, 1, CLASSES, {**p, "agree_with": ["hubert"]}, set(), [])

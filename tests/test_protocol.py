"""The evaluation protocol, end to end through the training programs (expmae.train.cv, .late, .pseudo on
real Parquet feature tables, no Snakemake): a null test and a planted-signal test over two rounds.

Null: labels drawn at random, features unrelated to them, and every labeled video has a near copy among
the unlabeled ones (as clips of one speaker or scene are in real corpora). A protocol that lets fold f's
pseudo-labels be chosen by models that saw fold f's labels passes those labels on through the copies, and
round 1 "beats" round 0 far outside the noise (before fold lineage: OOF weighted F1 0.16 -> 0.49 here).
Honest: every model stays at chance in every round, and round 1 does not beat round 0.

Planted: the class is in modality a only (b and c are noise of higher dimension, as text or audio
features are when they carry nothing); a's classifier must recover it and every fused head keep most
of it (before mini-batches and epoch selection on enough rows, attention and concat kept under 60%).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from expmae.io import write_features
from expmae.train import cv, late, pseudo, stats

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
CHANCE = 1 / len(CLASSES)  # weighted F1 of predictions unrelated to balanced labels, in expectation
# fast settings; everything else (epoch selection, pseudo-label policy) the schema defaults
TRAIN = {"epochs": 30, "seeds": 1}
KEEP = {"fbp": 0.7, "late": 0.7, "attention": 0.58, "concat": 0.58}  # share of a's margin each head keeps
PSEUDO = {"policy": "topk", "top_k": 20, "threshold": 0.0, "agreement": False}

# the programs run in this process: numpy was loaded before their pin (a job of the workflow restarts pinned)
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:expmae.train.repro:RuntimeWarning")]


def write_data(tmp, y_lab, feats: dict[str, np.ndarray], n_lab: int, n_unl: int):
    names = [f"v{i:03d}" for i in range(len(next(iter(feats.values()))))]
    paths = {}
    for m, X in feats.items():
        write_features(tmp / f"{m}.parquet", names, X, np.ones(len(names), bool), {"extractor": m})
        paths[m] = str(tmp / f"{m}.parquet")
    pd.DataFrame({"name": names[:n_lab], "discrete": [CLASSES[i] for i in y_lab]}).to_csv(tmp / "labels.csv", index=False)
    pd.DataFrame({"name": names[n_lab + n_unl:]}).to_csv(tmp / "test.csv", index=False)
    return paths


def run_round(tmp, paths: dict[str, str], r: int, fused: list[str]) -> dict[str, str]:
    """One round as the workflow runs it: a classifier per feature set, fused heads over all of them,
    late fusion, then the pseudo-labels of the next round. -> model name -> output folder."""
    common = ["--labels", str(tmp / "labels.csv"), "--test", str(tmp / "test.csv"), "--classes", ",".join(CLASSES),
              "--round", str(r), "--params", json.dumps(TRAIN)]
    if r:
        common += ["--pseudo", str(tmp / f"pseudo{r - 1}.parquet")]
    out = {}
    for m, path in paths.items():
        out[m] = str(tmp / f"r{r}" / m)
        cv.main(["--head", "mlp", "--kind", "single", "--name", m, "--features", f"{m}={path}", "--out", out[m], *common])
    feats = [a for m, p in paths.items() for a in ("--features", f"{m}={p}")]
    for head in fused:
        out[head] = str(tmp / f"r{r}" / head)
        cv.main(["--head", head, "--kind", "fused", "--combo", "all", "--name", head, *feats, "--out", out[head], *common])
    out["late"] = str(tmp / f"r{r}" / "late")
    late.main(["--kind", "fused", "--combo", "all", "--name", "late", "--members", *[out[m] for m in paths],
               "--labels", str(tmp / "labels.csv"), "--classes", ",".join(CLASSES), "--round", str(r),
               "--out", out["late"], "--params", json.dumps(TRAIN)])
    prev = ["--previous", str(tmp / f"pseudo{r - 1}.parquet")] if r else []
    pseudo.main(["--candidates", *[out[h] for h in [*fused, "late"]], "--round", str(r), "--classes", ",".join(CLASSES),
                 "--out", str(tmp / f"pseudo{r}.parquet"), "--params", json.dumps(PSEUDO), *prev])
    return out


def f1(d: str) -> float:
    return json.loads(open(f"{d}/metrics.json").read())["weighted_f1"]


@pytest.mark.slow
def test_permuted_labels_stay_at_chance_in_every_round(tmp_path):
    rng = np.random.default_rng(7)
    n_lab, n_test = 120, 30
    y = rng.permutation(np.arange(n_lab) % len(CLASSES))  # labels unrelated to anything
    feats = {}
    for m, dim in (("a", 16), ("b", 8)):
        lab = rng.normal(size=(n_lab, dim))
        near = lab + 0.05 * rng.normal(size=(n_lab, dim))  # an unlabeled near copy of every labeled video
        feats[m] = np.concatenate([lab, near, rng.normal(size=(n_test, dim))])
    paths = write_data(tmp_path, y, feats, n_lab, n_lab)
    rounds = [run_round(tmp_path, paths, r, ["fbp"]) for r in (0, 1)]
    # chance with the noise of 120 videos: weighted F1 of predictions unrelated to the labels (99th
    # percentile), and the gain of one such prediction over another (99th percentile)
    null = np.array([stats.weighted_f1_rows(y, rng.permutation(y)[None], 6)[0] for _ in range(4000)])
    top, gain = np.quantile(null, 0.99), np.quantile(null[:2000] - null[2000:], 0.99)
    scores = {(r, n): round(f1(d), 3) for r, out in enumerate(rounds) for n, d in out.items()}
    assert all(v <= top for v in scores.values()), (top, scores)
    for name in rounds[0]:
        assert scores[1, name] - scores[0, name] <= gain, (name, gain, scores)
    pool = pd.read_parquet(tmp_path / "pseudo1.parquet")
    assert set(pool["fold"]) == set(range(5)) and set(pool["round"]) == {0, 1}


@pytest.mark.slow
def test_a_signal_in_one_modality_is_found_and_kept_by_fusion(tmp_path):
    rng = np.random.default_rng(3)
    n_lab, n_unl, n_test = 150, 60, 30
    y = np.r_[rng.permutation(np.arange(n_lab) % 6), rng.integers(0, 6, n_unl + n_test)]
    centers = rng.normal(size=(6, 12))
    feats = {"a": centers[y] + 1.3 * rng.normal(size=(len(y), 12)),  # the signal: class centres + noise
             "b": rng.normal(size=(len(y), 64)), "c": rng.normal(size=(len(y), 32))}
    paths = write_data(tmp_path, y[:n_lab], feats, n_lab, n_unl)
    rounds = [run_round(tmp_path, paths, r, ["fbp", "attention", "concat"]) for r in (0, 1)]
    for out in rounds:
        found = f1(out["a"])
        assert found >= 0.5, found                                   # chance is ~0.17
        assert f1(out["b"]) < 0.35 and f1(out["c"]) < 0.35
        # fusion keeps the signal: the share of a's margin over chance each fused head keeps (FBP, the
        # paper's head, and late fusion, which has no weights to learn, more; attention and a plain MLP
        # over all 108 concatenated inputs, which must find the 12 signal dims among them, less)
        kept = {h: (f1(out[h]) - CHANCE) / (found - CHANCE) for h in ("fbp", "late", "attention", "concat")}
        # per head, below what it keeps here and above what the protocol before mini-batches and epoch
        # selection kept (late 0.56, attention 0.49, concat 0.31); the shares move by a few hundredths
        # between machines, so the floors leave room for that, not for a lost signal
        assert all(kept[h] >= KEEP[h] for h in KEEP), kept

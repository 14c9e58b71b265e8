"""Heads, metrics, CV training and pseudo-label selection — no Snakemake."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from expmae import classify, dataset
from expmae.fusion import FBPHead, build_head, fbp_pool
from expmae.io import read_features, write_features
from expmae.pseudolabel import select

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def test_fbp_pool_shapes_and_normalisation():
    a, b = torch.randn(8, 16 * 4), torch.randn(8, 16 * 4)
    z = fbp_pool(a, b, factor=4)
    assert z.shape == (8, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(8))
    # power normalisation keeps the sign of the sum-pooled product
    raw = (a * b).view(8, 16, 4).sum(-1)
    assert torch.equal(torch.sign(z), torch.sign(raw))


def test_fbp_head_three_modalities():
    head = FBPHead([10, 20, 30], num_classes=6, out_dim=8, factor=3)
    out = head([torch.randn(5, 10), torch.randn(5, 20), torch.randn(5, 30)])
    assert out.shape == (5, 6) and len(head.pairs) == 3


def test_unknown_head_names_config_key():
    with pytest.raises(SystemExit, match="fuse.method"):
        build_head("nope", [4], 6, {})


def test_weighted_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    assert classify.weighted_f1(y, p) == pytest.approx(f1_score(y, p, average="weighted"))


def make_ds(tmp_path, n=120, noise=1.0, seed=0):
    """Two modalities that each carry the class with noise; the rest of the rows unlabeled/test."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    names = [f"v{i:03d}" for i in range(n)]
    paths = {}
    for m, dim in (("a", 12), ("b", 20)):
        centers = rng.normal(size=(6, dim)) * 2
        X = centers[y] + rng.normal(size=(n, dim)) * noise
        mask = np.ones(n, bool)
        mask[3] = False  # a missing modality row must stay, zeroed
        write_features(tmp_path / f"{m}.parquet", names, X, mask, {"extractor": m})
        paths[m] = [str(tmp_path / f"{m}.parquet")]
    lab = pd.DataFrame({"name": names[:60], "discrete": [CLASSES[i] for i in y[:60]], "valence": ""})
    lab.loc[5, "discrete"] = "confused"  # unknown label -> QC issue, treated as unlabeled
    lab.to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"name": names[100:]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"name": names[100:], "discrete": [CLASSES[i] for i in y[100:]]}).to_csv(tmp_path / "tl.csv", index=False)
    return paths, y


def test_cross_validation_learns_and_fbp_fuses(tmp_path):
    paths, y = make_ds(tmp_path)
    ds = dataset.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES, tmp_path / "tl.csv")
    assert (ds.split == "labeled").sum() == 59 and (ds.split == "test").sum() == 20
    assert any("unknown label" in i["reason"] for i in ds.issues)
    _, X, mask, _ = read_features(paths["a"])
    assert not mask[3] and not X[3].any()
    p = {**classify.DEFAULTS, "epochs": 60}
    df, m, states = classify.cross_validate(ds, "fbp", CLASSES, p)
    assert m["weighted_f1"] > 0.6 and m["test_weighted_f1"] > 0.6
    assert set(df.loc[df.split == "labeled", "fold"]) == set(range(5))
    df2, m2, _ = classify.cross_validate(ds, "fbp", CLASSES, p)
    pd.testing.assert_frame_equal(df, df2)  # deterministic given the seed
    assert any(k.startswith("fold4.") for k in states)


def test_pseudo_labels_enter_training(tmp_path):
    paths, y = make_ds(tmp_path)
    ds = dataset.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES)
    unl = [n for n, s in zip(ds.names, ds.split) if s == "unlabeled"]
    pseudo = pd.DataFrame({"name": unl + ["v000"], "y": 0, "weight": 1.0})  # v000 is labeled: ignored
    _, m, _ = classify.cross_validate(ds, "mlp", CLASSES, {**classify.DEFAULTS, "epochs": 5}, pseudo)
    assert m["n_pseudo"] == len(unl)


def probs_table(P, split):
    df = pd.DataFrame({"name": [f"v{i}" for i in range(len(P))], "split": split})
    for c, name in enumerate(CLASSES):
        df[f"prob_{name}"] = P[:, c]
    return df


def test_select_threshold_and_class_cap():
    P = np.full((6, 6), 0.02)
    P[0, 1], P[1, 1], P[2, 1], P[3, 2], P[4, 3], P[5, 1] = 0.95, 0.92, 0.97, 0.91, 0.5, 0.99
    split = ["unlabeled"] * 5 + ["labeled"]
    sel = select(probs_table(P, split), CLASSES, threshold=0.9)
    assert sel["name"].tolist() == ["v0", "v1", "v2", "v3"]           # v4 below threshold, v5 labeled
    assert sel["discrete"].tolist() == ["angry", "angry", "angry", "happy"]
    capped = select(probs_table(P, split), CLASSES, threshold=0.9, max_per_class=2, round_=3)
    assert sorted(capped["name"]) == ["v0", "v2", "v3"] and set(capped["round"]) == {3}

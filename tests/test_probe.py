"""expmae.probe: the linear probe's F1 range and signal, its CLI's JSON and PNG, paired differences,
a bad label CSV, and the face pretraining paired against its init."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from expmae.mae import MAE, MAEConfig
from expmae.mae.pretrain import train
from fixtures.mae_tiny import TINY, cfg, face_shards, vcfg

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return face_shards(tmp_path_factory.mktemp("faces"))


def test_linear_probe_f1_range_and_signal() -> None:
    from expmae.probe import linear_probe_f1, repeated_probe

    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 20)
    signal = np.eye(3)[np.searchsorted(["a", "b", "c"], y)] * 3 + rng.normal(size=(60, 3))
    noise = rng.normal(size=(60, 3))
    good, bad = linear_probe_f1(np.c_[signal, noise], y), linear_probe_f1(noise, y)
    assert 0.0 <= bad <= 1.0 and 0.0 <= good <= 1.0
    assert good > 0.9 and bad < 0.6, (good, bad)
    r = repeated_probe(noise, y, folds=5, seed=0, repeats=3)
    assert len(r["f1_runs"]) == 3 and r["f1_std"] >= 0 and abs(r["f1"] - np.mean(r["f1_runs"])) < 1e-12
    with pytest.raises(ValueError):
        linear_probe_f1(noise[:3], ["a", "b", "c"])  # one sample per class: no k-fold possible


@pytest.mark.parametrize("kind", ["image", "video"])
def test_probe_cli_writes_json_and_png(shards, tmp_path, kind: str) -> None:
    from expmae.probe import main as probe_main

    c = cfg(epochs=1) if kind == "image" else vcfg(epochs=1)
    train(c, shards, tmp_path / "m")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"name": ["v0", "v1", "v2", "v3", "v5", "absent"], "discrete": ["x", "y", "x", "y", "x", "y"]}
                 ).to_csv(labels, index=False)
    out = tmp_path / "probe.json"
    probe_main(["--encoder", str(tmp_path / "m" / "encoder.safetensors"), "--faces", *map(str, shards),
                "--labels", str(labels), "--out", str(out), "--params", json.dumps({"folds": 2, "device": "cpu"})])
    res = json.loads(out.read_text())
    assert res["kind"] == kind and res["n_videos"] == 5  # "absent" has no crops, v4 is unlabeled
    for tag in ("pretrained", "random_init"):
        assert 0.0 <= res[tag]["f1"] <= 1.0 and len(res[tag]["f1_runs"]) == 3
    assert res["delta"] == pytest.approx(res["pretrained"]["f1"] - res["random_init"]["f1"])
    pv = res["paired_vs_random"]  # paired over the same 5 videos: the same difference, an interval around it
    assert pv["n"] == 5 and pv["diff"] == pytest.approx(res["delta"], abs=1e-4) and "paired_vs_init" not in res
    assert -1.0 <= pv["ci"][0] <= pv["diff"] <= pv["ci"][1] <= 1.0
    assert pv["within_noise"] == (pv["ci"][0] <= 0.0 <= pv["ci"][1])
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_paired_probe_difference() -> None:
    """Features with the class signal vs noise, probed on the same folds: a positive difference whose
    paired interval over videos excludes 0; an encoder against itself: 0, within noise."""
    from expmae.probe import paired_vs, repeated_oof, repeated_probe

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 20)
    noise = rng.normal(size=(60, 3))
    good = np.c_[np.eye(3)[y] * 3 + rng.normal(size=(60, 3)), noise]
    names = [f"v{i}" for i in range(60)]
    oof = {t: (names, y, repeated_oof(X, y, 5, 0, 3)) for t, X in (("pretrained", good), ("random_init", noise))}
    assert oof["pretrained"][2].shape == (3, 60)
    pv = paired_vs(oof, "pretrained", "random_init", 3)
    assert pv["diff"] == pytest.approx(repeated_probe(good, y, 5, 0, 3)["f1"] - repeated_probe(noise, y, 5, 0, 3)["f1"],
                                       abs=1e-4)
    assert pv["n"] == 60 and 0.0 < pv["ci"][0] <= pv["diff"] <= pv["ci"][1] and not pv["within_noise"]
    same = paired_vs(oof, "random_init", "random_init", 3)
    assert same["diff"] == 0.0 and same["ci"] == [0.0, 0.0] and same["within_noise"]
    shuffled = {"init": (names[::-1], y[::-1], oof["random_init"][2][:, ::-1])}  # other order: aligned by name
    assert paired_vs({**oof, **shuffled}, "pretrained", "init", 3) == pv
    assert paired_vs(oof, "pretrained", "init", 3) is None  # no init probe


def test_probe_survives_bad_label_csv(shards, tmp_path) -> None:
    """Non-UTF-8 bytes, a duplicate row and a label outside `classes` must not fail the probe job."""
    from expmae.probe import main as probe_main

    train(cfg(epochs=1), shards, tmp_path / "m")
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"name,discrete\nv0,x\nv1,y\nv2,x\nv3,y\nv5,x\nv5,y\nv4,caf\xe9\n")
    out = tmp_path / "probe.json"
    probe_main(["--encoder", str(tmp_path / "m" / "encoder.safetensors"), "--faces", *map(str, shards),
                "--labels", str(labels), "--out", str(out),
                "--params", json.dumps({"folds": 2, "device": "cpu", "classes": ["x", "y"]})])
    res = json.loads(out.read_text())
    assert res["n_videos"] == 5  # v4's label is not a class; v5 keeps its first row
    assert 0.0 <= res["pretrained"]["f1"] <= 1.0


def test_probe_pairs_the_face_pretraining_against_its_init(shards, tmp_path) -> None:
    """With mae.init the init checkpoint is probed too: paired_vs_init beside delta_vs_init."""
    from expmae.probe import main as probe_main

    torch.manual_seed(5)
    src = MAE(MAEConfig.from_dict(TINY))
    torch.save({"model": {**src.encoder_state_dict(), "pos_embed": src.pos_embed.clone()}}, tmp_path / "init.pth")
    train(cfg(epochs=1, init=str(tmp_path / "init.pth"), embed_dim=None, depth=None, decoder_dim=None), shards,
          tmp_path / "m")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"name": ["v0", "v1", "v2", "v3", "v5"], "discrete": ["x", "y", "x", "y", "x"]}
                 ).to_csv(labels, index=False)
    out = tmp_path / "probe.json"
    probe_main(["--encoder", str(tmp_path / "m" / "encoder.safetensors"), "--faces", *map(str, shards),
                "--labels", str(labels), "--out", str(out), "--params", json.dumps({"folds": 2, "device": "cpu"})])
    res = json.loads(out.read_text())
    for key, delta in (("paired_vs_random", "delta"), ("paired_vs_init", "delta_vs_init")):
        pv = res[key]
        assert pv["n"] == 5 and pv["diff"] == pytest.approx(res[delta], abs=1e-4), key
        assert pv["ci"][0] <= pv["diff"] <= pv["ci"][1]

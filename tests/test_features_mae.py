"""expMAE features (expmae.features.mae through the extractor runner): one row per manifest video,
zero crops, the video format, and the numpy CPU path matching torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from expmae.io import file_sha256, read_features, read_meta
from expmae.mae.checkpoint import load_encoder
from expmae.mae.pretrain import main as pretrain_main, train
from fixtures.mae_tiny import S, TINY, cfg, extract, face_shards, make_shard, vcfg

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return face_shards(tmp_path_factory.mktemp("faces"))


def test_features_one_row_per_manifest_video(shards, tmp_path) -> None:
    train(cfg(epochs=1), shards, tmp_path / "mae")
    enc = tmp_path / "mae" / "encoder.safetensors"
    manifest = tmp_path / "s00001.parquet"
    names = ["v5", "missing", "v3", "v4"]  # manifest order differs from the cache; v4 has no crops
    pd.DataFrame({"name": names, "path": [f"/x/{n}.mp4" for n in names], "size": [1] * 4,
                  "mtime_ns": [0] * 4}).to_parquet(manifest)
    out, fr = tmp_path / "feat.parquet", tmp_path / "feat.frames.npy"
    extract(shards[1], manifest, enc, out, fr, {"device": "cpu", "batch_size": 5})
    got, X, mask, meta = read_features([out])
    assert got == names and X.shape == (4, 32)
    assert mask.tolist() == [True, False, True, False]
    assert not X[1].any() and not X[3].any()
    frames = np.load(fr)
    assert frames.dtype == np.float16 and frames.shape == (13, 32)
    tab = pd.read_parquet(shards[1] / "frames.parquet")
    v5 = frames[(tab["name"] == "v5").to_numpy()].astype(np.float32).mean(0)
    np.testing.assert_allclose(X[0], v5, atol=2e-2)
    assert meta["extractor"] == "expmae" and meta["encoder_sha256"] == file_sha256(enc)
    assert meta["encoder_meta"]["shards"] == ["s00000", "s00001"] and read_meta(out)["dim"] == 32
    # features equal a direct encode of the same crops
    model, _ = load_encoder(enc)
    from expmae.imaging import to_tensor
    crops = torch.from_numpy(np.load(shards[1] / "crops.npy")[:5])
    with torch.inference_mode():
        direct = model.encode(to_tensor(crops, S)).mean(0).numpy()
    np.testing.assert_allclose(X[2], direct, atol=1e-5)


def test_zero_crops_do_not_crash(tmp_path) -> None:
    empty = make_shard(tmp_path / "faces" / "s00009", {"a": 0, "b": 0})
    params = {**TINY, "epochs": 2, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1,
              "frames_per_video": 4, "seed": 0, "device": "cpu"}
    pretrain_main(["--faces", str(empty), str(tmp_path / "faces" / "absent"), "--out", str(tmp_path / "mae"),
                   "--params", json.dumps(params)])
    meta = json.loads((tmp_path / "mae" / "meta.json").read_text())
    assert meta["steps"] == 0 and meta["untrained"] and meta["warnings"]
    _, info = load_encoder(tmp_path / "mae" / "encoder.safetensors")
    assert info["untrained"] and info["step"] == 0
    manifest = tmp_path / "m.parquet"
    pd.DataFrame({"name": ["a", "b"], "path": ["a", "b"], "size": [0, 0], "mtime_ns": [0, 0]}).to_parquet(manifest)
    extract(empty, manifest, tmp_path / "mae" / "encoder.safetensors", tmp_path / "f.parquet", tmp_path / "f.npy")
    names, X, mask, _ = read_features([tmp_path / "f.parquet"])
    assert names == ["a", "b"] and not mask.any() and X.shape == (2, 32) and np.load(tmp_path / "f.npy").shape == (0, 32)


def test_video_features_format(shards, tmp_path) -> None:
    """expmae_video: one row per manifest video, mask False without crops, equal to a direct clip encode."""
    from expmae.mae.clips import clip_tensor, video_clips

    train(vcfg(epochs=1), shards, tmp_path / "mv")
    enc = tmp_path / "mv" / "encoder.safetensors"
    manifest = tmp_path / "s00001.parquet"
    names = ["v5", "missing", "v3", "v4"]
    pd.DataFrame({"name": names, "path": [f"/x/{n}.mp4" for n in names], "size": [1] * 4,
                  "mtime_ns": [0] * 4}).to_parquet(manifest)
    out = tmp_path / "feat.parquet"
    meta = extract(shards[1], manifest, enc, out, None, {"device": "cpu"}, video=True)
    got, X, mask, rmeta = read_features([out])
    assert got == names and X.shape == (4, 32) and X.dtype == np.float32
    assert mask.tolist() == [True, False, True, False] and not X[1].any() and not X[3].any()
    assert meta["extractor"] == rmeta["extractor"] == "expmae_video" and rmeta["encoder_sha256"] == file_sha256(enc)
    assert rmeta["encoder_meta"]["kind"] == "video" and read_meta(out)["dim"] == 32
    model, _ = load_encoder(enc)
    vnames, rows = video_clips(pd.read_parquet(shards[1] / "frames.parquet"), 4)
    crops = np.load(shards[1] / "crops.npy")
    with torch.inference_mode():
        direct = model.encode(clip_tensor(crops[rows[vnames.index("v3")]][None], S))[0].numpy()
    np.testing.assert_allclose(X[2], direct, atol=1e-5)


def test_cpu_features_run_on_numpy_without_torch_and_match_torch(shards, tmp_path) -> None:
    """On CPU the image encoder runs on numpy (npnet): same numbers as torch, and the job
    process never imports torch (its import was most of a small new shard's cost)."""
    train(cfg(epochs=1), shards, tmp_path / "mae")
    enc = tmp_path / "mae" / "encoder.safetensors"
    manifest = tmp_path / "m.parquet"
    pd.DataFrame({"name": ["v3", "v4", "v5"], "path": ["/x"] * 3}).to_parquet(manifest)
    outs = {}
    for backend in ("torch", "auto"):
        out = tmp_path / f"{backend}.parquet"
        outs[backend] = extract(shards[1], manifest, enc, out, None, {"device": "cpu", "backend": backend})
        outs[backend + "_X"] = read_features([out])[1]
    assert outs["torch"]["backend"] == "torch" and outs["auto"]["backend"] == "numpy"
    assert outs["torch"]["config_hash"] == outs["auto"]["config_hash"]  # same features, same cache key
    np.testing.assert_allclose(outs["auto_X"], outs["torch_X"], atol=1e-5)
    code = ("import sys, json; from expmae.features.__main__ import main; main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; print('no torch')")
    p = subprocess.run([sys.executable, "-c", code, "extract", "--name", "expmae", "--faces", str(shards[1]),
                        "--manifest", str(manifest), "--encoder", str(enc), "--out", str(tmp_path / "sub.parquet"),
                        "--params", '{"extractor": "expmae_image", "device": "auto"}'],
                       capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert p.returncode == 0 and "no torch" in p.stdout, p.stderr[-2000:]
    np.testing.assert_allclose(read_features([tmp_path / "sub.parquet"])[1], outs["torch_X"], atol=1e-5)

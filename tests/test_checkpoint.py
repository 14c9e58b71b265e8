"""Issue #27, defect 1: a flipped byte in an MAE encoder or checkpoint is never used. The feature job checks
the encoder against the sha256 recorded in it before reading a weight, whatever the file's mtime (a rewrite
or bit rot): it removes the file, so the pretraining rule rebuilds it, and writes no features."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from expmae.features import run as feature_run
from expmae.io import CacheError, file_sha256, read_meta
from expmae.mae import MAE, MAEConfig
from expmae.mae.checkpoint import load_checkpoint, load_encoder, read_checkpoint_state, save_checkpoint, save_encoder
from fixtures.bitrot import flip

ROOT = Path(__file__).resolve().parents[1]
S = 32
TINY = dict(img_size=S, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1)
PARAMS = {"extractor": "expmae_image", "device": "cpu"}


def model() -> MAE:
    torch.manual_seed(0)
    return MAE(MAEConfig.from_dict(TINY))


@pytest.fixture()
def shard(tmp_path) -> tuple[Path, Path]:
    """A faces shard in the face stage's layout (two videos, three crops each) and its manifest."""
    faces = tmp_path / "faces" / "s00000"
    faces.mkdir(parents=True)
    names = ["v0"] * 3 + ["v1"] * 3
    np.save(faces / "crops.npy", np.random.default_rng(0).integers(0, 255, (6, S, S, 3), dtype=np.uint8))
    pd.DataFrame({"name": names, "frame_index": [0, 1, 2] * 2, "time_s": [0.0, 0.25, 0.5] * 2,
                  "box": [[0.0, 0.0, 10.0, 10.0]] * 6, "landmarks": [[0.0] * 10] * 6, "score": [0.9] * 6,
                  "track_id": [0] * 6, "crop_row": list(range(6))}).to_parquet(faces / "frames.parquet")
    pd.DataFrame({"name": ["v0", "v1"], "ok": [True, True], "reason": ["", ""], "frames_decoded": [8, 8],
                  "frames_with_face": [3, 3], "n_crops": [3, 3]}).to_parquet(faces / "qc.parquet")
    manifest = tmp_path / "s00000.parquet"
    pd.DataFrame({"name": ["v0", "v1"], "path": ["/x/v0.mp4", "/x/v1.mp4"], "size": [1, 1],
                  "mtime_ns": [0, 0]}).to_parquet(manifest)
    return faces, manifest


def test_intact_encoder_is_used_and_recorded(tmp_path, shard):
    faces, manifest = shard
    enc = tmp_path / "mae" / "encoder.safetensors"
    save_encoder(enc, model(), {"step": 1})
    out = tmp_path / "feat.parquet"
    feature_run.extract("expmae", PARAMS, str(manifest), str(out), faces=str(faces), encoder=str(enc))
    assert read_meta(out)["encoder_sha256"] == file_sha256(enc)


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["new-mtime", "mtime-kept"])
def test_flipped_encoder_byte_is_removed_not_used(tmp_path, shard, keep_mtime):
    """The next shard's job after a bit flip: with its mtime kept Snakemake sees nothing stale, so only the
    job's own check stands between the corrupt encoder and features mixed with the old shards'."""
    faces, manifest = shard
    enc = tmp_path / "mae" / "encoder.safetensors"
    save_encoder(enc, model(), {"step": 1})
    flip(enc, -7, keep_mtime)  # inside the last tensor's data: the header still parses
    out = tmp_path / "feat.parquet"
    with pytest.raises(CacheError, match=rf"unreadable cache file {enc} \(sha256 .*\): removed; rerun snakemake"):
        feature_run.extract("expmae", PARAMS, str(manifest), str(out), faces=str(faces), encoder=str(enc))
    assert not enc.exists() and not out.exists()


def test_feature_job_stops_with_one_line(tmp_path, shard):
    faces, manifest = shard
    enc = tmp_path / "mae" / "encoder.safetensors"
    save_encoder(enc, model(), {"step": 1})
    flip(enc, -7, True)
    r = subprocess.run([sys.executable, "-m", "expmae.features", "extract", "--name", "expmae", "--params",
                        '{"extractor": "expmae_image", "device": "cpu"}', "--manifest", str(manifest), "--faces",
                        str(faces), "--encoder", str(enc), "--out", str(tmp_path / "f.parquet")],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(f"unreadable cache file {enc}")


def test_bundle_copy_of_an_encoder_is_refused_not_removed(tmp_path):
    enc = tmp_path / "bundle" / "encoders" / "mae" / "encoder.safetensors"
    save_encoder(enc, model(), {"step": 1})
    load_encoder(enc)
    flip(enc, -7, False)
    with pytest.raises(SystemExit, match=rf"MAE encoder {enc}: sha256 .*refused"):
        load_encoder(enc)
    assert enc.exists()


def test_corrupt_checkpoint_is_not_resumed(tmp_path):
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.rand(2, 3, S, S))[0].backward()
    opt.step()
    ck = tmp_path / "checkpoint.safetensors"
    save_checkpoint(ck, m, opt, {"step": 1, "fingerprint": "x"})
    assert read_checkpoint_state(ck)["step"] == 1
    load_checkpoint(ck, model(), torch.optim.AdamW(model().parameters(), lr=1e-3))
    flip(ck, -100, True)
    with pytest.raises(CacheError, match=str(ck)):
        load_checkpoint(ck, model(), torch.optim.AdamW(model().parameters(), lr=1e-3))
    save_checkpoint(ck, m, opt, {"step": 1, "fingerprint": "x"})
    flip(ck, -100, True)
    assert read_checkpoint_state(ck) is None and not ck.exists()  # pretraining starts afresh

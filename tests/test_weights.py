"""Issue #27, defects 1, 7 and 9: weight files carry the sha256 of their content (expmae.weights) and are
byte-stable across processes; a public init checkpoint that cannot be read stops with one line naming the
config key and the file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from expmae import weights
from expmae.io import CacheError, verify
from expmae.mae import MAEConfig
from fixtures.bitrot import flip

ROOT = Path(__file__).resolve().parents[1]
S = 32
TINY = dict(img_size=S, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1)


def test_save_round_trip_and_recorded_sha256(tmp_path):
    from safetensors.numpy import load_file

    t = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, np.float64), "n": np.array(3, np.int64),
         "m": np.array([True, False])}
    f = tmp_path / "m.safetensors"
    weights.save(f, t, {"head": "mlp", "classes": json.dumps(["a", "b"])})
    got = load_file(str(f))
    assert set(got) == set(t) and all(np.array_equal(got[k], t[k]) for k in t)
    why, sha = weights.check(f)
    assert why == "" and len(sha) == 64 and verify(f) == ""
    assert weights.metadata(f)["head"] == "mlp"


@pytest.mark.parametrize("where", ["data", "header"])
@pytest.mark.parametrize("keep_mtime", [False, True])
def test_one_flipped_bit_is_caught_whatever_the_mtime(tmp_path, where, keep_mtime):
    f = tmp_path / "m.safetensors"
    weights.save(f, {"w": np.linspace(0, 1, 64, dtype=np.float32)}, {"classes": json.dumps(["a", "b"])})
    flip(f, -3 if where == "data" else 30, keep_mtime)
    why, _ = weights.check(f)
    assert why, "a flipped byte passed the check"
    assert verify(f) == why  # the cache check (rule cache_check, python -m expmae.io verify) covers weights
    with pytest.raises(SystemExit, match=rf"weight file {f}: .*refused"):
        weights.load(f)
    assert f.exists()  # refused as it is (a bundle's file, a user's file)
    with pytest.raises(CacheError, match=rf"{f} .*removed; rerun snakemake"):
        weights.verified(f, remove=True)
    assert not f.exists()  # a workflow output: removed, so the rule that wrote it runs again


def test_file_without_a_recorded_sha256_is_unverified(tmp_path):
    from safetensors.numpy import save_file

    f = tmp_path / "old.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(f))
    assert "no sha256 recorded" in weights.check(f)[0]
    assert weights.check("/dev/zero")[0] == "not a regular file"  # never read, never waited on
    assert weights.check("/proc/self/status")[0] == "truncated (0 bytes)"  # /proc: size 0, never read


BUILD = """
import sys, torch
from expmae.mae import MAE, MAEConfig
from expmae.mae.checkpoint import save_encoder
torch.manual_seed(0)
m = MAE(MAEConfig.from_dict({cfg}))
meta = {{f"k{{i}}": i for i in range(40)}}  # many keys: a hash map orders them differently per process
save_encoder(sys.argv[1], m, {{"step": 1, **meta}})
"""


@pytest.mark.slow  # fresh processes that import torch
def test_equal_encoders_have_equal_bytes_across_processes(tmp_path):
    """Defect 7: the header's metadata order came from a Rust HashMap, different in every process."""
    code = BUILD.format(cfg=repr(TINY))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{name}.safetensors")], check=True, env=env,
                       cwd=ROOT)
    blobs = {(tmp_path / f"{n}.safetensors").read_bytes() for n in "ab"}
    assert len(blobs) == 1, "equal encoders written by two processes differ in bytes"


# ---------------------------------------------------------------- defect 9: public init checkpoints
class Opaque:
    """Any class outside torch's weights_only allow-list: unpickling it would run code."""


def init_error(path: Path, section: str = "mae") -> str:
    """The one line `MAEConfig.from_dict` stops with, in a fresh process, and that it has no traceback."""
    code = (f"from expmae.mae import MAEConfig, VideoMAEConfig\n"
            f"C = VideoMAEConfig if {section!r} == 'mae_video' else MAEConfig\n"
            f"C.from_dict({{'init': {str(path)!r}, 'img_size': {S}, 'num_heads': 2}})\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr.strip()


def fb_state() -> dict[str, torch.Tensor]:
    from expmae.mae import MAE

    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in MAE(MAEConfig.from_dict({**TINY})).state_dict().items()}


@pytest.mark.slow  # fresh processes that import torch
def test_pickle_refused_by_weights_only_names_the_key_and_file(tmp_path):
    f = tmp_path / "evil.pth"
    torch.save({"model": fb_state(), "extra": Opaque()}, f)
    line = init_error(f)
    assert line.startswith(f"config key mae.init: {f}: refused by torch.load(weights_only=True)")
    line = init_error(f, "mae_video")
    assert line.startswith(f"config key mae_video.init: {f}: refused")


@pytest.mark.slow  # fresh processes that import torch
def test_truncated_checkpoints_name_the_key_and_file(tmp_path):
    sd = fb_state()
    torch.save({"model": sd}, tmp_path / "full.pth")
    weights.save(tmp_path / "full.safetensors", sd)
    for src in ("full.pth", "full.safetensors"):
        cut = tmp_path / f"cut{Path(src).suffix}"
        raw = (tmp_path / src).read_bytes()
        cut.write_bytes(raw[: len(raw) // 2])
        line = init_error(cut)
        assert line.startswith(f"config key mae.init: {cut}: "), line


def test_legacy_non_zip_pth_loads(tmp_path):
    """A torch < 1.6 (non-zip) file cannot be memory-mapped: it is read into memory, not refused over mmap."""
    f = tmp_path / "legacy.pth"
    torch.save({"model": fb_state()}, f, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(f)
    cfg = MAEConfig.from_dict({"init": str(f), "img_size": S, "num_heads": 2})
    assert cfg.embed_dim == TINY["embed_dim"] and cfg.init_sha256


def test_public_extractor_weights_that_cannot_be_read_name_the_key(tmp_path):
    """The feature job's loaders (wav2vec2 here): a truncated weights file is one line naming the key and folder."""
    import pandas as pd
    import transformers as tf

    from expmae.features import run as feature_run

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                 num_conv_pos_embedding_groups=2)
    folder = tmp_path / "w2v"
    tf.Wav2Vec2Model(tf.Wav2Vec2Config(**small)).save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000).save_pretrained(folder)
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    pd.DataFrame({"name": ["a"], "path": [str(tmp_path / "a.mp4")]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(SystemExit, match=rf"^config key features\.w2v\.model \({folder}\): its weights cannot be loaded"):
        feature_run.extract("w2v", {"extractor": "wav2vec2", "model": str(folder), "device": "cpu"},
                            str(tmp_path / "m.parquet"), str(tmp_path / "o.parquet"))

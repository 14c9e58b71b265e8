"""expMAE pretraining engine: the loss decreases, exact resume (also after SIGKILL), DDP over gloo,
safetensors checkpoints, a non-finite loss, the schema defaults, video pretraining, pretraining from an init."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from expmae.io import file_sha256, read_meta
from expmae.mae import MAE, MAEConfig
from expmae.mae.checkpoint import load_encoder
from expmae.mae.pretrain import PretrainConfig, main as pretrain_main, train
from fixtures.mae_tiny import S, TINY, cfg, extract, face_shards, vcfg

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return face_shards(tmp_path_factory.mktemp("faces"))


@pytest.mark.slow
def test_loss_decreases(shards, tmp_path) -> None:
    """A few dozen steps lower the loss on a fixed batch with fixed masks (not the noisy step losses)."""
    from expmae.imaging import to_tensor

    c = cfg(epochs=40, batch_size=16, lr=2e-3, warmup_epochs=2, frames_per_video=100, mask_ratio=0.5)
    torch.manual_seed(0)
    init = MAE(c.model).eval()
    res = train(c, shards[:1], tmp_path)
    assert len(res.step_losses) == 40 and np.isfinite(res.step_losses).all()
    x = to_tensor(torch.from_numpy(np.load(shards[0] / "crops.npy")), S)
    noise = torch.rand(len(x), (S // 8) ** 2, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        before, after = init(x, noise=noise)[0].item(), res.model.eval()(x, noise=noise)[0].item()
    assert after < 0.8 * before, (before, after)


@pytest.mark.slow
def test_resume_after_kill_is_bit_exact(shards, tmp_path) -> None:
    c = cfg(checkpoint_every_steps=2)  # 19 samples, batch 6: 3 steps/epoch, 9 steps
    full = train(c, shards, tmp_path / "full")
    assert full.step == 9
    part = train(c, shards, tmp_path / "resumed", max_steps=5)  # "killed" after step 5; last checkpoint at 4
    assert not part.finished and not (tmp_path / "resumed" / "encoder.safetensors").exists()
    res = train(c, shards, tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed" / "meta.json").read_text())["resumed_from_step"] == 4
    assert res.step_losses == full.step_losses
    a = load_file(tmp_path / "full" / "checkpoint.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        if not k.startswith("rng/"):
            assert torch.equal(a[k], b[k]), k
    ea, eb = load_file(tmp_path / "full" / "encoder.safetensors"), load_file(tmp_path / "resumed" / "encoder.safetensors")
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    # a different seed gives different weights (the comparison above can fail)
    other = train(cfg(seed=1), shards, tmp_path / "other")
    assert not torch.equal(other.model.blocks[0].attn.qkv.weight, full.model.blocks[0].attn.qkv.weight)


@pytest.mark.slow
def test_sigkill_then_rerun_cli_matches_uninterrupted(shards, tmp_path) -> None:
    """A real kill: SIGKILL the CLI as soon as its first checkpoint lands, rerun, compare weights.
    Every run is its own process with one environment: a training job earlier in the test session pins
    this process's numerics (os.environ, oneDNN off: expmae.train.repro), so a run in this process may
    compute other bits than a child does."""
    params = {**TINY, "epochs": 12, "batch_size": 6, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1,
              "frames_per_video": 4, "seed": 0, "device": "cpu", "checkpoint_every_steps": 1}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count in every run: bit-exact CPU math

    def cli(out: str) -> list[str]:
        return [sys.executable, "-m", "expmae.mae.pretrain", "--faces", *map(str, shards), "--out",
                str(tmp_path / out), "--params", json.dumps(params)]

    proc = subprocess.Popen(cli("killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with safe_open(ckpt, framework="pt") as f:
        killed_at = json.loads(f.metadata()["state"])["step"]
    assert not (tmp_path / "killed" / "encoder.safetensors").exists() or killed_at == 36
    for out in ("killed", "full"):  # resume, and the same training uninterrupted
        subprocess.run(cli(out), env=env, check=True, capture_output=True, timeout=600)
    a, b = load_file(tmp_path / "killed" / "encoder.safetensors"), load_file(tmp_path / "full" / "encoder.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), f"killed at step {killed_at}"
    meta = json.loads((tmp_path / "killed" / "meta.json").read_text())
    full = json.loads((tmp_path / "full" / "meta.json").read_text())
    assert meta["steps"] == 36 and meta["resumed_from_step"] == killed_at
    assert meta["step_losses"] == full["step_losses"]


def test_checkpoint_is_safetensors_not_pickle(shards, tmp_path) -> None:
    train(cfg(epochs=1), shards, tmp_path)
    for name in ("checkpoint.safetensors", "encoder.safetensors"):
        raw = (tmp_path / name).read_bytes()
        assert raw[:2] != b"PK" and raw[:1] != b"\x80"  # neither torch zip nor raw pickle
        assert raw[8:9] == b"{"  # safetensors: u64 header length, then JSON
    with safe_open(tmp_path / "checkpoint.safetensors", framework="pt") as f:
        keys = set(f.keys())
        state = json.loads(f.metadata()["state"])
        assert f.get_tensor("rng/torch_cpu").dtype == torch.uint8
    assert any(k.startswith("model/decoder") for k in keys) and any(k.startswith("optim/") for k in keys)
    assert state["step"] == 3 and state["shards"] == ["s00000", "s00001"]
    enc, info = load_encoder(tmp_path / "encoder.safetensors")
    assert info["shards"] == ["s00000", "s00001"] and info["step"] == 3 and not info["untrained"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["n_samples"] == 4 + 4 + 3 + 4 + 4 and len(meta["epoch_losses"]) == 1
    for png in ("loss.png", "recon.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, faces: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    res = train(cfg(epochs=2), faces, Path(out) / "run")
    save_file({k: v.contiguous() for k, v in res.model.state_dict().items()}, str(Path(out) / f"rank{rank}.safetensors"))


@pytest.mark.slow
def test_ddp_two_ranks_gloo(shards, tmp_path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), [str(s) for s in shards], str(tmp_path)), nprocs=2, join=True)
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    torch.manual_seed(0)  # trained weights moved away from the seed-0 init
    init = MAE(MAEConfig(**TINY))
    assert not torch.equal(init.state_dict()["blocks.0.attn.qkv.weight"], r0["blocks.0.attn.qkv.weight"])
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["steps"] == 6


def test_non_finite_loss_stops_without_saving(shards, tmp_path) -> None:
    """A huge lr turns the loss NaN at step 2: the job stops with an error naming the step, the
    loss and the setting to change, before the epoch-end checkpoint or the encoder is written."""
    from expmae.mae.state import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"loss nan at step 2/3 \(epoch 1/1\).*Lower mae\.lr \(now 1e\+30\)"):
        train(cfg(epochs=1, lr=1e30, warmup_epochs=0), shards, tmp_path / "a")  # 3 steps per epoch
    assert not list((tmp_path / "a").glob("*.safetensors"))
    params = {**TINY, "epochs": 1, "batch_size": 6, "lr": 1e30, "warmup_epochs": 0, "frames_per_video": 4,
              "device": "cpu"}
    with pytest.raises(SystemExit, match=r"^error: MAE pretraining \(mae\) diverged: loss nan at step 2/3"):
        pretrain_main(["--faces", *map(str, shards), "--out", str(tmp_path / "b"), "--params", json.dumps(params)])
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists() and not (tmp_path / "b" / "meta.json").exists()


def test_pretrain_defaults_are_the_schema_defaults() -> None:
    """A direct call gets the workflow's defaults (the config schema); bad values name the key."""
    from expmae.config import defaults

    for kind, section in (("image", "mae"), ("video", "mae_video")):
        c, d = PretrainConfig.from_params({"kind": kind}), defaults(section)
        assert c.model.to_dict().items() >= {k: v for k, v in d.items() if k in c.model.to_dict()}.items()
        assert all(getattr(c, k) == v for k, v in d.items() if hasattr(c, k)), kind
        assert (c.seed, c.device, c.section) == (0, "auto", section)
    assert PretrainConfig.from_params({"kind": "video"}).frames_per_video is None
    with pytest.raises(ValueError, match="config key mae_video.lr"):
        PretrainConfig.from_params({"kind": "video", "lr": -1})


@pytest.mark.slow
def test_video_pretrain_loss_decreases_and_resumes(shards, tmp_path) -> None:
    from expmae.mae.clips import FaceClipDataset, build_clip_samples
    from expmae.faces.store import load_face_shard
    from expmae.mae.video import VideoMAE

    c = vcfg(epochs=30, batch_size=5, lr=3e-3, warmup_epochs=2)
    torch.manual_seed(0)
    init = VideoMAE(c.model).eval()
    res = train(c, shards, tmp_path / "full")  # 5 clips (v4 has no crops): 1 step per epoch
    assert res.step == 30 and np.isfinite(res.step_losses).all()
    samples = build_clip_samples([load_face_shard(s)[1] for s in shards], 4)
    x = torch.stack([FaceClipDataset(shards, samples, S)[(i, i)] for i in range(len(samples))])  # [5, 3, 4, S, S]
    noise = torch.rand(len(x), 16, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        before, after = init(x, noise=noise)[0].item(), res.model.eval()(x, noise=noise)[0].item()
    assert after < 0.8 * before, (before, after)
    meta = json.loads((tmp_path / "full" / "meta.json").read_text())
    assert meta["n_samples"] == 5 and meta["config"]["kind"] == "video"
    assert (tmp_path / "full" / "recon.png").read_bytes()[:4] == b"\x89PNG"
    enc, info = load_encoder(tmp_path / "full" / "encoder.safetensors")
    assert info["kind"] == "video" and type(enc).__name__ == "VideoMAE"
    # killed after step 3 and resumed: same weights as uninterrupted (same engine as the image MAE)
    c2 = vcfg(epochs=3, batch_size=2, checkpoint_every_steps=1)
    full = train(c2, shards, tmp_path / "a")
    train(c2, shards, tmp_path / "b", max_steps=3)
    resumed = train(c2, shards, tmp_path / "b")
    assert resumed.step_losses == full.step_losses
    a, b = load_file(tmp_path / "a" / "encoder.safetensors"), load_file(tmp_path / "b" / "encoder.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_from_init_records_the_source(shards, tmp_path) -> None:
    """mae.init end to end: a facebookresearch-layout .pth (encoder only) -> pretraining starts from
    it (decoder fresh), meta.json, the encoder file and the feature table name the source."""
    torch.manual_seed(5)
    src = MAE(MAEConfig.from_dict(TINY))
    torch.save({"model": {**src.encoder_state_dict(), "pos_embed": src.pos_embed.clone()}}, tmp_path / "init.pth")
    c = cfg(epochs=0, init=str(tmp_path / "init.pth"), embed_dim=None, depth=None, decoder_dim=None)
    assert (c.model.embed_dim, c.model.depth, c.model.decoder_dim) == (32, 2, 96)  # from the checkpoint; micro decoder
    res = train(c, shards, tmp_path / "mae")
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():  # 0 epochs: the encoder is the checkpoint's
        torch.testing.assert_close(res.model.eval().encode(x), src.eval().encode(x), rtol=0, atol=1e-6)
    meta = json.loads((tmp_path / "mae" / "meta.json").read_text())
    init = meta["init"]
    assert init["format"] == "facebookresearch-mae" and init["sha256"] == file_sha256(tmp_path / "init.pth")
    assert "decoder_blocks" in init["fresh"] and "blocks" in init["mapped"] and not init["interpolated"]
    manifest = tmp_path / "s00001.parquet"
    pd.DataFrame({"name": ["v3", "v5"], "path": ["/x/v3.mp4", "/x/v5.mp4"], "size": [1, 1],
                  "mtime_ns": [0, 0]}).to_parquet(manifest)
    out = tmp_path / "feat.parquet"
    extract(shards[1], manifest, tmp_path / "mae" / "encoder.safetensors", out, params={"device": "cpu", "pool": "cls"})
    fmeta = read_meta(out)
    assert fmeta["init_source"] == {k: init[k] for k in ("path", "format", "sha256")} and fmeta["pool"] == "cls"

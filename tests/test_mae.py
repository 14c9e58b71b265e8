"""expMAE: model invariants, pretraining engine (loss, exact resume, DDP, safetensors), features."""
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
from skimage import data
from skimage.transform import resize

from expmae.features import run as feature_run
from expmae.io import file_sha256, read_features, read_meta
from expmae.mae import MAE, MAEConfig, create_mae
from expmae.mae.checkpoint import load_encoder
from expmae.mae.pretrain import PretrainConfig, main as pretrain_main, train

torch.set_num_threads(1)

S = 32  # fixture crop size = model image size (small so the whole file stays fast)
TINY = dict(img_size=S, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1,
            mask_ratio=0.75, norm_pix_loss=True)


def astronaut_crops(n: int, rng: np.random.Generator, size: int = S) -> np.ndarray:
    """Jittered face crops of skimage's astronaut -> uint8 [n, size, size, 3]."""
    img = data.astronaut()
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        side = int(rng.integers(110, 150))
        y, x = 50 + int(rng.integers(-12, 13)), 150 + int(rng.integers(-12, 13))
        crop = img[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = (resize(crop, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
    return out


def make_shard(folder: Path, videos: dict[str, int], seed: int = 0) -> Path:
    """Face-cache folder in the face stage's layout: crops.npy, frames.parquet, qc.parquet."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n, k in videos.items() for _ in range(k)]
    crops = astronaut_crops(len(names), rng) if names else np.zeros((0, S, S, 3), np.uint8)
    np.save(folder / "crops.npy", crops)
    fi = [i for k in videos.values() for i in range(k)]
    frames = pd.DataFrame({
        "name": pd.Series(names, dtype=str), "frame_index": pd.Series(fi, dtype="int64"),
        "time_s": pd.Series([i / 4 for i in fi], dtype="float64"),
        "box": [[0.0, 0.0, 10.0, 10.0]] * len(names), "landmarks": [[0.0] * 10] * len(names),
        "score": pd.Series([0.9] * len(names), dtype="float64"), "track_id": pd.Series([0] * len(names), dtype="int64"),
        "crop_row": pd.Series(np.arange(len(names)), dtype="int64")})
    frames.to_parquet(folder / "frames.parquet")
    qc = pd.DataFrame({"name": list(videos), "ok": [k > 0 for k in videos.values()],
                       "reason": ["" if k else "no face" for k in videos.values()],
                       "frames_decoded": [8] * len(videos), "frames_with_face": list(videos.values()),
                       "n_crops": list(videos.values())})
    qc.to_parquet(folder / "qc.parquet")
    return folder


def cfg(**kw) -> PretrainConfig:
    base = dict(TINY, epochs=3, batch_size=6, lr=1e-3, weight_decay=0.05, warmup_epochs=1, frames_per_video=4,
                seed=0, device="cpu")
    return PretrainConfig.from_params({**base, **kw})


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("faces")
    return [make_shard(root / "s00000", {"v0": 6, "v1": 4, "v2": 3}, seed=1),
            make_shard(root / "s00001", {"v3": 5, "v4": 0, "v5": 8}, seed=2)]


# ----------------------------------------------------------------------------- model

@pytest.mark.parametrize("L_side,ratio", [(4, 0.75), (7, 0.75), (4, 0.9), (7, 0.5)])
def test_masking_keeps_round_count_and_restore_inverts(L_side: int, ratio: float) -> None:
    L, B, D = L_side * L_side, 3, 5
    x = torch.randn(B, L, D)
    noise = torch.rand(B, L)
    kept, mask, ids_restore = MAE.random_masking(x, ratio, noise)
    K = round(L * (1 - ratio))
    assert kept.shape == (B, K, D)
    assert (mask.sum(1) == L - K).all()
    # kept tokens are exactly the unmasked ones, and ids_restore undoes the shuffle
    ids_shuffle = torch.argsort(noise, dim=1)
    for b in range(B):
        assert torch.equal(kept[b], x[b, ids_shuffle[b, :K]])
        assert set(ids_shuffle[b, :K].tolist()) == set(torch.nonzero(mask[b] == 0).flatten().tolist())
    shuffled = torch.gather(x, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, D))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D)), x)
    # different samples get different masks
    assert not torch.equal(mask[0], mask[1])


def test_patchify_roundtrip_and_layout() -> None:
    m = MAE(MAEConfig(**TINY))
    imgs = torch.randn(2, 3, S, S)
    p = m.patchify(imgs)
    assert p.shape == (2, (S // 8) ** 2, 8 * 8 * 3)
    assert torch.equal(m.unpatchify(p), imgs)
    # patch 1 is the second patch of the first row, pixels in (row, col, channel) order
    assert torch.equal(p[0, 1].reshape(8, 8, 3), imgs[0, :, :8, 8:16].permute(1, 2, 0))


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_matches_reference_formula(norm_pix: bool) -> None:
    """The fast path (embed visible patches only, head on masked patches) equals the textbook MAE loss."""
    torch.manual_seed(0)
    m = MAE(MAEConfig(**{**TINY, "norm_pix_loss": norm_pix})).eval()
    imgs, noise = torch.randn(3, 3, S, S), torch.rand(3, (S // 8) ** 2)
    loss, pred, mask = m(imgs, noise=noise, full_pred=True)
    # reference: conv patch embedding of the whole image, then mask tokens; loss over all patches x mask
    x = m.patch_embed(imgs) + m.pos_embed[:, 1:]
    kept, mask_ref, ids_restore = MAE.random_masking(x, 0.75, noise)
    x = torch.cat([(m.cls_token + m.pos_embed[:, :1]).expand(3, -1, -1), kept], 1)
    for blk in m.blocks:
        x = blk(x)
    pred_ref = m.decoder_pred(m.forward_decoder(m.norm(x), ids_restore))
    target = m.patchify(imgs)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss_ref = (((pred_ref - target) ** 2).mean(-1) * mask_ref).sum() / mask_ref.sum()
    assert torch.equal(mask, mask_ref)
    torch.testing.assert_close(pred, pred_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)


def test_registry_config_and_encode() -> None:
    m = create_mae("mae_tiny", img_size=32, patch_size=8)
    assert (m.cfg.embed_dim, m.cfg.depth, m.cfg.num_heads) == (192, 12, 3)
    with pytest.raises(KeyError):
        create_mae("mae_giant")
    m2 = MAE.from_config({**TINY, "epochs": 5, "lr": 1.0})  # training keys are ignored
    z = m2.eval().encode(torch.randn(3, 3, S, S))
    assert z.shape == (3, 32) and torch.isfinite(z).all()
    assert all(k.startswith(("patch_embed", "cls_token", "blocks", "norm")) for k in m2.encoder_state_dict())
    assert "pos_embed" not in m2.state_dict()  # fixed sin-cos: recomputed, never stored


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


# ----------------------------------------------------------------------------- engine

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
    """A real kill: SIGKILL the CLI as soon as its first checkpoint lands, rerun, compare weights."""
    torch.set_num_threads(1)  # earlier tests (thread-pool limits) may have changed it; must match the child
    params = {**TINY, "epochs": 12, "batch_size": 6, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1,
              "frames_per_video": 4, "seed": 0, "device": "cpu", "checkpoint_every_steps": 1}
    argv = ["--faces", *map(str, shards), "--out", str(tmp_path / "killed"), "--params", json.dumps(params)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count as this process: bit-exact CPU math
    proc = subprocess.Popen([sys.executable, "-m", "expmae.mae.pretrain", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with safe_open(ckpt, framework="pt") as f:
        killed_at = json.loads(f.metadata()["state"])["step"]
    assert not (tmp_path / "killed" / "encoder.safetensors").exists() or killed_at == 36
    pretrain_main(argv)  # resume in this process
    full = train(PretrainConfig.from_params(params), shards, tmp_path / "full")
    a, b = load_file(tmp_path / "killed" / "encoder.safetensors"), load_file(tmp_path / "full" / "encoder.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), f"killed at step {killed_at}"
    meta = json.loads((tmp_path / "killed" / "meta.json").read_text())
    assert meta["steps"] == 36 and meta["resumed_from_step"] == killed_at and meta["step_losses"] == full.step_losses


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


# ----------------------------------------------------------------------------- features

def extract(faces, manifest, encoder, out, frames_out=None, params=None, video=False) -> dict:
    """One expMAE feature job (feature set expmae / expmae_video) through the extractor runner."""
    name, extractor = ("expmae_video", "expmae_video") if video else ("expmae", "expmae_image")
    return feature_run.extract(name, {"extractor": extractor, **(params or {})}, str(manifest), str(out),
                               faces=str(faces), encoder=str(encoder),
                               frames_out=None if frames_out is None else str(frames_out))


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


# ----------------------------------------------------------------------------- video MAE

VTINY = dict(img_size=S, patch_size=8, tubelet=2, num_frames=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=32,
             decoder_depth=1)


@pytest.mark.parametrize("ratio", [0.9, 0.75, 0.5])
def test_video_mae_tube_masking_and_patchify(ratio: float) -> None:
    from expmae.mae.video import VideoMAE, VideoMAEConfig

    m = VideoMAE(VideoMAEConfig.from_dict({**VTINY, "mask_ratio": ratio}))  # + mae_video schema defaults
    clips = torch.randn(3, 3, 4, S, S)
    tubes = m.patchify(clips)
    assert tubes.shape == (3, 2 * 16, 2 * 8 * 8 * 3) and torch.equal(m.unpatchify(tubes), clips)
    # tube (slot 1, row 0, col 1) holds frames 2-3, rows 0-7, cols 8-15
    assert torch.equal(tubes[0, 16 + 1].reshape(2, 8, 8, 3), clips[0, :, 2:4, :8, 8:16].permute(1, 2, 3, 0))
    noise = torch.rand(3, m.noise_len, generator=torch.Generator().manual_seed(1))
    loss, pred, mask = m(clips, noise=noise, full_pred=True)
    per_slot = mask.reshape(3, 2, 16)
    assert torch.equal(per_slot[:, 0], per_slot[:, 1])  # same spatial mask in every time slot
    assert (per_slot[:, 0].sum(1) == 16 - round(16 * (1 - ratio))).all()
    assert abs(mask.mean().item() - ratio) <= 1 / 16
    assert not torch.equal(mask[0], mask[1])  # per-clip masks
    assert pred is not None and pred.shape == tubes.shape
    loss.backward()
    assert torch.isfinite(loss) and m.tube_embed.weight.grad is not None
    assert m.eval().encode(clips).shape == (3, 32)
    assert all(k.startswith(("tube_embed", "blocks", "norm")) for k in m.encoder_state_dict())


def test_clip_rows_resample_and_pad() -> None:
    from expmae.mae.clips import build_clip_samples, clip_rows, video_clips

    assert clip_rows(np.array([7]), 4).tolist() == [7, 7, 7, 7]  # one crop: a still clip
    short = clip_rows(np.array([3, 4, 5]), 8)  # fewer crops than frames: repeat in time order, all used
    assert len(short) == 8 and set(short) == {3, 4, 5} and (np.diff(short) >= 0).all()
    assert clip_rows(np.arange(20), 4).tolist() == [0, 6, 13, 19]  # more crops: even spread, ends kept
    frames = pd.DataFrame({"name": ["b", "a", "b", "a"], "frame_index": [5, 2, 1, 0], "crop_row": [0, 1, 2, 3]})
    names, rows = video_clips(frames, 2)
    assert names == ["a", "b"] and rows.tolist() == [[3, 1], [2, 0]]  # sorted by frame_index, not row order
    s = build_clip_samples([frames, frames.iloc[:0]], 2)
    assert s.shape == (2, 3) and (s[:, 0] == 0).all()


def vcfg(**kw) -> PretrainConfig:
    base = dict(VTINY, kind="video", mask_ratio=0.75, epochs=2, batch_size=2, lr=1e-3, warmup_epochs=1, seed=0,
                device="cpu")
    return PretrainConfig.from_params({**base, **kw})


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


# ----------------------------------------------------------------------------- linear probe

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

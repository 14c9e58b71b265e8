"""Every GPU path once, one table (run through benchmarks/gpu_check.sh, which caps it at 8 minutes; or
`python -m benchmarks.gpu_check` from the repository root).

Rows: bf16-autocast and torch.compile pretraining steps of the ViT-L image and video MAE
(benchmarks.bench_mae: samples/s, MFU against the card's nominal bf16 peak and the share of the
bf16 matmul peak measured in the same run), DDP through the pretraining launcher on the visible
GPUs (expmae/mae/launch.py -> torchrun -> expmae.mae.pretrain on a synthetic face shard),
extractor batching (random-weight wav2vec2 / HuBERT / CLIP vision built from their configs, no
downloads: batched vs one clip per call), and GPU video decode (PyAV with the CUDA hwaccel).
Without a CUDA device every row says skipped and the exit status is 0.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, Report, paired, progress, timed

ROWS: list[dict[str, str]] = []


def row(check: str, setting: str, result: str) -> None:
    ROWS.append({"check": check, "setting": setting, "result": result})
    progress(f"{check} | {setting} | {result}")


def run(cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def pretrain_steps(tmp: Path, compile_: bool) -> None:
    """ViT-L image + video, bf16 autocast (optionally torch.compile'd) vs nothing else: MFU rows."""
    out = tmp / f"bench_{int(compile_)}.json"
    cmd = [sys.executable, "-m", "benchmarks.bench_mae", "--device", "cuda", "--bf16", "--sizes", "large",
           "--img", "224", "--batch", "128", "--video-batch", "16", "--warmup", "3" if compile_ else "2",
           "--iters", "3", "--rounds", "3", "--json", str(out)]
    if compile_:
        cmd += ["--compile", "--impls", "expmae"]
    tag = "torch.compile + bf16" if compile_ else "bf16 autocast"
    try:
        p = run(cmd, timeout=200 if compile_ else 150)
    except subprocess.TimeoutExpired:
        return row(f"pretrain step ({tag})", "ViT-L image + video, 224 px", "timed out")
    if p.returncode != 0:
        return row(f"pretrain step ({tag})", "ViT-L, 224 px", "failed: " + p.stderr.strip().splitlines()[-1][:120])
    for r in json.loads(out.read_text()):
        unit = "clips/s" if r["kind"] == "video" else "img/s"
        mfu = f", MFU {100 * r['mfu']:.1f}%" if r["mfu"] is not None else ""
        row(f"pretrain step ({tag})", f"{r['impl']} ViT-L {r['kind']} 224 px",
            f"{r['samples_s']:.1f} {unit}{mfu}, {100 * r['share']:.0f}% of bf16 mm peak, {r['mem']:.0f} MiB")


def write_shard(folder: Path, n_videos: int = 64, frames: int = 8, size: int = 224) -> Path:
    import numpy as np
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(folder / "crops.npy", rng.integers(0, 256, (n_videos * frames, size, size, 3), dtype=np.uint8))
    pd.DataFrame({"name": [f"v{i // frames:03d}" for i in range(n_videos * frames)],
                  "frame_index": [i % frames for i in range(n_videos * frames)],
                  "crop_row": np.arange(n_videos * frames)}).to_parquet(folder / "frames.parquet")
    return folder


def ddp(tmp: Path, n_gpus: int) -> None:
    """The launcher's one-node path: torchrun with one process per visible GPU, NCCL, a short run."""
    shard = write_shard(tmp / "faces" / "s00000")
    params = {"size": "base", "img_size": 224, "epochs": 1, "batch_size": 64 * n_gpus, "frames_per_video": 8,
              "device": "cuda", "bf16": True, "tensorboard": False, "seed": 0}
    cmd = [sys.executable, "-m", "expmae.mae.launch", "--nnodes", "1", "--nproc-per-node", str(n_gpus), "--",
           "-m", "expmae.mae.pretrain", "--faces", str(shard), "--out", str(tmp / "ddp"), "--params", json.dumps(params)]
    t = time.time()
    try:
        p = run(cmd, timeout=150, env={"PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return row("DDP via launcher", f"{n_gpus} GPU(s), ViT-B image", "timed out")
    if p.returncode != 0:
        return row("DDP via launcher", f"{n_gpus} GPU(s)", "failed: " + (p.stderr.strip().splitlines() or ["?"])[-1][:120])
    meta = json.loads((tmp / "ddp" / "meta.json").read_text())
    rate = meta["steps"] * meta["global_batch"] / max(1e-9, meta["wall_time_s"])
    note = "" if n_gpus > 1 else " (1 GPU: torchrun runs one process, no DDP wrapper)"
    row("DDP via launcher", f"{n_gpus} GPU(s) x torchrun, ViT-B image 224 px",
        f"world {meta['world_size']}, {meta['steps']} steps, {rate:.0f} img/s incl. start-up, "
        f"{time.time() - t:.0f} s{note}")


def batching() -> None:
    """Batched vs one clip per call, random weights from configs (nothing downloaded)."""
    import torch
    from transformers import (CLIPVisionConfig, CLIPVisionModel, HubertConfig, HubertModel, Wav2Vec2Config,
                              Wav2Vec2Model)

    dev = torch.device("cuda")
    cases = [("wav2vec2-base", Wav2Vec2Model(Wav2Vec2Config()), lambda b: torch.randn(b, 16000 * 10), 32, "10 s clips"),
             ("HuBERT-large", HubertModel(HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                       intermediate_size=4096)), lambda b: torch.randn(b, 16000 * 10),
              16, "10 s clips"),
             ("CLIP ViT-L/14 image", CLIPVisionModel(CLIPVisionConfig(hidden_size=1024, num_hidden_layers=24,
                                                                      num_attention_heads=16, intermediate_size=4096,
                                                                      patch_size=14, image_size=224)),
              lambda b: torch.randn(b, 3, 224, 224), 64, "224 px crops")]
    for name, model, make, B, what in cases:
        model = model.to(dev).eval()
        x1, xb = make(1).to(dev), make(B).to(dev)

        def calls(x: "torch.Tensor", n: int) -> None:
            for _ in range(n):
                model(x)
            torch.cuda.synchronize()

        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            calls(x1, 1)
            calls(xb, 1)  # warm-up of both shapes
            t = paired({"one per call": lambda: calls(x1, B), "batched": lambda: calls(xb, 1)}, rounds=3)
        rates = {tag: B / min(v) for tag, v in t.items()}
        row("extractor batching", f"{name}, {what}, batch {B}",
            f"{rates['batched']:.0f} vs {rates['one per call']:.0f} per s one per call "
            f"({rates['batched'] / rates['one per call']:.1f}x)")
        del model
        torch.cuda.empty_cache()


def decode(tmp: Path) -> None:
    """H.264 decode with PyAV's CUDA hwaccel (NVDEC) vs CPU, frames/s; skipped where unavailable."""
    import av
    import numpy as np

    path = tmp / "clip.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 640, 480, "yuv420p"
        for i in range(150):
            frame = av.VideoFrame.from_ndarray(np.full((480, 640, 3), i % 255, np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    try:
        from av.codec.hwaccel import HWAccel
    except ImportError:
        return row("GPU video decode", "PyAV hwaccel cuda", f"skipped: PyAV {av.__version__} has no hwaccel")
    def frames(hw: object) -> int:
        with av.open(str(path), hwaccel=hw) as c:
            return sum(1 for _ in c.decode(video=0))

    rates = {}
    for tag, hw in (("cpu", None), ("cuda", HWAccel(device_type="cuda", allow_software_fallback=False))):
        try:
            wall, _, n = timed(lambda: frames(hw))
            rates[tag] = n / wall
        except Exception as e:  # no NVDEC in this FFmpeg build / driver
            return row("GPU video decode", "PyAV hwaccel cuda, 640x480", f"skipped: {type(e).__name__}: {e}"[:140])
    row("GPU video decode", f"PyAV hwaccel cuda, 640x480 {s.codec_context.name}",
        f"{rates['cuda']:.0f} frames/s vs {rates['cpu']:.0f} on CPU")


def main() -> int:
    import torch

    checks = ["pretrain step (bf16 autocast)", "pretrain step (torch.compile + bf16)", "DDP via launcher",
              "extractor batching", "GPU video decode"]
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = f"{n} x {torch.cuda.get_device_name(0)}" if n else "no CUDA device"
    with Report("expmae GPU check", f"{gpus}, torch {torch.__version__}") as rep:
        if not n:
            for c in checks:
                row(c, "-", "skipped: no CUDA device (torch.cuda.is_available() is False)")
        else:
            with tempfile.TemporaryDirectory() as d:
                tmp = Path(d)
                for name, fn in ((checks[0], lambda: pretrain_steps(tmp, False)),
                                 (checks[1], lambda: pretrain_steps(tmp, True)), (checks[2], lambda: ddp(tmp, n)),
                                 (checks[3], batching), (checks[4], lambda: decode(tmp))):
                    try:
                        fn()
                    except Exception as e:  # one broken path must not hide the others
                        row(name, "-", f"failed: {type(e).__name__}: {e}"[:160])
        rep.table(ROWS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

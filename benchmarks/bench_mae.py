"""Training throughput of expMAE's image MAE vs transformers' ViTMAEForPreTraining, side by side.

Both models get the same size (width, depth, heads, MLP ratio 4, decoder width/depth/heads, patch,
image size, mask ratio, normalised-pixel loss), the same batch, and the same AdamW step; timed
rounds alternate between the two so a busy shared machine slows both alike.

    python benchmarks/bench_mae.py                       # config.yaml mae: size, CPU
    python benchmarks/bench_mae.py --size mae_base --img 224 --batch 32
    python benchmarks/bench_mae.py --device cuda --bf16  # GPU, bf16 autocast
    python benchmarks/bench_mae.py --probe               # + linear-probe F1: pretrained vs random init
    python benchmarks/bench_mae.py --video               # + video MAE (config.yaml mae_video:) clips/s
    python benchmarks/bench_mae.py --encode              # only: CPU feature encoding, torch vs numpy

Goal: ours >= 1.2x the samples/s of the transformers reference. Where the gain comes from: the
patch projection runs on the visible 25 % only, the pixel head on the masked patches only,
token gathers are row copies, qkv is one matmul (timm). The transformer blocks themselves cost
the same in both, so for deep models (mae_tiny/base: 12 blocks) the ratio falls towards ~1.05x.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from expmae.mae.model import MAE, MAE_SIZES, MAEConfig  # noqa: E402


def hf_model(c: MAEConfig) -> torch.nn.Module:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    hc = ViTMAEConfig(
        hidden_size=c.embed_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=int(c.embed_dim * c.mlp_ratio), decoder_hidden_size=c.decoder_dim,
        decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
        decoder_intermediate_size=int(c.decoder_dim * c.mlp_ratio), image_size=c.img_size, patch_size=c.patch_size,
        mask_ratio=c.mask_ratio, norm_pix_loss=c.norm_pix_loss, qkv_bias=True, layer_norm_eps=1e-6,
    )
    m = ViTMAEForPreTraining(hc)
    print(f"transformers ViTMAE attention implementation: {m.config._attn_implementation}")
    return m


def step_fn(model: torch.nn.Module, ours: bool, x: torch.Tensor, bf16: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    dev = x.device.type

    def step() -> float:
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = model(x)[0] if ours else model(pixel_values=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def bench(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.size == "config":
        mae_cfg = yaml.safe_load((ROOT / "config.yaml").read_text())["mae"]
        c = MAEConfig.from_dict(mae_cfg)
    else:
        c = MAEConfig.from_dict({**MAE_SIZES[args.size], "img_size": args.img, "patch_size": args.patch})
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours = MAE(c).to(device).train()
    ref = hf_model(c).to(device).train()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    print(f"size: {json.dumps(c.to_dict())}\nparams: ours {n_ours:,}  transformers {n_ref:,}")
    if args.compile:
        ours = torch.compile(ours)
    x = torch.randn(args.batch, 3, c.img_size, c.img_size, device=device)
    steps = {"expmae": step_fn(ours, True, x, args.bf16), "transformers": step_fn(ref, False, x, args.bf16)}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in steps.values():  # warm-up (allocators, oneDNN/cuBLAS plans, compile)
        for _ in range(args.warmup):
            fn()
    sync()
    # Rounds alternate between the models; each round's wall time gives one throughput sample.
    # On a shared machine other jobs inflate some rounds, so the median and the best round
    # (as timeit does) are both reported; CPU time counts only this process's work.
    wall = {k: [] for k in steps}
    cpu = {k: 0.0 for k in steps}
    for _ in range(args.rounds):
        for k, fn in steps.items():
            t, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.iters):
                fn()
            sync()
            wall[k].append(time.perf_counter() - t)
            cpu[k] += time.process_time() - c0
    n = args.iters * args.batch
    med = {k: n / statistics.median(v) for k, v in wall.items()}
    best = {k: n / min(v) for k, v in wall.items()}
    per_cpu = {k: n * args.rounds / v for k, v in cpu.items()}
    print(f"device {device} bf16={args.bf16} batch {args.batch} threads {torch.get_num_threads()} "
          f"rounds {args.rounds} x {args.iters} steps")
    for k in steps:
        print(f"  {k:13s} {med[k]:8.1f} samples/s median  {best[k]:8.1f} best  {per_cpu[k]:8.1f} per CPU-second")
    r = lambda d: d["expmae"] / d["transformers"]  # noqa: E731
    print(f"  ratio expmae / transformers = {r(med):.2f}x median, {r(best):.2f}x best, "
          f"{r(per_cpu):.2f}x CPU time (goal >= 1.2x)")
    if device.type == "cuda":  # peak memory of the whole run (both models resident)
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")


def bench_video(args: argparse.Namespace) -> None:
    """Video MAE (config.yaml mae_video:) training clips/s next to the image MAE (mae:) on the same
    frames: a clip is num_frames crops, so frames/s compares the two per face crop seen."""
    from expmae.mae.video import VideoMAE, VideoMAEConfig

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    vc, ic = VideoMAEConfig.from_dict(cfg["mae_video"]), MAEConfig.from_dict(cfg["mae"])
    device = torch.device(args.device)
    torch.manual_seed(0)
    B = args.video_batch
    models = {"video MAE": VideoMAE(vc).to(device).train(), "image MAE": MAE(ic).to(device).train()}
    xs = {"video MAE": torch.randn(B, 3, vc.num_frames, vc.img_size, vc.img_size, device=device),
          "image MAE": torch.randn(B * vc.num_frames, 3, ic.img_size, ic.img_size, device=device)}
    frames = {"video MAE": B * vc.num_frames, "image MAE": B * vc.num_frames}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"\nvideo: {json.dumps(vc.to_dict())}")
    print(f"device {device} bf16={args.bf16} batch {B} clips = {B * vc.num_frames} frames, "
          f"{vc.grid[0] * vc.grid[1]} tubes/clip, mask {vc.mask_ratio}")
    for k, m in models.items():
        step = step_fn(m, True, xs[k], args.bf16)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            step()
        sync()
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for _ in range(args.iters):
                step()
            sync()
            times.append(time.perf_counter() - t)
        per_s = args.iters / statistics.median(times)
        mem = f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if device.type == "cuda" else ""
        unit = f"{per_s * B:8.1f} clips/s" if k == "video MAE" else f"{per_s * B * vc.num_frames:8.1f} images/s"
        print(f"  {k:10s} {unit}  {per_s * frames[k]:8.1f} frames/s (median){mem}")


# ----------------------------------------------------------------------------- linear probe
# A small labeled fixture: synthetic cartoon faces (random identity: colours, geometry, pose,
# background) with five expressions carried by brows, eyes and mouth. Each "video" is one
# identity and expression seen in 4 jittered frames, stored in the face stage's cache layout and
# run through the real pretraining engine and feature extractor.
CLASSES = ["neutral", "happy", "sad", "surprise", "angry"]


def _stroke(img, xs, ys, r, color) -> None:
    from skimage.draw import disk

    for x, y in zip(xs, ys):
        rr, cc = disk((y, x), r, shape=img.shape[:2])
        img[rr, cc] = color


def cartoon_face(label: str, ident: dict, rng, S: int = 112):
    import numpy as np
    from skimage.draw import ellipse
    from skimage.transform import rotate

    img = np.empty((S, S, 3))
    img[:] = ident["bg"]
    img += ident["grad"] * np.linspace(0, 1, S)[:, None, None]
    cx, cy = S / 2 + ident["dx"] + rng.normal(0, 1.5), S / 2 + ident["dy"] + rng.normal(0, 1.5)
    R = S * ident["scale"]
    rr, cc = ellipse(cy, cx, R * 1.15, R * 0.9, shape=img.shape[:2])
    img[rr, cc] = ident["skin"]
    ex, ey, er = R * 0.38, cy - R * 0.25, R * ident["eye"]
    inten = rng.uniform(0.6, 1.0)
    t = np.linspace(0, 1, 12)
    for s in (-1, 1):
        rr, cc = ellipse(ey, cx + s * ex, er * (1.4 if label == "surprise" else 1.0), er * 1.2, shape=img.shape[:2])
        img[rr, cc] = 0.05
        inner = {"neutral": 0.0, "happy": 0.05, "sad": 0.25, "surprise": 0.3, "angry": -0.28}[label] * inten
        outer = {"neutral": 0.0, "happy": 0.05, "sad": -0.05, "surprise": 0.3, "angry": 0.1}[label] * inten
        bx = cx + s * (ex - R * 0.22 + t * R * 0.44)
        by = ey - R * 0.28 - R * (inner * (1 - t) + outer * t)
        _stroke(img, bx, by, max(1.0, R * 0.045), ident["brow"])
    my, mw, tm = cy + R * 0.5, R * ident["mouth"], np.linspace(-1, 1, 24)
    if label == "surprise":
        rr, cc = ellipse(my, cx, R * 0.2 * inten + 2, mw * 0.45, shape=img.shape[:2])
        img[rr, cc] = (0.3, 0.05, 0.05)
    else:
        curve = {"neutral": 0.0, "happy": 0.25, "sad": -0.22, "angry": -0.05}[label] * inten
        _stroke(img, cx + tm * mw, my + R * curve * (1 - tm**2) - R * curve * 0.5, max(1.0, R * 0.05), (0.45, 0.08, 0.1))
    img = rotate(img, ident["rot"] + rng.normal(0, 2), mode="edge") + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def identity(rng) -> dict:
    return dict(bg=rng.uniform(0.2, 0.9, 3), grad=rng.uniform(-0.2, 0.2, 3), dx=rng.normal(0, 4), dy=rng.normal(0, 4),
                scale=rng.uniform(0.3, 0.38), skin=rng.uniform([0.5, 0.35, 0.25], [0.95, 0.8, 0.7]),
                eye=rng.uniform(0.06, 0.1), brow=rng.uniform(0.05, 0.4, 3), mouth=rng.uniform(0.3, 0.45),
                rot=rng.normal(0, 6))


def write_fixture(root: Path, n_per_class: int = 40, frames: int = 4, shards: int = 2) -> tuple[list[Path], dict]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    vids = [(f"{c}_{i:03d}", c) for i in range(n_per_class) for c in CLASSES]
    labels, folders = {}, []
    for s in range(shards):
        part = vids[s::shards]
        crops, rows = [], []
        for name, c in part:
            ident = identity(rng)
            for f in range(frames):
                rows.append({"name": name, "frame_index": f, "time_s": f / 4, "score": 0.99, "track_id": 0,
                             "crop_row": len(crops)})
                crops.append(cartoon_face(c, ident, rng))
            labels[name] = c
        d = root / "faces" / f"s{s:05d}"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "crops.npy", np.stack(crops))
        pd.DataFrame(rows).to_parquet(d / "frames.parquet")
        pd.DataFrame({"name": [n for n, _ in part], "path": [f"{n}.mp4" for n, _ in part], "size": 0,
                      "mtime_ns": 0}).to_parquet(root / f"s{s:05d}.manifest.parquet")
        folders.append(d)
    return folders, labels


def probe(epochs: int, threads: int) -> None:
    import tempfile

    import numpy as np

    from expmae.faces.store import load_face_shard
    from expmae.features.run import extract
    from expmae.io import read_features
    from expmae.mae.pretrain import PretrainConfig, train
    from expmae.mae.probe import linear_probe_f1

    torch.set_num_threads(threads)
    params = {**yaml.safe_load((ROOT / "config.yaml").read_text())["mae"], "seed": 0, "device": "cpu",
              "frames_per_video": 4}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders, labels = write_fixture(root)
        scores = {}
        for tag, ep in (("random init", 0), (f"pretrained {epochs} ep", epochs)):
            t = time.time()
            train(PretrainConfig.from_params({**params, "epochs": ep}), folders, root / tag)
            feats = []
            for s, d in enumerate(folders):
                extract("expmae", {"extractor": "expmae_image", "device": "cpu"}, str(root / f"s{s:05d}.manifest.parquet"),
                        str(root / tag / f"s{s}.parquet"), faces=str(d), encoder=str(root / tag / "encoder.safetensors"))
                feats.append(root / tag / f"s{s}.parquet")
            names, X, mask, _ = read_features(feats)
            scores[tag] = linear_probe_f1(X, [labels[n] for n in names])
            print(f"  {tag:20s} linear-probe weighted F1 {scores[tag]:.3f}  ({time.time() - t:.0f} s)")
        # reference: the same probe on raw 16x16 pixels (per-video mean)
        pix = {}
        for d in folders:
            crops, frames = load_face_shard(d)
            small = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float(), 16)
            for name, g in frames.groupby("name"):
                pix[name] = small[g["crop_row"].to_numpy()].mean(0).flatten().numpy()
        names = sorted(pix)
        print(f"  {'raw 16x16 pixels':20s} linear-probe weighted F1 "
              f"{linear_probe_f1(np.stack([pix[n] for n in names]), [labels[n] for n in names]):.3f}")
        print(f"  ({len(labels)} videos x 4 frames, {len(CLASSES)} classes, chance ~{1 / len(CLASSES):.2f})")


def encode(threads: int, n: int = 1024) -> None:
    """Per-shard feature encoding on CPU: torch MAE.encode vs the numpy encoder (npnet) the
    jobs use on CPU, crops/s on the same crops, and each job's import cost (fresh processes)."""
    import subprocess
    import sys
    import tempfile

    import numpy as np

    from expmae.features.mae import for_model
    from expmae.mae.checkpoint import save_encoder
    from expmae.mae.model import MAE, MAEConfig
    from expmae.npnet import MAEImageEncoder

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)  # numpy's BLAS: the same thread budget as torch
    cfg = MAEConfig.from_dict(yaml.safe_load((ROOT / "config.yaml").read_text())["mae"])
    model = MAE(cfg).eval()
    crops = np.random.default_rng(0).integers(0, 256, (n, cfg.img_size, cfg.img_size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        save_encoder(Path(tmp) / "enc.safetensors", model, {})
        enc = MAEImageEncoder.from_file(Path(tmp) / "enc.safetensors")
    def encode_crops(m, x: np.ndarray, bs: int = 256) -> None:  # the feature job's batches
        for i in range(0, len(x), bs):
            m.encode(x[i : i + bs])

    rates = {}
    for tag, m in (("torch", for_model(model)), ("numpy", enc)):
        encode_crops(m, crops[:64])  # warm-up
        t = time.perf_counter()
        encode_crops(m, crops)
        rates[tag] = n / (time.perf_counter() - t)
    imports = {}
    for tag, code in (("torch", "import expmae.mae.model, expmae.mae.checkpoint"),
                      ("numpy", "import expmae.features.run")):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        imports[tag] = time.perf_counter() - t
    print(f"expMAE encoder ({cfg.img_size}px, D={cfg.embed_dim}, depth {cfg.depth}), {threads} threads, {n} crops:")
    for tag in rates:
        print(f"  {tag:6s} {rates[tag]:8.0f} crops/s   job start-up (imports) {imports[tag]:.2f} s")
    print(f"  numpy/torch speed {rates['numpy'] / rates['torch']:.2f}x; the import saving pays for "
          f"{(imports['torch'] - imports['numpy']) / (1 / rates['numpy'] - 1 / rates['torch']):.0f} crops")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="config", choices=["config", *MAE_SIZES])
    ap.add_argument("--img", type=int, default=112)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--probe", action="store_true", help="also run the linear-probe comparison")
    ap.add_argument("--probe-epochs", type=int, default=30)
    ap.add_argument("--video", action="store_true", help="also time the video MAE (config.yaml mae_video:)")
    ap.add_argument("--video-batch", type=int, default=8, help="clips per video-MAE step")
    ap.add_argument("--encode", action="store_true", help="only: CPU feature encoding, torch vs numpy")
    args = ap.parse_args()
    if args.encode:
        return encode(args.threads)
    bench(args)
    if args.video:
        bench_video(args)
    if args.probe:
        probe(args.probe_epochs, args.threads)


if __name__ == "__main__":
    main()

"""MAE pretraining throughput at paper widths: expMAE vs transformers, side by side, in one run.

For ViT-B and ViT-L (named sizes, expmae/mae/sizes.py) it times one AdamW training step of
  image: expmae MAE           vs transformers ViTMAEForPreTraining   (75 % masking)
  video: expmae VideoMAE      vs transformers VideoMAEForPreTraining (90 % tube masking)
with the same architecture, batch, optimizer and masking ratio, rounds alternating between the
two so a busy shared machine slows both alike. Per row: samples/s (median and best round), the
ratio to transformers, peak memory (CPU: peak RSS of a separate 2-step process; GPU: the
allocator's peak), FLOPs per sample (counted by torch's FlopCounterMode on one step of that
model, forward + backward, plus formulas for the CPU attention kernels that it lacks) and the
achieved FLOP/s as a share of a matmul peak this run measures itself (fp32 torch.mm on CPU, bf16
on GPU; on a GPU also against the card's nominal dense bf16 peak when the card is known: MFU),
as the median over rounds and the lowest-highest round. `benchmarks/profile_mae.py` shows where
the rest of a step's time goes.

    python benchmarks/bench_mae.py                           # CPU, 2 threads, ViT-B + ViT-L, 112 px
    python benchmarks/bench_mae.py --sizes base --kinds image --img 224 --batch 32
    python benchmarks/bench_mae.py --device cuda --bf16 --img 224 --batch 128 --video-batch 16 [--compile]
    python benchmarks/bench_mae.py --probe               # + linear-probe F1: pretrained vs random init
    python benchmarks/bench_mae.py --encode              # only: CPU feature encoding, torch vs numpy

Goals: never slower than transformers; >= 80 % of the measured matmul peak on CPU; >= 45 % of the
card's bf16 peak on a GPU. Where ours saves work: the patch projection runs on the visible
patches only, the pixel head on the masked ones only, token gathers are row copies; the blocks
(fused qkv, F.scaled_dot_product_attention) cost the same in both.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from expmae.mae.model import MAE, MAEConfig  # noqa: E402
from expmae.mae.video import VideoMAE, VideoMAEConfig  # noqa: E402

# Nominal dense bf16 tensor-core peaks (FLOP/s, no sparsity) of cards an MFU is quoted against.
NOMINAL_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def hf_image(c: MAEConfig) -> torch.nn.Module:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    return ViTMAEForPreTraining(ViTMAEConfig(
        hidden_size=c.embed_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=int(c.embed_dim * c.mlp_ratio), decoder_hidden_size=c.decoder_dim,
        decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
        decoder_intermediate_size=int(c.decoder_dim * c.mlp_ratio), image_size=c.img_size, patch_size=c.patch_size,
        mask_ratio=c.mask_ratio, norm_pix_loss=c.norm_pix_loss, qkv_bias=True, layer_norm_eps=1e-6,
        attn_implementation="sdpa"))


def hf_video(c: VideoMAEConfig) -> torch.nn.Module:
    from transformers import VideoMAEConfig as HFVideoConfig, VideoMAEForPreTraining

    return VideoMAEForPreTraining(HFVideoConfig(
        image_size=c.img_size, patch_size=c.patch_size, num_frames=c.num_frames, tubelet_size=c.tubelet,
        hidden_size=c.embed_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=int(c.embed_dim * c.mlp_ratio), decoder_hidden_size=c.decoder_dim,
        decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
        decoder_intermediate_size=int(c.decoder_dim * c.mlp_ratio), norm_pix_loss=c.norm_pix_loss,
        qkv_bias=True, use_mean_pooling=False, layer_norm_eps=1e-6, attn_implementation="sdpa"))


def tube_mask(c: VideoMAEConfig, batch: int, device: torch.device) -> torch.Tensor:
    """transformers' bool_masked_pos [B, T'*N]: the same spatial positions masked in every time slot."""
    T, N = c.grid
    n_mask = N - max(1, int(round(N * (1.0 - c.mask_ratio))))
    ids = torch.rand(batch, N).argsort(dim=1)[:, :n_mask]
    m = torch.zeros(batch, N, dtype=torch.bool).scatter_(1, ids, True)
    return m.repeat(1, T).to(device)


def build(kind: str, size: str, impl: str, args: argparse.Namespace, device: torch.device):
    """-> (model, loss function of the model, samples per step)."""
    torch.manual_seed(0)
    if kind == "image":
        c = MAEConfig.from_dict({"size": size, "img_size": args.img, "patch_size": 16})
        B = args.batch
        x = torch.randn(B, 3, c.img_size, c.img_size, device=device)
        if impl == "expmae":
            m = MAE(c)
            return m.to(device).train(), lambda: m(x)[0], B, c
        m = hf_image(c)
        return m.to(device).train(), lambda: m(pixel_values=x).loss, B, c
    c = VideoMAEConfig.from_dict({"size": size, "img_size": args.img, "patch_size": 16, "num_frames": 16,
                                  "tubelet": 2})
    B = args.video_batch
    x = torch.randn(B, 3, c.num_frames, c.img_size, c.img_size, device=device)  # ours: [B, C, T, H, W]
    if impl == "expmae":
        m = VideoMAE(c)
        return m.to(device).train(), lambda: m(x)[0], B, c
    m = hf_video(c)
    xt = x.transpose(1, 2).contiguous()  # transformers: [B, T, C, H, W]
    return m.to(device).train(), lambda: m(pixel_values=xt, bool_masked_pos=tube_mask(c, B, device)).loss, B, c


def step_fn(model: torch.nn.Module, loss_fn, device: torch.device, bf16: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=True)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def cpu_attention_formulas() -> dict:
    """FLOP formulas for the CPU flash-attention kernels, which torch's counter does not know (it
    counts the CUDA ones): without them a CPU step's attention counts as free, and the share of
    the peak comes out too low (by 9 % for the ViT-B video MAE, whose decoder attends over 392 tubes)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    return {aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *_, out_shape=None, **__: fc.sdpa_flop_count(q, k, v),
            aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda g, q, k, v, *_, out_shape=None, **__: fc.sdpa_backward_flop_count(g, q, k, v)}


def flops_by_op(model: torch.nn.Module, loss_fn, device: torch.device, bf16: bool) -> dict[str, float]:
    """FLOPs of one forward + backward (matmuls, convolutions, attention) per aten op name, by torch's
    counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=cpu_attention_formulas()) as fc:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return {str(op): float(n) for op, n in fc.get_flop_counts().get("Global", {}).items()}


def count_flops(model: torch.nn.Module, loss_fn, device: torch.device, bf16: bool) -> float:
    return sum(flops_by_op(model, loss_fn, device, bf16).values())


def mm_rate(n: int, device: torch.device, dtype: torch.dtype, sync, reps: int) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def matmul_peak(device: torch.device, bf16: bool, sync) -> tuple[float, str, int]:
    """Best FLOP/s of a plain square torch.mm over a few sizes (what this machine's BLAS reaches)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    ns = (4096, 8192) if device.type == "cuda" else (1024, 2048, 3072)
    best, at = 0.0, 0
    for n in ns:
        for _ in range(3):
            rate = mm_rate(n, device, dtype, sync, 20 if device.type == "cuda" else max(2, int(3e10 / (2 * n**3))))
            if rate > best:
                best, at = rate, n
    return best, f"{str(dtype).replace('torch.', '')} torch.mm {at}x{at}", at


def peak_rss_mib(kind: str, size: str, impl: str, args: argparse.Namespace) -> float:
    """CPU peak memory of 2 training steps of one model in a fresh process: its peak RSS (VmHWM,
    reset after the imports; ru_maxrss would carry over this big process's peak across fork + exec)
    minus the RSS after the imports."""
    code = (f"import sys, torch; sys.argv = {sys.argv[:1]!r}; sys.path.insert(0, {str(ROOT)!r});"
            f"import benchmarks.bench_mae as b; torch.set_num_threads({args.threads});"
            f"a = b.parse_args({_argv(args)!r}); open('/proc/self/clear_refs', 'w').write('5');"
            "kb = lambda k: int(next(l for l in open('/proc/self/status') if l.startswith(k)).split()[1]);"
            f"base = kb('VmRSS'); m, f, n, c = b.build({kind!r}, {size!r}, {impl!r}, a, torch.device('cpu'));"
            "s = b.step_fn(m, f, torch.device('cpu'), False); s(); s(); print((kb('VmHWM') - base) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def _argv(args: argparse.Namespace) -> list[str]:
    return ["--img", str(args.img), "--batch", str(args.batch), "--video-batch", str(args.video_batch)]


def bench(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    peak, how, n_mm = matmul_peak(device, args.bf16, sync)
    # The per-round peak: the best size, over ~1-2 s of matmuls on a CPU whatever that size is (a few
    # 1024-sized products take 60 ms, and a load spike inside them would inflate that round's share).
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    reps = 20 if device.type == "cuda" else max(4, int(2e11 / (2 * n_mm**3)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    nominal = next((v for k, v in NOMINAL_BF16.items() if k in name), None) if device.type == "cuda" else None
    print(f"device {name}, threads {torch.get_num_threads()}, bf16={args.bf16}, compile={args.compile}, "
          f"image batch {args.batch}, video batch {args.video_batch} clips, {args.img} px, "
          f"{args.rounds} rounds x {args.iters} steps")
    print(f"measured matmul peak: {peak / 1e9:.1f} GFLOP/s ({how})"
          + (f"; nominal bf16 peak of the card {nominal / 1e12:.0f} TFLOP/s" if nominal else ""))
    rows = []
    for size in args.sizes.split(","):
        for kind in args.kinds.split(","):
            steps, info = {}, {}
            for impl in args.impls.split(","):
                model, loss_fn, n, cfg = build(kind, size, impl, args, device)
                flops = count_flops(model, loss_fn, device, args.bf16) / n
                if args.compile and impl == "expmae":
                    model.forward = torch.compile(model.forward)
                steps[impl] = step_fn(model, loss_fn, device, args.bf16)
                info[impl] = {"n": n, "flops": flops, "params": sum(p.numel() for p in model.parameters())}
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                for _ in range(args.warmup):
                    steps[impl]()
                sync()
                if device.type == "cuda":
                    info[impl]["mem"] = torch.cuda.max_memory_allocated(device) / 2**20
            wall, peaks = {k: [] for k in steps}, []
            for _ in range(args.rounds):  # alternate: a busy machine slows both alike
                peaks.append(mm_rate(n_mm, device, dtype, sync, reps))  # the peak under this round's load
                for k, fn in steps.items():
                    t = time.perf_counter()
                    for _ in range(args.iters):
                        fn()
                    sync()
                    wall[k].append(time.perf_counter() - t)
            for impl in steps:
                n = info[impl]["n"] * args.iters
                med, best = n / statistics.median(wall[impl]), n / min(wall[impl])
                mem = info[impl].get("mem") if device.type == "cuda" else (
                    peak_rss_mib(kind, size, impl, args) if args.memory else float("nan"))
                shares = [n * info[impl]["flops"] / w / p for w, p in zip(wall[impl], peaks)]
                rows.append({"size": size, "kind": kind, "impl": impl, "samples_s": med, "best": best,
                             "gflop": info[impl]["flops"] / 1e9, "share": statistics.median(shares),
                             "share_range": (min(shares), max(shares)),
                             "share_best": best * info[impl]["flops"] / peak,
                             "mfu": med * info[impl]["flops"] / nominal if nominal else None, "mem": mem,
                             "params": info[impl]["params"]})
                r = rows[-1]
                print(f"  .. {size} {kind} {impl}: {r['samples_s']:.2f} samples/s, {100 * r['share']:.1f}% of peak, "
                      f"{r['mem']:.0f} MiB", file=sys.stderr, flush=True)
            del steps
    print_table(rows, peak)
    return rows


def print_table(rows: list[dict], peak: float) -> None:
    hdr = (f"{'size':6s} {'kind':6s} {'impl':13s} {'samples/s':>10s} {'best':>8s} {'ratio':>6s} {'GFLOP/smp':>10s} "
           f"{'GFLOP/s':>8s} {'%peak':>6s} {'range':>9s} {'%best':>6s} {'MFU':>6s} {'peak MiB':>9s}")
    print(hdr + "\n" + "-" * len(hdr))
    ref = {(r["size"], r["kind"]): r["samples_s"] for r in rows if r["impl"] == "transformers"}
    for r in rows:
        key = (r["size"], r["kind"])
        ratio = f"{r['samples_s'] / ref[key]:5.2f}x" if key in ref else "     -"
        mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "     -"
        span = "{:.0f}-{:.0f}%".format(*(100 * s for s in r["share_range"]))
        print(f"{r['size']:6s} {r['kind']:6s} {r['impl']:13s} {r['samples_s']:10.2f} {r['best']:8.2f} {ratio} "
              f"{r['gflop']:10.1f} {r['samples_s'] * r['gflop']:8.1f} {100 * r['share']:5.1f}% {span:>9s} "
              f"{100 * r['share_best']:5.1f}% {mfu} {r['mem']:9.0f}")
    print(f"(%peak: median over rounds of achieved FLOP/s / the matmul rate measured in that round (same "
          f"size, under the same load), range: lowest-highest round; %best: best round / the best matmul "
          f"peak {peak / 1e9:.1f} GFLOP/s; "
          "FLOPs are each model's own count, so a model that computes less for the same result scores "
          "a lower share at the same speed)")


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="base,large", help="named sizes, comma-separated (expmae/mae/sizes.py)")
    ap.add_argument("--kinds", default="image,video", help="image, video or both")
    ap.add_argument("--impls", default="expmae,transformers", help="expmae, transformers or both")
    ap.add_argument("--img", type=int, default=112)
    ap.add_argument("--batch", type=int, default=16, help="images per image-MAE step")
    ap.add_argument("--video-batch", type=int, default=2, help="16-frame clips per video-MAE step")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="CPU: skip the peak-RSS processes")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    ap.add_argument("--probe", action="store_true", help="only: the linear-probe comparison")
    ap.add_argument("--probe-epochs", type=int, default=30)
    ap.add_argument("--encode", action="store_true", help="only: CPU feature encoding, torch vs numpy")
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.encode:
        return encode(args.threads)
    if args.probe:
        return probe(args.probe_epochs, args.threads)
    rows = bench(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

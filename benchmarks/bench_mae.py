"""MAE pretraining throughput at paper widths: expMAE vs transformers, side by side, in one run.

For ViT-B and ViT-L (named sizes, expmae/mae/sizes.py) it times one AdamW training step of
  image: expmae MAE           vs transformers ViTMAEForPreTraining   (75 % masking)
  video: expmae VideoMAE      vs transformers VideoMAEForPreTraining (90 % tube masking)
with the same architecture, batch, optimizer and masking ratio, in paired rounds (harness.paired)
so a busy shared machine slows both alike. Per row: samples/s (median and best round), the
ratio to transformers, peak memory (CPU: peak RSS of a separate 2-step process; GPU: the
allocator's peak), FLOPs per sample (counted by torch's FlopCounterMode on one step of that
model, forward + backward, plus formulas for the CPU attention kernels that it lacks: expmae.mae.flops) and the
achieved FLOP/s as a share of a matmul peak this run measures itself (fp32 torch.mm on CPU, bf16
on GPU; on a GPU also against the card's nominal dense bf16 peak when the card is known: MFU),
as the median over rounds and the lowest-highest round. `benchmarks.profile_mae` shows where
the rest of a step's time goes.

    .venv/bin/python -m benchmarks.bench_mae              # CPU, 2 threads, ViT-B + ViT-L, 112 px
    .venv/bin/python -m benchmarks.bench_mae --sizes base --kinds image --img 224 --batch 32
    .venv/bin/python -m benchmarks.bench_mae --device cuda --bf16 --img 224 --batch 128 --video-batch 16 [--compile]
    .venv/bin/python -m benchmarks.bench_mae --encode     # only: CPU feature encoding, torch vs numpy

Goals: never slower than transformers; >= 80 % of the measured matmul peak on CPU; >= 45 % of the
card's bf16 peak on a GPU. (Whether pretraining helps at all: benchmarks.bench_mae_probe.) Where ours saves work: the patch projection runs on the visible
patches only, the pixel head on the masked ones only, token gathers are row copies; the blocks
(fused qkv, F.scaled_dot_product_attention) cost the same in both.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.harness import ROOT, Report, paired, progress, spread, timed, workflow_config
from expmae.mae.flops import count_flops
from expmae.mae.model import MAE, MAEConfig
from expmae.mae.video import VideoMAE, VideoMAEConfig

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


def mm_rate(n: int, device: torch.device, dtype: torch.dtype, sync, reps: int) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    sync()

    def go() -> None:
        for _ in range(reps):
            torch.mm(a, b)
        sync()

    return 2 * n**3 * reps / timed(go)[0]


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
    code = (f"import sys, torch; sys.argv = {sys.argv[:1]!r};"
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
          f"{args.rounds} paired rounds x {args.iters} steps")
    print(f"measured matmul peak: {peak / 1e9:.1f} GFLOP/s ({how})"
          + (f"; nominal bf16 peak of the card {nominal / 1e12:.0f} TFLOP/s" if nominal else ""))
    rows: list[dict] = []
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
            peaks: list[float] = []

            def iters(fn) -> None:
                for _ in range(args.iters):
                    fn()
                sync()

            wall = paired({k: (lambda fn=fn: iters(fn)) for k, fn in steps.items()}, args.rounds,
                          between=lambda: peaks.append(mm_rate(n_mm, device, dtype, sync, reps)))  # this round's peak
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
                progress(f"{size} {kind} {impl}: {r['samples_s']:.2f} samples/s, {100 * r['share']:.1f}% of peak, "
                         f"{r['mem']:.0f} MiB")
            del steps
    return rows


def table(rows: list[dict]) -> list[dict]:
    """The result rows as the report's table: ratio to transformers, achieved GFLOP/s, shares in %."""
    ref = {(r["size"], r["kind"]): r["samples_s"] for r in rows if r["impl"] == "transformers"}
    return [{"size": r["size"], "kind": r["kind"], "impl": r["impl"], "samples/s": r["samples_s"], "best": r["best"],
             "ratio": (f"{r['samples_s'] / ref[r['size'], r['kind']]:.2f}x" if (r["size"], r["kind"]) in ref else "-"),
             "GFLOP/sample": r["gflop"], "GFLOP/s": r["samples_s"] * r["gflop"], "% peak": 100 * r["share"],
             "range": "{:.0f}-{:.0f}%".format(*(100 * s for s in r["share_range"])),
             "% best": 100 * r["share_best"], "MFU": "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
             "peak MiB": r["mem"]} for r in rows]


TABLE_NOTE = ("(% peak: median over rounds of achieved FLOP/s / the matmul rate measured in that round (same size, "
              "under the same load), range: lowest-highest round; % best: best round / the best matmul peak; FLOPs are "
              "each model's own count, so a model that computes less for the same result scores a lower share at the "
              "same speed)")


def encode(threads: int, rounds: int, rep: Report, n: int = 1024) -> None:
    """Per-shard feature encoding on CPU: torch MAE.encode vs the numpy encoder (npnet) the
    jobs use on CPU, crops/s on the same crops, and each job's import cost (fresh processes)."""
    import tempfile

    import numpy as np

    from expmae.features.mae import for_model
    from expmae.mae.checkpoint import save_encoder
    from expmae.mae.model import MAE, MAEConfig
    from expmae.npnet import MAEImageEncoder

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)  # numpy's BLAS: the same thread budget as torch
    cfg = MAEConfig.from_dict(workflow_config()["mae"])
    model = MAE(cfg).eval()
    crops = np.random.default_rng(0).integers(0, 256, (n, cfg.img_size, cfg.img_size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        save_encoder(Path(tmp) / "enc.safetensors", model, {})
        enc = MAEImageEncoder.from_file(Path(tmp) / "enc.safetensors")

    def encode_crops(m, x: np.ndarray, bs: int = 256) -> None:  # the feature job's batches
        for i in range(0, len(x), bs):
            m.encode(x[i : i + bs])

    for m in (for_model(model), enc):
        encode_crops(m, crops[:64])  # warm-up
    t = paired({"torch": lambda: encode_crops(for_model(model), crops), "numpy": lambda: encode_crops(enc, crops)},
               rounds)
    rates = {tag: n / statistics.median(v) for tag, v in t.items()}
    imports = {tag: timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))[0]
               for tag, code in (("torch", "import expmae.mae.model, expmae.mae.checkpoint"),
                                 ("numpy", "import expmae.features.run"))}
    rep.table([{"encoder": tag, "crops/s (median)": rates[tag], "job start-up (imports), s": imports[tag]}
               for tag in rates], caption=f"expMAE encoder ({cfg.img_size}px, D={cfg.embed_dim}, depth {cfg.depth}), "
                                          f"{threads} threads, {n} crops, {rounds} paired rounds:", digits=2)
    rep.note(f"numpy/torch speed per round {spread([a / b for a, b in zip(t['torch'], t['numpy'])])}x; the import "
             f"saving pays for {(imports['torch'] - imports['numpy']) / (1 / rates['numpy'] - 1 / rates['torch']):.0f}"
             " crops")


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
    ap.add_argument("--encode", action="store_true", help="only: CPU feature encoding, torch vs numpy")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.encode:
        with Report("expMAE feature encoding on CPU: torch vs numpy") as rep:
            return encode(args.threads, args.rounds, rep)
    with Report("MAE pretraining throughput: expMAE vs transformers") as rep:
        rows = bench(args)
        rep.table(table(rows))
        rep.note(TABLE_NOTE)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

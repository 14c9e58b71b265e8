"""Where an MAE training step's time goes on this machine: the share of the step spent in each op
family, and how fast the matmuls and the attention kernel themselves run against the matmul peak
measured in the same run. It explains bench_mae.py's share of the peak: that share can only reach
80 % if the matmuls run near the peak *and* everything that is not a matmul stays under ~15 % of
the step.

    python benchmarks/profile_mae.py                       # ViT-B, 112 px, image batch 64, video 8 clips
    python benchmarks/profile_mae.py --sizes large --impls expmae,transformers

Per model: op families as a share of the step's CPU time (torch.profiler, self time of aten ops over
`--steps` steps after a warm-up step), then three rates as a share of the square fp32 torch.mm peak:
the matmuls alone (their FLOPs / their time), the attention kernel alone, and the ceiling the step
would reach if every other op took no time. FLOPs come from torch's FlopCounterMode, as in
bench_mae.py. The profiler adds a little time to small ops, so its step is slower than bench_mae's.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import benchmarks.bench_mae as bench  # noqa: E402

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
FAMILIES = (("matmul", lambda k: k in MATMUL), ("attention", lambda k: "scaled_dot_product" in k),
            ("gelu", lambda k: "gelu" in k), ("layer norm", lambda k: "layer_norm" in k),
            ("optimizer", lambda k: "adam" in k), ("copies, cat, gather", lambda k: k in (
                "aten::copy_", "aten::cat", "aten::index_select", "aten::gather", "aten::clone")),
            ("bias grads (sum)", lambda k: k == "aten::sum"), ("softmax", lambda k: "softmax" in k))


def family(key: str) -> str:
    return next((name for name, hit in FAMILIES if hit(key)), "other")


def flops_by_kind(model: torch.nn.Module, loss_fn) -> dict[str, float]:
    """Forward + backward FLOPs of one step, split into matmul / attention."""
    out = collections.Counter()
    for op, n in bench.flops_by_op(model, loss_fn, torch.device("cpu"), bf16=False).items():
        out["attention" if "scaled_dot_product" in op else "matmul"] += n
    return dict(out)


def cpu_peak() -> float:
    return bench.matmul_peak(torch.device("cpu"), False, lambda: None)[0]


def profile(kind: str, size: str, impl: str, args: argparse.Namespace) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, loss_fn, n, _ = bench.build(kind, size, impl, args, torch.device("cpu"))
    flops = flops_by_kind(model, loss_fn)
    step = bench.step_fn(model, loss_fn, torch.device("cpu"), bf16=False)
    step()  # warm-up: allocator, kernels' first-call setup
    before = cpu_peak()  # this machine's rate drifts by 10-20 % within minutes: measure it around the steps
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    peak = (before + cpu_peak()) / 2
    self_us = collections.Counter()
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            self_us[family(e.key)] += e.self_cpu_time_total
    total = sum(self_us.values())
    batch = f"{n} {'images' if kind == 'image' else 'clips'}"
    print(f"\n{size} {kind} MAE, {impl}, batch {batch}: {total / 1e6 / args.steps:.2f} s per profiled step; "
          f"matmul peak around it {peak / 1e9:.1f} GFLOP/s")
    for fam, us in self_us.most_common():
        print(f"  {fam:22s} {100 * us / total:5.1f}% of the step")
    t_mm, t_att = self_us["matmul"] / 1e6, self_us["attention"] / 1e6
    f_mm, f_att = flops.get("matmul", 0.0) * args.steps, flops.get("attention", 0.0) * args.steps
    print(f"  matmuls alone:        {100 * f_mm / t_mm / peak:5.1f}% of the peak")
    if t_att:
        print(f"  attention alone:      {100 * f_att / t_att / peak:5.1f}% of the peak")
    print(f"  ceiling (all else free): {100 * (f_mm + f_att) / (t_mm + t_att) / peak:5.1f}% of the peak; "
          f"this profiled step: {100 * (f_mm + f_att) / (total / 1e6) / peak:5.1f}%")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="base")
    ap.add_argument("--kinds", default="image,video")
    ap.add_argument("--impls", default="expmae")
    ap.add_argument("--img", type=int, default=112)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--video-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="profiled steps per model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"CPU, {torch.get_num_threads()} threads, {args.img} px; peak: the best square fp32 torch.mm, "
          "the mean of its rate just before and just after each model's profiled steps")
    t = time.perf_counter()
    for size in args.sizes.split(","):
        for kind in args.kinds.split(","):
            for impl in args.impls.split(","):
                profile(kind, size, impl, args)
    print(f"\n({time.perf_counter() - t:.0f} s; shares are of the profiler's aten self time, which adds a little "
          "to many small ops)")


if __name__ == "__main__":
    main()

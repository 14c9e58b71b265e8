"""Where an MAE training step's time goes on this machine: the share of the step spent in each op
family, and how fast the matmuls and the attention kernel themselves run against the matmul peak
measured in the same run. It explains bench_mae.py's share of the peak: that share can only reach
80 % if the matmuls run near the peak *and* everything that is not a matmul stays under ~15 % of
the step.

    .venv/bin/python -m benchmarks.profile_mae             # ViT-B, 112 px, image batch 64, video 8 clips
    .venv/bin/python -m benchmarks.profile_mae --sizes large --impls expmae,transformers

Per model: op families as a share of the step's CPU time (torch.profiler, self time of aten ops over
`--steps` steps after a warm-up step), then three rates as a share of the square fp32 torch.mm peak:
the matmuls alone (their FLOPs / their time), the attention kernel alone, and the ceiling the step
would reach if every other op took no time. FLOPs come from torch's FlopCounterMode, as in
bench_mae (both through expmae.mae.flops). The profiler adds a little time to small ops, so its step
is slower than bench_mae's.
"""
from __future__ import annotations

import argparse

import torch

import benchmarks.bench_mae as bench
from benchmarks.harness import Report, timed
from expmae.mae.flops import flops_by_kind, profile_families


def cpu_peak() -> float:
    return bench.matmul_peak(torch.device("cpu"), False, lambda: None)[0]


def profile(kind: str, size: str, impl: str, args: argparse.Namespace, rep: Report) -> None:
    model, loss_fn, n, _ = bench.build(kind, size, impl, args, torch.device("cpu"))
    flops = flops_by_kind(model, loss_fn)
    step = bench.step_fn(model, loss_fn, torch.device("cpu"), bf16=False)
    step()  # warm-up: allocator, kernels' first-call setup
    before = cpu_peak()  # this machine's rate drifts by 10-20 % within minutes: measure it around the steps
    self_us = profile_families(step, args.steps)
    peak = (before + cpu_peak()) / 2
    total = sum(self_us.values())
    batch = f"{n} {'images' if kind == 'image' else 'clips'}"
    t_mm, t_att = self_us["matmul"] / 1e6, self_us["attention"] / 1e6
    f_mm, f_att = flops.get("matmul", 0.0) * args.steps, flops.get("attention", 0.0) * args.steps
    rows = [{"what": f"{fam}, % of the step", "%": 100 * us / total} for fam, us in self_us.most_common()]
    rows.append({"what": "matmuls alone, % of the peak", "%": 100 * f_mm / t_mm / peak})
    if t_att:
        rows.append({"what": "attention alone, % of the peak", "%": 100 * f_att / t_att / peak})
    rows.append({"what": "ceiling (all else free), % of the peak",
                 "%": 100 * (f_mm + f_att) / (t_mm + t_att) / peak})
    rows.append({"what": "this profiled step, % of the peak",
                 "%": 100 * (f_mm + f_att) / (total / 1e6) / peak})
    rep.table(rows, caption=f"{size} {kind} MAE, {impl}, batch {batch}: {total / 1e6 / args.steps:.2f} s per "
                            f"profiled step; matmul peak around it {peak / 1e9:.1f} GFLOP/s", digits=1)


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
    with Report("where an MAE training step's time goes", f"CPU, {torch.get_num_threads()} threads, {args.img} px; "
                "peak: the best square fp32 torch.mm, the mean of its rate just before and just after each model's "
                "profiled steps") as rep:
        wall, _, _ = timed(lambda: [profile(kind, size, impl, args, rep) for size in args.sizes.split(",")
                                    for kind in args.kinds.split(",") for impl in args.impls.split(",")])
        rep.note(f"\n({wall:.0f} s; shares are of the profiler's aten self time, which adds a little to many "
                 "small ops)")


if __name__ == "__main__":
    main()

"""Where an MAE training step's work and time go: FLOPs per aten op (torch's FlopCounterMode, plus the CPU
attention kernels it does not know) and a profiled step's CPU time split into op families.

The speed benchmarks (benchmarks.bench_mae, benchmarks.profile_mae) report a step's share of the matmul
peak from these counts; kept in the package so the counting is tested with the engine it measures.
"""
from __future__ import annotations

import collections
from typing import Callable

import torch

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
FAMILIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("matmul", lambda k: k in MATMUL), ("attention", lambda k: "scaled_dot_product" in k),
    ("gelu", lambda k: "gelu" in k), ("layer norm", lambda k: "layer_norm" in k),
    ("optimizer", lambda k: "adam" in k),
    ("copies, cat, gather", lambda k: k in ("aten::copy_", "aten::cat", "aten::index_select", "aten::gather",
                                            "aten::clone")),
    ("bias grads (sum)", lambda k: k == "aten::sum"), ("softmax", lambda k: "softmax" in k))


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


def flops_by_op(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], device: torch.device,
                bf16: bool) -> dict[str, float]:
    """FLOPs of one forward + backward (matmuls, convolutions, attention) per aten op name."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=cpu_attention_formulas()) as fc:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return {str(op): float(n) for op, n in fc.get_flop_counts().get("Global", {}).items()}


def count_flops(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], device: torch.device,
                bf16: bool) -> float:
    return sum(flops_by_op(model, loss_fn, device, bf16).values())


def flops_by_kind(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> dict[str, float]:
    """Forward + backward FLOPs of one CPU step, split into matmul / attention."""
    out: collections.Counter = collections.Counter()
    for op, n in flops_by_op(model, loss_fn, torch.device("cpu"), bf16=False).items():
        out["attention" if "scaled_dot_product" in op else "matmul"] += n
    return dict(out)


def family(key: str) -> str:
    """The op family of an aten op name ('other' for the rest)."""
    return next((name for name, hit in FAMILIES if hit(key)), "other")


def profile_families(step: Callable[[], None], steps: int) -> collections.Counter:
    """CPU self time (microseconds) per op family over `steps` calls of `step` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    out: collections.Counter = collections.Counter()
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            out[family(e.key)] += e.self_cpu_time_total
    return out

"""expmae.mae.flops: the FLOP accounting and op-family split that the speed benchmarks report a step's
share of the matmul peak from (benchmarks.bench_mae, benchmarks.profile_mae)."""
from __future__ import annotations

import torch

from expmae.mae.flops import count_flops, family, flops_by_kind, profile_families
from expmae.mae.model import MAE, MAEConfig


def test_count_flops_counts_the_cpu_attention_kernel() -> None:
    """torch's FlopCounterMode counts only the CUDA attention kernels; the CPU ones are added, or a CPU step's
    attention would be free and its share of the matmul peak too low."""
    b, h, s, d = 2, 4, 50, 32
    q = torch.randn(b, h, s, d, requires_grad=True)
    n = count_flops(torch.nn.Module(), lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum(),
                    torch.device("cpu"), bf16=False)
    fwd = 2 * (2 * b * h * s * s * d)  # scores q @ k^T and the weighted sum @ v
    assert n == fwd + 2.5 * fwd  # backward: the scores recomputed + four products


def test_a_profiled_step_splits_into_op_families() -> None:
    torch.manual_seed(0)
    model = MAE(MAEConfig.from_dict({"size": "micro", "img_size": 32, "patch_size": 8})).train()
    x = torch.randn(4, 3, 32, 32)
    loss_fn = lambda: model(x)[0]  # noqa: E731
    flops = flops_by_kind(model, loss_fn)
    assert flops["matmul"] > 0 and flops["attention"] > 0  # the attention's FLOPs are counted on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the benchmarks step

    def step() -> None:
        loss_fn().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    us = profile_families(step, steps=1)
    assert us["matmul"] > 0 and us["attention"] > 0 and us["optimizer"] > 0, dict(us)
    assert set(us) <= {"matmul", "attention", "gelu", "layer norm", "optimizer", "copies, cat, gather",
                       "bias grads (sum)", "softmax", "other"}


def test_family_names_the_matmul_and_attention_ops() -> None:
    assert family("aten::addmm") == family("aten::bmm") == "matmul"
    assert family("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert family("aten::native_layer_norm") == "layer norm"
    assert family("aten::zeros") == "other"

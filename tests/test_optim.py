"""expmae.train.optim.AdamW gives torch.optim.AdamW's weights bit for bit (the training jobs' numbers must not
move with the optimizer's implementation), on every head, with and without weight decay."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from expmae.train import fit, optim
from expmae.train.heads import build_head

P = {"hidden": 16, "dropout": 0.3, "fbp_dim": 8, "fbp_factor": 2}


def train(kind: str, make_opt, wd: float, steps: int = 60) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    dims = [5] if kind == "mlp" else [5, 3, 4]
    model = build_head(kind, dims, 4, P)
    opt = make_opt(model.parameters(), 3e-3, wd)
    xs = [torch.randn(40, d, generator=g) for d in dims]
    mask = (torch.rand(40, len(dims), generator=g) > 0.2).float()
    y = torch.randint(0, 4, (40,), generator=g)
    for s in range(steps):
        idx = torch.randperm(40, generator=g)[:16]
        loss = F.cross_entropy(model([x[idx] for x in xs], mask[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["mlp", "concat", "fbp", "attention"])
@pytest.mark.parametrize("wd", [0.0, 1e-4, 0.05])
def test_same_weights_as_torch_adamw(kind, wd):
    ours = train(kind, lambda p, lr, w: optim.AdamW(p, lr=lr, weight_decay=w), wd)
    ref = train(kind, lambda p, lr, w: torch.optim.AdamW(p, lr=lr, weight_decay=w), wd)
    assert ours.keys() == ref.keys()
    for k in ref:
        assert torch.equal(ours[k], ref[k]), (kind, wd, k, (ours[k] - ref[k]).abs().max())


def test_a_parameter_without_gradient_is_left_alone():
    """torch skips a parameter whose grad is None (its step count too): FBP's `missing` vector of a modality
    that is always present gets gradients only once a row lacks it."""
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    a2, b2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours, ref = optim.AdamW([a, b], lr=0.1, weight_decay=0.01), torch.optim.AdamW([a2, b2], lr=0.1, weight_decay=0.01)
    for step in range(5):
        for o, (p, q) in ((ours, (a, b)), (ref, (a2, b2))):
            o.zero_grad()
            loss = (p * 2).sum() + ((q * q).sum() if step >= 3 else 0)
            loss.backward()
            o.step()
    assert torch.equal(a, a2) and torch.equal(b, b2) and not torch.equal(b, torch.ones(3))


def test_training_loop_numbers_unchanged():
    """fit.fit_head end to end (modality dropout, inner-cv curve) with the training loop's optimizer equals
    the same loop with torch.optim.AdamW put back in its place."""
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(60, 6)).astype(np.float32), rng.normal(size=(60, 4)).astype(np.float32)]
    mask = rng.random((60, 2)) > 0.1
    T = np.eye(3)[rng.integers(0, 3, 60)]
    p = {"hidden": 16, "dropout": 0.3, "fbp_dim": 8, "fbp_factor": 2, "lr": 1e-3, "weight_decay": 1e-4,
         "batch_size": 16, "modality_dropout": 0.2, "epochs": 12}
    m1, c1 = fit.fit_head("fbp", xs, mask, T, np.ones(60), p, 3, inner=np.arange(0, 60, 5))
    saved = optim.AdamW
    try:
        optim.AdamW = lambda params, lr, weight_decay: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        m2, c2 = fit.fit_head("fbp", xs, mask, T, np.ones(60), p, 3, inner=np.arange(0, 60, 5))
    finally:
        optim.AdamW = saved
    assert c1 == c2
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())

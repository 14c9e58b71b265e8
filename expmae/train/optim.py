"""AdamW for the small heads: the same numbers as torch.optim.AdamW (its defaults, one CPU thread), a
fraction of the cost.

Why not torch.optim.AdamW: a step of a demo head takes a few milliseconds, a quarter of them in the
optimizer. Its step goes through torch._disable_dynamo, whose first call imports torch._dynamo (0.9 s of every
training job's ~2 s start-up, 38 jobs in the demo), then through per-step bookkeeping (state dicts,
capturable/differentiable/foreach dispatch) around the same handful of tensor ops. This class runs those
ops, in the same order with the same scalars, so every weight is bit for bit what torch.optim.AdamW gives
(amsgrad, maximize, foreach, fused and capturable off: torch's single-tensor path).
tests/test_optim.py trains real heads with both and compares every tensor exactly; if a torch upgrade
changes its AdamW, that test fails and this class follows it.

The update of one parameter p with gradient g at step t (lr, wd, beta1, beta2, eps):
    p     <- p * (1 - lr * wd)                              decoupled weight decay
    m     <- m + (1 - beta1) * (g - m)                      lerp
    v     <- v * beta2 + (1 - beta2) * g * g
    p     <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""
from __future__ import annotations

import torch


class AdamW:
    """torch.optim.AdamW(params, lr, weight_decay) with betas (0.9, 0.999), eps 1e-8: step() and
    zero_grad() only (the training loop uses nothing else; its state is never saved)."""

    def __init__(self, params, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, (self.beta1, self.beta2), self.eps = float(lr), float(weight_decay), betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # torch counts steps per parameter in a float32 tensor and reads it back with .item(): a whole
        # number below 2^24 either way, so a Python float gives the same bias corrections
        self.steps = [0.0] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        lr, b1, b2 = self.lr, self.beta1, self.beta2
        for i, p in enumerate(self.params):
            if p.grad is None:  # torch skips a parameter without a gradient (its step count stays)
                continue
            g, m, v = p.grad, self.exp_avg[i], self.exp_avg_sq[i]
            self.steps[i] += 1.0
            t = self.steps[i]
            if self.weight_decay != 0:
                p.mul_(1 - lr * self.weight_decay)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = lr / (1 - b1**t)
            denom = (v.sqrt() / (1 - b2**t) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)

"""The continued-pretraining schedule: warmup + cosine learning rate, layer-wise lr decay, the
optimizer's parameter groups, the masking noise, and the shorter rerun on new videos.

Upstream defaults where the paper is silent (MAE: He et al. 2022, main_pretrain.py; VideoMAE:
Tong et al. 2022, run_mae_pretraining.py): AdamW betas (0.9, 0.95), weight decay 0.05 on
matrices only, linear warmup then half-cosine to min_lr per optimizer step, no layer decay in
pretraining (layer_decay 1.0; MAE's fine-tuning recipe uses 0.75 for ViT-B/L). The schedule
starts at step 0 of *this* job, so a run that starts from public weights (mae.init) warms up
from them instead of jumping to the peak learning rate.

retrain_fraction < 1 (with retrain_on_new_videos): when new shards arrive, the job starts from
the previous run's weights (out/checkpoint.safetensors, same architecture, its shards a subset
of the new ones) and trains only that fraction of the full schedule's steps, again with warmup
and cosine. 1.0 retrains the full schedule from the init, as before.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

BETAS = (0.9, 0.95)  # MAE / VideoMAE pretraining


@dataclass
class Schedule:
    """Optimizer steps of this job: `total`, the first `warmup` of them linear warmup. A job that
    continues an earlier run (retrain_fraction) records what it continued and shifts the data
    epochs by `epoch_offset` so the new run does not replay the old run's data order."""
    total: int
    warmup: int
    epoch_offset: int = 0
    continued_from: str | None = None  # fingerprint of the run whose weights this job starts from
    continued_shards: list[str] | None = None
    continued_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def full_schedule(cfg: Any, steps_per_epoch: int) -> Schedule:
    return Schedule(total=steps_per_epoch * cfg.epochs, warmup=int(round(cfg.warmup_epochs * steps_per_epoch)))


def continued_schedule(cfg: Any, steps_per_epoch: int, prev: dict[str, Any], prev_fp: str) -> Schedule:
    """retrain_fraction of the full schedule's steps (at least 1), warmup scaled alike."""
    full = full_schedule(cfg, steps_per_epoch)
    total = max(1, int(math.ceil(cfg.retrain_fraction * full.total))) if full.total else 0
    return Schedule(total=total, warmup=min(total, int(round(cfg.retrain_fraction * full.warmup))),
                    epoch_offset=int(prev.get("epoch", 0)) + 1 + int(prev.get("schedule", {}).get("epoch_offset", 0)),
                    continued_from=prev_fp, continued_shards=list(prev.get("shards", [])),
                    continued_step=int(prev.get("step", 0)))


def can_continue(cfg: Any, prev: dict[str, Any] | None, shards: list[str]) -> bool:
    """Whether the checkpoint `prev` (its state dict) is an earlier run this job may continue: the
    option is on, same model architecture and kind, every shard it saw is still here, and there are
    new ones (a changed config on the same shards retrains the full schedule)."""
    if prev is None or cfg.retrain_fraction >= 1.0 or not cfg.retrain_on_new_videos:
        return False
    pc = prev.get("config", {})
    arch = cfg.model.to_dict()  # architecture only (not where the weights started)
    return (pc.get("kind") == cfg.kind and {k: pc.get("model", {}).get(k) for k in arch} == arch
            and bool(prev.get("shards")) and set(prev["shards"]) < set(shards) and prev.get("step", 0) > 0)


def lr_at(step: int, sched: Schedule, lr: float, min_lr: float) -> float:
    """Linear warmup over sched.warmup steps, then half-cosine from lr down to min_lr."""
    if step < sched.warmup:
        return lr * (step + 1) / sched.warmup
    t = (step - sched.warmup) / max(1, sched.total - sched.warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(1.0, t)))


def layer_id(name: str, depth: int) -> int:
    """BEiT / MAE (util/lr_decay.py) layer numbering: embeddings and tokens 0, encoder block i
    i+1, everything after the encoder blocks (final norm, the pretraining decoder) depth+1."""
    if name.startswith(("patch_embed", "tube_embed", "cls_token", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups(model: torch.nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only (no decay on norms, biases, cls/mask tokens),
    and with layer_decay < 1 one pair of groups per layer with lr_scale layer_decay**(depth+1-id)
    (the decoder and final norm at scale 1). layer_decay 1.0 gives the two groups of before."""
    depth = len(getattr(model, "blocks", []))
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depth) if layer_decay != 1.0 else depth + 1
        decay = p.ndim >= 2
        g = groups.setdefault((lid, decay), {"params": [], "weight_decay": weight_decay if decay else 0.0,
                                             "lr_scale": layer_decay ** (depth + 1 - lid)})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], not k[1]))]


def mask_noise(seed: int, step: int, rank: int, micro: int, shape: tuple[int, int]) -> torch.Tensor:
    """Masking noise [B, L] as a pure function of its position in training (CPU generator)."""
    key = int(np.random.SeedSequence([seed, step, rank, micro]).generate_state(1, np.uint64)[0] >> 1)
    return torch.rand(shape, generator=torch.Generator().manual_seed(key))

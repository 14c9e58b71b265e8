"""Watching a long pretraining run: throughput and ETA in every log line, TensorBoard events.

Rank 0 writes TensorBoard event files under <out>/tensorboard (as facebookresearch/mae's
log_writer does): train/loss and train/grad_norm per optimizer step, train/lr and
train/samples_per_s at every log line, and a reconstruction image (original | masked |
reconstructed, one row per sample) every `recon_every_steps` steps and at the end of every
epoch. `tensorboard --logdir results/mae/tensorboard` shows them while the job runs. The
PNGs of the Snakemake report (loss.png, recon.png) are drawn at the end as before.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from expmae.faces.store import load_face_shard

log = logging.getLogger("expmae.mae.pretrain")


def grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """Global L2 norm of the gradients, left on the device (read at the next flush)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())


def fmt_eta(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Monitor:
    """Log lines with samples/s and ETA (all ranks time, rank 0 logs) and the TensorBoard writer."""

    def __init__(self, out: Path, rank: int, total: int, batch: int, start_step: int, tensorboard: bool) -> None:
        self.total, self.batch, self.rank = total, batch, rank
        self.t_last, self.step_last = time.perf_counter(), start_step
        self.t_first, self.step_first = self.t_last, start_step
        self.writer = None
        if tensorboard and rank == 0:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def steps(self, first_step: int, losses: Sequence[float], norms: Sequence[float]) -> None:
        """Per-step scalars (1-based step numbers first_step, first_step+1, ...)."""
        if self.writer is None:
            return
        for i, (loss, gn) in enumerate(zip(losses, norms)):
            self.writer.add_scalar("train/loss", loss, first_step + i)
            self.writer.add_scalar("train/grad_norm", gn, first_step + i)

    def line(self, step: int, epoch: int, loss: float, lr: float, grad: float) -> None:
        """One log line; samples/s over the steps since the last line, ETA from the run's mean rate."""
        now = time.perf_counter()
        rate = (step - self.step_last) * self.batch / max(1e-9, now - self.t_last)
        mean_rate = (step - self.step_first) / max(1e-9, now - self.t_first)  # steps/s since the job started
        eta = (self.total - step) / mean_rate if mean_rate > 0 else float("inf")
        self.t_last, self.step_last = now, step
        if self.rank != 0:
            return
        log.info("step %d/%d epoch %d loss %.4f lr %.2e grad_norm %.3f %.1f samples/s ETA %s",
                 step, self.total, epoch, loss, lr, grad, rate, fmt_eta(eta))
        if self.writer is not None:
            self.writer.add_scalar("train/lr", lr, step)
            self.writer.add_scalar("train/samples_per_s", rate, step)

    def recon(self, step: int, model: torch.nn.Module, kind: str, samples: Any, seed: int) -> None:
        """Reconstruction image [3, H, W]: per sample original | masked | reconstructed."""
        if self.writer is None or samples is None:
            return
        from . import plots  # matplotlib only where figures are drawn

        if kind == "video":  # the middle frame of each clip
            rows = [r[:, r.shape[1] // 2] for r in plots.reconstruct_clips(model, samples, seed)]
        else:
            rows = list(plots.reconstruct(model, samples, seed))
        grid = np.concatenate([np.concatenate(list(r), axis=0) for r in rows], axis=1)  # [k*H, 3*W, 3]
        self.writer.add_image("train/reconstruction", np.clip(grid, 0, 1), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def recon_clips(dataset: Any, k: int = 2) -> torch.Tensor | None:
    """Up to k un-augmented clips spread over the clip list, uint8 [k, T, S, S, 3]."""
    if len(dataset) == 0:
        return None
    pick = np.unique(np.linspace(0, len(dataset) - 1, min(k, len(dataset))).astype(int))
    return torch.from_numpy(np.stack([dataset.clip(int(i)) for i in pick]))


def recon_batch(faces: Sequence[str | Path], samples: np.ndarray, k: int = 8) -> torch.Tensor | None:
    """Up to k un-augmented crops spread over the sample list, uint8 [k, S, S, 3]."""
    if len(samples) == 0:
        return None
    pick = samples[np.unique(np.linspace(0, len(samples) - 1, min(k, len(samples))).astype(int))]
    crops = [load_face_shard(f)[0] for f in faces]
    return torch.from_numpy(np.stack([np.asarray(crops[s][r]) for s, r in pick]))  # type: ignore[index]

"""The state of one pretraining job (Run) and its non-finite guard.

pretrain.setup() makes a Run, pretrain.run_epoch() advances it, pretrain.finish() writes its
outputs. Step losses stay on the device until a flush (one sync per flush, not per step), and
every checkpoint is preceded by a flush: a NaN/inf loss, or non-finite weights, raise
TrainingDiverged before a checkpoint or an encoder of the broken weights is written.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import save_checkpoint
from .monitor import recon_batch, recon_clips
from .schedule import Schedule, full_schedule
from .splits import count_by_split, transductive_summary  # noqa: F401 — transductive_summary: this module's API too


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN/inf: the job stops, nothing of these weights is saved."""


@dataclass(eq=False)
class Run:
    """One pretraining job's state, made by setup(), advanced by run_epoch(), written by finish()."""
    cfg: Any  # pretrain.PretrainConfig (pretrain imports this module)
    out: Path
    faces: list[str]
    shards: list[str]  # folder names of `faces`
    rank: int
    world: int
    created: bool  # we created the process group (and destroy it at the end)
    device: torch.device
    frames: list[Any]  # per shard: the frames table of its face cache
    samples: np.ndarray  # image [N, 2] (shard, crop row); video [N, 1+T] (shard, T crop rows)
    warnings: list[str]
    batch: int  # global batch per optimizer step
    steps_per_epoch: int
    model: torch.nn.Module  # model.MAE | video.VideoMAE
    optim: torch.optim.Optimizer
    t0: float
    step: int = 0  # optimizer steps done
    step_losses: list[float] = field(default_factory=list)
    wall_before: float = 0.0  # wall time of the runs this one resumes
    resumed_from: int | None = None
    fwd: Any = None  # the model as called in training: compiled and/or DDP-wrapped
    dataset: Any = None  # FaceCropDataset | FaceClipDataset
    pending: list[torch.Tensor] = field(default_factory=list)  # step losses still on the device
    pending_norms: list[torch.Tensor] = field(default_factory=list)  # their gradient norms
    grad_norms: list[float] = field(default_factory=list)
    monitor: Any = None  # monitor.Monitor: log lines and TensorBoard
    videos: str | None = None  # hash of the kept video names when cfg.pretrain_splits filters them
    splits: Any = None  # name -> labeled | test (splits.video_splits); None: no lists given

    def __post_init__(self) -> None:  # derived, fixed for the whole run
        self.n, self.ckpt = len(self.samples), self.out / "checkpoint.safetensors"
        self.set_schedule(full_schedule(self.cfg, self.steps_per_epoch))
        self._recon: Any = False  # not picked yet

    def set_schedule(self, sched: Schedule) -> None:
        """The steps of this job (the full schedule, or a continued run's share) and its fingerprint."""
        self.sched, self.total, self.warmup = sched, sched.total, sched.warmup
        self.fp = self.cfg.fingerprint(self.shards, self.n, sched.continued_from, self.videos)

    def split_report(self) -> dict[str, Any]:
        """meta.json's pretrain_splits (the config value), videos_by_split (the videos with crops that
        pretraining saw, per split) and transductive (any test video among them); None without lists."""
        if self.splits is None:
            return {"pretrain_splits": list(self.cfg.pretrain_splits), "videos_by_split": None, "transductive": None}
        counts = count_by_split([n for f in self.frames for n in f["name"].unique()], self.splits)
        return {"pretrain_splits": list(self.cfg.pretrain_splits), "videos_by_split": counts,
                "transductive": counts["test"] > 0}

    def recon_samples(self) -> Any:
        """The fixed un-augmented crops (image) or clips (video) of the reconstruction figures."""
        if self._recon is False:
            self._recon = (recon_clips(self.dataset) if self.cfg.kind == "video"
                           else recon_batch(self.faces, self.samples))
        return self._recon

    def flush(self) -> None:
        """Move pending step losses to step_losses (one device->host sync per flush, not per step);
        a NaN/inf among them stops the job. Every checkpoint is preceded by a flush."""
        if not self.pending:
            return
        new = torch.stack(self.pending).div_(self.cfg.grad_accum).tolist()
        norms = torch.stack(self.pending_norms).tolist() if self.pending_norms else [float("nan")] * len(new)
        first = self.step - len(new) + 1  # 1-based step of new[0]
        self.pending.clear()
        self.pending_norms.clear()
        self.step_losses.extend(new)
        self.grad_norms.extend(norms)
        if self.monitor is not None:
            self.monitor.steps(first, new, norms)
        for i, v in enumerate(new):
            if not math.isfinite(v):
                epoch = (first + i - 1) // max(1, self.steps_per_epoch) + 1
                self.diverged(f"loss {v} at step {first + i}/{self.total} (epoch {epoch}/{self.cfg.epochs})")

    def epoch_losses(self) -> list[float]:
        """Mean step loss of each finished epoch."""
        spe, losses = self.steps_per_epoch, self.step_losses
        if not spe:
            return []
        return [float(np.mean(losses[e * spe : (e + 1) * spe])) for e in range(len(losses) // spe)]

    def check_weights(self) -> None:
        """Non-finite weights (a finite loss, then a broken update) must not be saved either."""
        params = [p.detach() for p in self.model.parameters()]
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            self.diverged(f"non-finite weights after step {self.step}/{self.total}")

    def diverged(self, what: str) -> None:
        s, c = self.cfg.section, self.cfg
        raise TrainingDiverged(
            f"MAE pretraining ({s}) diverged: {what}. Stopped before saving these weights."
            f" Lower {s}.lr (now {c.lr}), or raise"
            f" {s}.warmup_epochs (now {c.warmup_epochs}) or {s}.batch_size (now {c.batch_size})"
            + (f", or set {s}.bf16: false" if c.bf16 and self.device.type == "cuda" else "") + ".")

    def checkpoint(self) -> None:
        self.check_weights()
        if self.rank == 0:
            state = {"step": self.step, "epoch": self.step // max(1, self.steps_per_epoch),
                     "step_losses": self.step_losses, "fingerprint": self.fp,
                     "config": self.cfg.to_dict(), "shards": self.shards, "n_samples": self.n,
                     "schedule": self.sched.to_dict(),
                     "wall_time_s": self.wall_before + time.time() - self.t0}
            save_checkpoint(self.ckpt, self.model, self.optim, state)


def setup_dist() -> tuple[int, int, int, bool]:
    """-> (rank, world size, local rank, whether we created the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    created = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        created = True
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), created


def finish_dist(res: Any, created: bool) -> Any:
    if created:
        dist.barrier()
        dist.destroy_process_group()
    return res

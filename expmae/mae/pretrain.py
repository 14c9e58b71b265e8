"""MAE pretraining on the face-crop cache (nanoGPT-style engine).

    python -m expmae.mae.pretrain --faces results/faces/s00000 results/faces/s00001 \
        --out results/mae --params '{"img_size": 112, ..., "seed": 0, "device": "auto"}'

AdamW (betas 0.9/0.95, no decay on norms/biases/tokens), linear warmup then cosine LR per
optimizer step, gradient accumulation, bf16 autocast on CUDA only, optional torch.compile,
DDP under torchrun (WORLD_SIZE>1; gloo on CPU, nccl on GPU; only rank 0 writes).

Exact resume: the data order and augmentations are a pure function of (seed, epoch) (see
data.EpochBatches) and the mask noise of (seed, step, rank, micro-batch), so restarting from
checkpoint.safetensors after a kill replays the remaining steps bit-for-bit on CPU.
Outputs in --out: checkpoint.safetensors (every epoch / every N steps), meta.json, loss.png,
recon.png, and encoder.safetensors LAST (the Snakemake rule's main output).

`"kind": "video"` in the params trains the video MAE (video.py, config `mae_video:`) on one
T-frame face clip per video (clips.py) with the same engine; a sample is then a clip.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from expmae.device import resolve_device
from expmae.io import config_hash, write_json

from .checkpoint import load_checkpoint, read_checkpoint_state, save_checkpoint, save_encoder
from .clips import FaceClipDataset, build_clip_samples
from .data import EpochBatches, FaceCropDataset, build_samples, epoch_plan, load_face_shard
from .model import MAE, MAEConfig
from .video import VideoMAE, VideoMAEConfig

log = logging.getLogger("expmae.mae.pretrain")


@dataclass
class PretrainConfig:
    model: MAEConfig = field(default_factory=MAEConfig)  # a VideoMAEConfig when kind == "video"
    kind: str = "image"  # image | video
    epochs: int = 6
    batch_size: int = 64  # global batch per optimizer step (split over ranks and accumulation)
    lr: float = 1.5e-3
    min_lr: float = 0.0
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    frames_per_video: int = 8
    seed: int = 0
    device: str = "auto"
    grad_accum: int = 1
    num_workers: int = 0
    checkpoint_every_steps: int = 0  # 0 = only at the end of each epoch
    compile: bool = False
    bf16: bool = True  # autocast on CUDA only; CPU always runs fp32
    retrain_on_new_videos: bool = False  # read by the workflow, recorded here

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"model"}
        kind = str(params.get("kind", "image"))
        if kind not in ("image", "video"):
            raise ValueError(f"MAE kind must be image or video, got {kind!r}")
        mcfg = (VideoMAEConfig if kind == "video" else MAEConfig).from_dict(params)
        return cls(model=mcfg, **{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, shards: list[str], n_samples: int) -> str:
        """Hash of everything that changes the trained weights (not device/workers/compile)."""
        d = self.to_dict()
        for k in ("device", "num_workers", "checkpoint_every_steps", "compile", "retrain_on_new_videos"):
            d.pop(k)
        return config_hash({"cfg": d, "shards": shards, "n_samples": n_samples})


@dataclass
class TrainResult:
    model: MAE | VideoMAE
    step: int
    step_losses: list[float]
    epoch_losses: list[float]
    finished: bool


def lr_at(step: int, total: int, warmup: int, cfg: PretrainConfig) -> float:
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * min(1.0, t)))


def mask_noise(seed: int, step: int, rank: int, micro: int, shape: tuple[int, int]) -> torch.Tensor:
    """Masking noise [B, L] as a pure function of its position in training (CPU generator)."""
    key = int(np.random.SeedSequence([seed, step, rank, micro]).generate_state(1, np.uint64)[0] >> 1)
    return torch.rand(shape, generator=torch.Generator().manual_seed(key))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)  # norms, biases, cls/mask tokens: no decay
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _setup_dist() -> tuple[int, int, int, bool]:
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


def train(cfg: PretrainConfig, faces: Sequence[str | Path], out: str | Path, max_steps: int | None = None) -> TrainResult:
    """Train (or resume) into `out`. `max_steps` stops right after that optimizer step without
    writing anything more, as a kill would (used to test resume)."""
    t0 = time.time()
    out = Path(out)
    rank, world, local_rank, created = _setup_dist()
    device = resolve_device(cfg.device, local_rank)
    is_cuda = device.type == "cuda"
    if is_cuda:
        torch.cuda.set_device(device)

    shards = [Path(f).name for f in faces]
    frames = [load_face_shard(f)[1] for f in faces]
    video = cfg.kind == "video"
    if video:  # [N, 1+T] one clip per video
        samples = build_clip_samples(frames, cfg.model.num_frames)  # type: ignore[attr-defined]
    else:  # [N, 2] up to frames_per_video crops per video
        samples = build_samples(frames, cfg.frames_per_video)
    n = len(samples)
    warnings: list[str] = []
    if n == 0:
        warnings.append("no face crops in any of the given face folders: encoder is randomly initialised (0 steps)")
        log.warning(warnings[-1])
    batch, steps_per_epoch = epoch_plan(n, cfg.batch_size, world, cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    torch.manual_seed(cfg.seed)  # identical init on every rank
    model = build_model(cfg).to(device)
    optim = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    fp = cfg.fingerprint(shards, n)

    ckpt = out / "checkpoint.safetensors"
    if rank == 0 and out.is_dir():  # temp files of writes cut short by a kill (atomic_path's ".name.*")
        for stale in out.glob(".*.safetensors.*"):
            stale.unlink(missing_ok=True)
    step, step_losses, wall_before, resumed_from = 0, [], 0.0, None
    prev = read_checkpoint_state(ckpt)
    if prev is not None and prev.get("fingerprint") == fp:
        st = load_checkpoint(ckpt, model, optim)
        step, step_losses, wall_before = st["step"], st["step_losses"], st["wall_time_s"]
        resumed_from = step
        if rank == 0:
            log.info("resuming from %s at step %d/%d", ckpt, step, total)
    elif prev is not None and rank == 0:
        log.info("checkpoint %s is from another config or shard set; starting afresh", ckpt)

    fwd = torch.compile(model) if cfg.compile else model
    if world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(fwd, device_ids=[device.index] if is_cuda else None)
    data_cls = FaceClipDataset if video else FaceCropDataset
    dataset = data_cls([str(f) for f in faces], samples, cfg.model.img_size)
    L = model.noise_len  # masking noise per sample: patches (image) or spatial tube positions (video)

    def checkpoint() -> None:
        if rank == 0:
            state = {"step": step, "epoch": step // max(1, steps_per_epoch), "step_losses": step_losses,
                     "fingerprint": fp, "config": cfg.to_dict(), "shards": shards, "n_samples": n,
                     "wall_time_s": wall_before + time.time() - t0}
            save_checkpoint(ckpt, model, optim, state)

    pending: list[torch.Tensor] = []  # per-step losses still on the device: read them back in bulk

    def flush() -> None:  # one device->host sync per flush instead of one per step
        if pending:
            step_losses.extend(torch.stack(pending).div_(cfg.grad_accum).tolist())
            pending.clear()

    model.train()
    while step < total:
        epoch, start = divmod(step, steps_per_epoch)
        sampler = EpochBatches(n, cfg.seed, epoch, batch, steps_per_epoch, rank, world, cfg.grad_accum, start)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=is_cuda)
        it = iter(loader)
        for _ in range(start, steps_per_epoch):
            for g in optim.param_groups:
                g["lr"] = lr_at(step, total, warmup, cfg)
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                x = next(it).to(device, non_blocking=True)
                noise = mask_noise(cfg.seed, step, rank, micro, (x.shape[0], L)).to(device, non_blocking=True)
                sync = world > 1 and micro < cfg.grad_accum - 1
                with fwd.no_sync() if sync else contextlib.nullcontext():  # all-reduce on the last micro-batch only
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=is_cuda and cfg.bf16):
                        loss, _, _ = fwd(x, noise=noise)
                    (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach().float()
            optim.step()
            optim.zero_grad(set_to_none=True)
            if world > 1:  # for logging only: the mean loss over ranks
                dist.all_reduce(loss_sum, op=dist.ReduceOp.SUM)
                loss_sum /= world
            pending.append(loss_sum)
            step += 1
            log_now = step % max(1, steps_per_epoch // 4) == 0 or step == total
            ckpt_now = step % steps_per_epoch == 0 or (cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0)
            if log_now or ckpt_now or step == max_steps:
                flush()
            if rank == 0 and log_now:
                log.info("step %d/%d epoch %d loss %.4f lr %.2e", step, total, epoch, step_losses[-1], optim.param_groups[0]["lr"])
            if ckpt_now:
                checkpoint()
            if max_steps is not None and step >= max_steps:
                return _finish_dist(TrainResult(model, step, step_losses, _epoch_means(step_losses, steps_per_epoch), False), created)

    epoch_losses = _epoch_means(step_losses, steps_per_epoch)
    if rank == 0:
        from . import plots  # matplotlib only where figures are drawn

        if total == 0:
            checkpoint()
        wall = wall_before + time.time() - t0
        meta = {"config": cfg.to_dict(), "shards": shards, "n_samples": n,
                "n_videos": int(sum(f["name"].nunique() for f in frames)), "steps": step,
                "steps_per_epoch": steps_per_epoch, "global_batch": batch, "world_size": world,
                "device": str(device), "epoch_losses": epoch_losses, "step_losses": step_losses,
                "final_loss": epoch_losses[-1] if epoch_losses else None, "wall_time_s": wall,
                "resumed_from_step": resumed_from, "warnings": warnings, "untrained": total == 0}
        write_json(out / "meta.json", meta)
        plots.loss_plot(out / "loss.png", step_losses, steps_per_epoch)
        if video:
            plots.video_recon_plot(out / "recon.png", model, _recon_clips(dataset), cfg.seed)  # type: ignore[arg-type]
        else:
            plots.recon_plot(out / "recon.png", model, _recon_batch(faces, samples, cfg), cfg.seed)  # type: ignore[arg-type]
        save_encoder(out / "encoder.safetensors", model, {
            "shards": shards, "step": step, "epochs": cfg.epochs, "final_loss": meta["final_loss"],
            "n_samples": n, "seed": cfg.seed, "untrained": total == 0, "warnings": warnings,
            "config_hash": fp})
    return _finish_dist(TrainResult(model, step, step_losses, epoch_losses, True), created)


def build_model(cfg: PretrainConfig) -> MAE | VideoMAE:
    return VideoMAE(cfg.model) if cfg.kind == "video" else MAE(cfg.model)  # type: ignore[arg-type]


def _recon_clips(dataset: FaceClipDataset, k: int = 2) -> torch.Tensor | None:
    """Up to k un-augmented clips spread over the clip list, uint8 [k, T, S, S, 3]."""
    if len(dataset) == 0:
        return None
    pick = np.unique(np.linspace(0, len(dataset) - 1, min(k, len(dataset))).astype(int))
    return torch.from_numpy(np.stack([dataset.clip(int(i)) for i in pick]))


def _epoch_means(step_losses: list[float], steps_per_epoch: int) -> list[float]:
    if not steps_per_epoch:
        return []
    full = len(step_losses) // steps_per_epoch
    return [float(np.mean(step_losses[e * steps_per_epoch : (e + 1) * steps_per_epoch])) for e in range(full)]


def _recon_batch(faces: Sequence[str | Path], samples: np.ndarray, cfg: PretrainConfig, k: int = 8) -> torch.Tensor | None:
    """Up to k un-augmented crops spread over the sample list, uint8 [k, S, S, 3]."""
    if len(samples) == 0:
        return None
    pick = samples[np.unique(np.linspace(0, len(samples) - 1, min(k, len(samples))).astype(int))]
    crops = [load_face_shard(f)[0] for f in faces]
    return torch.from_numpy(np.stack([np.asarray(crops[s][r]) for s, r in pick]))  # type: ignore[index]


def _finish_dist(res: TrainResult, created: bool) -> TrainResult:
    if created:
        dist.barrier()
        dist.destroy_process_group()
    return res


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", nargs="*", default=[], help="face cache folders results/faces/{shard}")
    ap.add_argument("--out", required=True, help="output folder (e.g. results/mae)")
    ap.add_argument("--params", default="{}", help='JSON: the mae: (or mae_video: + "kind": "video") config '
                    "section plus seed and device")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = PretrainConfig.from_params(json.loads(args.params))
    train(cfg, args.faces, args.out)


if __name__ == "__main__":
    main()

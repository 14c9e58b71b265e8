"""MAE pretraining on the face-crop cache (nanoGPT-style engine).

    python -m expmae.mae.pretrain --faces results/faces/s00000 results/faces/s00001 \
        --out results/mae --params '{"img_size": 112, ..., "seed": 0, "device": "auto"}'

AdamW (fused; betas 0.9/0.95, no decay on norms/biases/tokens), linear warmup then cosine LR per
optimizer step from the job's first step, optional layer-wise lr decay, a shorter continued
run on new videos (schedule.py), gradient accumulation, bf16 autocast on CUDA only, optional
torch.compile, DDP under torchrun (WORLD_SIZE>1; gloo on CPU, nccl on GPU; only rank 0 writes;
several nodes: launch.py). Log lines carry samples/s and an ETA; TensorBoard events go to
<out>/tensorboard (monitor.py).

Exact resume: the data order and augmentations are a pure function of (seed, epoch) (see
data.EpochBatches) and the mask noise of (seed, step, rank, micro-batch), so restarting from
checkpoint.safetensors after a kill replays the remaining steps bit-for-bit on CPU.
Outputs in --out: checkpoint.safetensors (every epoch / every N steps), meta.json, loss.png,
recon.png, and encoder.safetensors LAST (the Snakemake rule's main output).

Which videos: those of the given face folders, all of them by default; `pretrain_splits` leaving a split
out keeps only the videos of the others (splits.py: --labels / --test / --classes say which video is
labeled, test or unlabeled), and meta.json records pretrain_splits, videos_by_split and transductive.

`"kind": "video"` in the params trains the video MAE (video.py, config `mae_video:`) on one
T-frame face clip per video (clips.py) with the same engine; a sample is then a clip. Keys the
params leave out get the config schema's defaults (expmae.config), as a workflow job would.
setup() -> run_epoch() per epoch -> finish(); a NaN/inf loss stops the job (state.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from expmae import weights
from expmae.device import resolve_device
from expmae.faces.store import load_face_shard
from expmae.io import config_hash, write_json

from .checkpoint import load_checkpoint, read_checkpoint_state, save_encoder
from .clips import FaceClipDataset, build_clip_samples
from .data import EpochBatches, FaceCropDataset, build_samples, epoch_plan
from .jobconfig import PretrainConfig
from .model import MAE
from .monitor import Monitor, grad_norm
from .schedule import (BETAS, Schedule, can_continue, continued_schedule, full_schedule, lr_at, mask_noise,
                       param_groups)
from .splits import add_split_args, keep_frames, splits_from_args
from .state import Run, TrainingDiverged, finish_dist, setup_dist
from .video import VideoMAE

log = logging.getLogger("expmae.mae.pretrain")

@dataclass
class TrainResult:
    model: MAE | VideoMAE
    step: int
    step_losses: list[float]
    epoch_losses: list[float]
    finished: bool


def setup(cfg: PretrainConfig, faces: Sequence[str | Path], out: str | Path,
          splits: Mapping[str, str] | None = None) -> Run:
    """Process group, device, samples, model and optimizer (same seeded init on every rank),
    resume from out/checkpoint.safetensors when it is from the same run, then the training
    forward (compile, DDP) and the dataset. `splits`: name -> labeled | test (splits.video_splits,
    others unlabeled); needed when cfg.pretrain_splits leaves a split out, and for meta.json's counts."""
    t0 = time.time()
    rank, world, local_rank, created = setup_dist()
    device = resolve_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    faces = [str(f) for f in faces]
    frames = [load_face_shard(f)[1] for f in faces]
    videos = None
    if cfg.filters:  # only then: with all three splits the samples are exactly those of every video
        if splits is None:
            raise ValueError(f"config key {cfg.section}.pretrain_splits = {cfg.pretrain_splits} leaves a split out, "
                             "but no label CSV / test list was given (--labels / --test)")
        frames = [keep_frames(f, splits, cfg.pretrain_splits) for f in frames]
        videos = config_hash(sorted({str(n) for f in frames for n in f["name"].unique()}))
    if cfg.kind == "video":  # [N, 1+T] one clip per video
        samples = build_clip_samples(frames, cfg.model.num_frames)  # type: ignore[attr-defined]
    else:  # [N, 2] up to frames_per_video crops per video
        samples = build_samples(frames, cfg.frames_per_video)
    warnings: list[str] = []
    if len(samples) == 0:
        warnings.append("no face crops in any of the given face folders: encoder is randomly initialised (0 steps)")
        log.warning(warnings[-1])
    batch, steps_per_epoch = epoch_plan(len(samples), cfg.batch_size, world, cfg.grad_accum)

    torch.manual_seed(cfg.seed)  # identical init on every rank
    model = build_model(cfg).to(device)
    # fused: one kernel over all parameters; on CPU ~7x faster than the default foreach at ViT-B size
    optim = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr, betas=BETAS,
                              fused=True)
    run = Run(cfg=cfg, out=Path(out), faces=faces, shards=[Path(f).name for f in faces], rank=rank, world=world,
              created=created, device=device, frames=frames, samples=samples, warnings=warnings, batch=batch,
              steps_per_epoch=steps_per_epoch, model=model, optim=optim, t0=t0, videos=videos, splits=splits)
    _resume(run)  # restores the RNG state too: before anything else draws from it

    fwd = torch.compile(model) if cfg.compile else model
    if world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(fwd, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    run.fwd = fwd
    run.dataset = (FaceClipDataset if cfg.kind == "video" else FaceCropDataset)(faces, samples, cfg.model.img_size)
    run.monitor = Monitor(run.out, rank, run.total, batch, run.step, cfg.tensorboard)
    model.train()
    return run


def _resume(run: Run) -> None:
    if run.rank == 0 and run.out.is_dir():  # temp files of writes cut short by a kill (atomic_path's ".name.*")
        for stale in run.out.glob(".*.safetensors.*"):
            stale.unlink(missing_ok=True)
    prev = read_checkpoint_state(run.ckpt)
    if prev is not None and prev.get("schedule", {}).get("continued_from"):  # maybe this job, cut short
        run.set_schedule(Schedule(**prev["schedule"]))
    if prev is not None and prev.get("fingerprint") == run.fp:
        st = load_checkpoint(run.ckpt, run.model, run.optim)
        run.step, run.step_losses, run.wall_before = st["step"], st["step_losses"], st["wall_time_s"]
        run.resumed_from = run.step
        if run.rank == 0:
            log.info("resuming from %s at step %d/%d", run.ckpt, run.step, run.total)
        return
    run.set_schedule(full_schedule(run.cfg, run.steps_per_epoch))
    if can_continue(run.cfg, prev, run.shards):  # new shards: the earlier weights, a fraction of the steps
        assert prev is not None
        # verified against the sha256 recorded when it was written (a corrupt one is removed for a rerun)
        state = weights.load(run.ckpt, "pt", remove=True, what="MAE checkpoint")
        run.model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model/")}, strict=True)
        run.set_schedule(continued_schedule(run.cfg, run.steps_per_epoch, prev, prev["fingerprint"]))
        if run.rank == 0:
            log.info("new shards %s: continuing the weights of the run on %s (step %d) for %d steps "
                     "(%s.retrain_fraction %s)", sorted(set(run.shards) - set(prev["shards"])), prev["shards"],
                     prev["step"], run.total, run.cfg.section, run.cfg.retrain_fraction)
    elif prev is not None and run.rank == 0:
        log.info("checkpoint %s is from another config or shard set; starting afresh", run.ckpt)


def _train_step(run: Run, batches: Iterator[torch.Tensor]) -> None:
    """One optimizer step over grad_accum micro-batches; its (rank-mean) loss goes to run.pending."""
    cfg, device = run.cfg, run.device
    lr = lr_at(run.step, run.sched, cfg.lr, cfg.min_lr)
    for g in run.optim.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    noise_step = run.step + run.sched.epoch_offset * run.steps_per_epoch  # a continued run draws new masks
    loss_sum = torch.zeros((), device=device)
    L = run.model.noise_len  # masking noise per sample: patches (image) or spatial tube positions (video)
    for micro in range(cfg.grad_accum):
        x = next(batches).to(device, non_blocking=True)
        noise = mask_noise(cfg.seed, noise_step, run.rank, micro, (x.shape[0], L)).to(device, non_blocking=True)
        sync = run.world > 1 and micro < cfg.grad_accum - 1
        with run.fwd.no_sync() if sync else contextlib.nullcontext():  # all-reduce on the last micro-batch only
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.bf16):
                loss, _, _ = run.fwd(x, noise=noise)
            (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach().float()
    gn = grad_norm(run.model).to(device)  # after DDP's all-reduce: the same on every rank
    run.optim.step()
    run.optim.zero_grad(set_to_none=True)
    if run.world > 1:  # for logging only: the mean loss over ranks
        dist.all_reduce(loss_sum, op=dist.ReduceOp.SUM)
        loss_sum /= run.world
    run.pending.append(loss_sum)
    run.pending_norms.append(gn)


def run_epoch(run: Run, max_steps: int | None = None) -> bool:
    """Train from run.step to the end of its epoch, checkpointing on the way -> False when it
    stopped right after step `max_steps` without writing anything more (as a kill would)."""
    cfg, spe = run.cfg, run.steps_per_epoch
    epoch, start = divmod(run.step, spe)
    sampler = EpochBatches(run.n, cfg.seed, epoch + run.sched.epoch_offset, run.batch, spe, run.rank, run.world,
                           cfg.grad_accum, start)
    loader = DataLoader(run.dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=run.device.type == "cuda")
    batches = iter(loader)
    every = cfg.log_every_steps or max(1, spe // 4)
    for _ in range(start, min(spe, run.total - epoch * spe)):  # a continued run may end mid-epoch
        _train_step(run, batches)
        run.step += 1
        step = run.step
        log_now = step % every == 0 or step == run.total
        end_now = step % spe == 0 or step == run.total
        ckpt_now = end_now or (cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0)
        if log_now or ckpt_now or step == max_steps:
            run.flush()
        if log_now:
            run.monitor.line(step, epoch, run.step_losses[-1], lr_at(step - 1, run.sched, cfg.lr, cfg.min_lr),
                             run.grad_norms[-1])
        if end_now or (cfg.recon_every_steps and step % cfg.recon_every_steps == 0):
            run.monitor.recon(step, run.model, cfg.kind, run.recon_samples(), cfg.seed)
        if ckpt_now:
            run.checkpoint()
        if max_steps is not None and step >= max_steps:
            return False
    return True


def finish(run: Run) -> list[float]:
    """Rank 0 writes meta.json, loss.png, recon.png and encoder.safetensors last -> epoch losses."""
    epoch_losses = run.epoch_losses()
    run.check_weights()
    if run.rank != 0:
        return epoch_losses
    from . import plots  # matplotlib only where figures are drawn

    run.monitor.close()
    cfg, n, untrained = run.cfg, run.n, run.total == 0
    if untrained:
        run.checkpoint()
    meta = {"config": cfg.to_dict(), "shards": run.shards, "n_samples": n,
            "n_videos": int(sum(f["name"].nunique() for f in run.frames)), "steps": run.step,
            "steps_per_epoch": run.steps_per_epoch, "global_batch": run.batch, "world_size": run.world,
            "device": str(run.device), "epoch_losses": epoch_losses, "step_losses": run.step_losses,
            "final_loss": epoch_losses[-1] if epoch_losses else None,
            "wall_time_s": run.wall_before + time.time() - run.t0, "resumed_from_step": run.resumed_from,
            "warnings": run.warnings, "untrained": untrained, "schedule": run.sched.to_dict(),
            "init": run.model.init_report,  # None: random init; else source path/format/sha256, mapped, fresh
            **run.split_report()}  # pretrain_splits, videos_by_split, transductive
    write_json(run.out / "meta.json", meta)
    plots.loss_plot(run.out / "loss.png", run.step_losses, run.steps_per_epoch)
    if cfg.kind == "video":
        plots.video_recon_plot(run.out / "recon.png", run.model, run.recon_samples(), cfg.seed)  # type: ignore[arg-type]
    else:
        plots.recon_plot(run.out / "recon.png", run.model, run.recon_samples(), cfg.seed)  # type: ignore[arg-type]
    save_encoder(run.out / "encoder.safetensors", run.model, {
        "shards": run.shards, "step": run.step, "epochs": cfg.epochs, "final_loss": meta["final_loss"],
        "n_samples": n, "seed": cfg.seed, "untrained": untrained, "warnings": run.warnings,
        "config_hash": run.fp, "init": run.model.init_report})
    return epoch_losses


def train(cfg: PretrainConfig, faces: Sequence[str | Path], out: str | Path, max_steps: int | None = None,
          splits: Mapping[str, str] | None = None) -> TrainResult:
    """Train (or resume) into `out`. `max_steps` stops right after that optimizer step without
    writing anything more, as a kill would (used to test resume). `splits`: see setup. Raises
    TrainingDiverged."""
    run = setup(cfg, faces, out, splits)
    while run.step < run.total:
        if not run_epoch(run, max_steps):
            res = TrainResult(run.model, run.step, run.step_losses, run.epoch_losses(), False)
            return finish_dist(res, run.created)
    epoch_losses = finish(run)
    return finish_dist(TrainResult(run.model, run.step, run.step_losses, epoch_losses, True), run.created)


def build_model(cfg: PretrainConfig) -> MAE | VideoMAE:
    """The model of cfg.model (seeded by the caller), with the weights of its init checkpoint
    when `init` is set (mae/init.py); what was mapped, interpolated or fresh: model.init_report."""
    from .init import apply_init

    model = VideoMAE(cfg.model) if cfg.kind == "video" else MAE(cfg.model)  # type: ignore[arg-type]
    model.init_report = apply_init(model, cfg.model) if cfg.model.init else None
    return model


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", nargs="*", default=[], help="face cache folders results/faces/{shard}")
    ap.add_argument("--out", required=True, help="output folder (e.g. results/mae)")
    ap.add_argument("--params", default="{}", help='JSON: the mae: (or mae_video: + "kind": "video") config '
                    "section plus seed and device")
    add_split_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = PretrainConfig.from_params(json.loads(args.params))
    splits = splits_from_args(args, cfg.section, cfg.filters, log)
    try:
        train(cfg, args.faces, args.out, splits=splits)
    except TrainingDiverged as e:  # a clear one-line error in the job log, exit status 1
        log.error("%s", e)
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()

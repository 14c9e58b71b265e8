"""One pretraining job's settings (PretrainConfig): the model plus the training keys of config section
`mae` (kind image) or `mae_video` (kind video), defaults from the schema, and the fingerprint of
everything that changes the trained weights (an existing checkpoint is resumed only when it matches).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from expmae.config import resolve, section_schema
from expmae.io import config_hash

from .model import MAEConfig
from .splits import excludes
from .video import VideoMAEConfig

SECTIONS = {"image": "mae", "video": "mae_video"}  # kind -> config section (and its schema defaults)


@dataclass(kw_only=True)
class PretrainConfig:
    """One pretraining job: the model plus the training keys of config section `mae` (kind image)
    or `mae_video` (kind video). No defaults here: from_params takes them from the schema."""
    model: MAEConfig  # a VideoMAEConfig when kind == "video"
    kind: str  # image | video
    epochs: int
    batch_size: int  # global batch per optimizer step (split over ranks and accumulation)
    lr: float
    min_lr: float
    weight_decay: float
    warmup_epochs: float
    frames_per_video: int | None = None  # image MAE only (crops per video); the video MAE takes one clip
    seed: int
    device: str
    grad_accum: int
    num_workers: int
    checkpoint_every_steps: int  # 0 = only at the end of each epoch
    compile: bool
    bf16: bool  # autocast on CUDA only; CPU always runs fp32
    retrain_on_new_videos: bool  # read by the workflow (which shards), and by schedule.can_continue
    retrain_fraction: float  # < 1: new shards continue the previous weights for this share of the steps
    layer_decay: float  # 1.0 = off; < 1: lr_scale layer_decay**(depth+1-layer) (schedule.param_groups)
    log_every_steps: int  # 0 = four log lines per epoch
    tensorboard: bool  # event files under <out>/tensorboard (rank 0)
    recon_every_steps: int  # TensorBoard reconstruction image every N steps (0 = at epoch ends only)
    pretrain_splits: list[str]  # labeled | unlabeled | test (splits.py); all three = every video of the shards

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "PretrainConfig":
        """params: (part of) the config section of `kind` plus job keys (kind, seed, device); other
        keys are ignored. Missing section keys get the schema defaults; the section's keys are
        validated (errors name them, e.g. `config key mae.lr: ...`)."""
        kind = str(params.get("kind", "image"))
        if kind not in SECTIONS:
            raise ValueError(f"MAE kind must be image or video, got {kind!r}")
        section = SECTIONS[kind]
        keys = section_schema(section)["properties"]
        job = {k: section_schema(k)["default"] for k in ("seed", "device")}  # top-level config keys
        p = resolve(section, {k: v for k, v in params.items() if k in keys},
                    extra={**job, **{k: v for k, v in params.items() if k not in keys}})
        mcfg = (VideoMAEConfig if kind == "video" else MAEConfig).from_dict(p)
        names = {f.name for f in dataclasses.fields(cls)} - {"model", "kind"}
        return cls(model=mcfg, kind=kind, **{k: v for k, v in p.items() if k in names})

    @property
    def section(self) -> str:
        return SECTIONS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def filters(self) -> bool:
        """pretrain_splits leaves a split out: pretraining sees only the videos of the others."""
        return excludes(self.pretrain_splits)

    def fingerprint(self, shards: list[str], n_samples: int, continued_from: str | None = None,
                    videos: str | None = None) -> str:
        """Hash of everything that changes the trained weights (not device/workers/compile/logging);
        a run continuing an earlier one (retrain_fraction) adds that run's fingerprint; `videos`
        (a hash of the kept names) when pretrain_splits filters them."""
        d = self.to_dict()
        if self.filters:  # all three splits: the fingerprint of runs from before the key existed
            d["pretrain_splits"] = sorted(d["pretrain_splits"])
        else:
            d.pop("pretrain_splits")
        for k in ("device", "num_workers", "checkpoint_every_steps", "compile", "retrain_on_new_videos",
                  "retrain_fraction", "log_every_steps", "tensorboard", "recon_every_steps"):
            d.pop(k)
        if d["layer_decay"] == 1.0:  # off: the fingerprint of runs from before the key existed
            d.pop("layer_decay")
        extra = {"continued_from": continued_from} if continued_from else {}
        if videos:
            extra["videos"] = videos
        return config_hash({"cfg": d, "shards": shards, "n_samples": n_samples, **extra})

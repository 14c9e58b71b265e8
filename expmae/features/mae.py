"""expMAE extractors: the workflow's own pretrained MAE encoders on the shard's face crops.

    features:
      expmae:       {extractor: expmae_image}   # image MAE: every crop encoded, mean per video
      expmae_video: {extractor: expmae_video}   # video MAE: one T-frame face clip per video

Their weights are not a model id but a workflow output: results/<encoder_section>/encoder.safetensors,
written by the pretraining rule of config section `mae` / `mae_video` and given to the job as
--encoder. The encoder file's metadata says its kind and model config; the feature table's
metadata names the file's sha256 and its training metadata, so every table says which
checkpoint produced it. The file is checked against the sha256 recorded in it (expmae.weights) before
any weight is used.

Image encoder: on CPU it runs on numpy (npnet.MAEImageEncoder; the job never imports torch,
~2.5 s less per job) when the crop size equals the encoder's img_size (numpy never resizes);
otherwise (a resize, a GPU, backend: torch) on torch. Video encoder: torch; clips.video_clips
picks T crop rows per video in time order (videos with fewer crops repeat frames).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from expmae import weights
from expmae.encoder_format import read_encoder_info
from expmae.npnet import MAEImageEncoder

from .registry import Extractor, register

# torch, the torch models and mae.clips are imported inside the methods that need them.


def crop_size(faces: str | Path | None) -> int | None:
    """Side of a faces shard's crops, from crops.npy's header (None: no readable crops)."""
    if not faces:
        return None
    try:
        shape = np.load(Path(faces) / "crops.npy", mmap_mode="r", allow_pickle=False).shape
    except Exception:  # noqa: BLE001 — empty or unreadable: the runner reports a shard without faces
        return None
    return int(shape[1]) if len(shape) == 4 else None


class _MAEEncoder(Extractor):
    """Shared loading of an expMAE encoder file (kind `kind`, from config section `encoder_section`)."""

    modality = "visual"
    gpu = True
    dims = "embed_dim"
    kind = ""            # encoder kind this extractor reads: image | video
    set_name = ""        # the feature set's name in model_id (expmae / expmae_video)
    hash_ignore = ("batch_size", "backend")  # same features whatever the batching or backend
    defaults: dict[str, Any] = {"batch_size": 256, "backend": "auto"}   # batch_size counts crops

    def read_encoder(self) -> dict[str, Any]:
        """The encoder file's metadata (kind, model_config, training metadata); checks the kind."""
        enc = self.inputs.get("encoder")
        if not enc:
            raise SystemExit(f"{self.key}: extractor {self.set_name} needs the encoder file "
                             f"(--encoder results/{self.encoder_section}/encoder.safetensors)")
        # the job passes the sha256 it verified (features.run.extract); anyone else gets the check here
        sha = self.inputs.get("encoder_sha256") or weights.verified(enc, remove=False, what="MAE encoder")
        info = read_encoder_info(enc)
        if info.get("kind", "image") != self.kind:
            raise SystemExit(f"config key {self.key}.extractor: {enc} is a {info.get('kind', 'image')} MAE encoder, "
                             f"not {self.kind}")
        self.enc_meta, self.sha = info, sha
        self.cfg = info["model_config"]
        self.dim = int(self.cfg["embed_dim"])
        self.model_id = f"{self.set_name}-mae@{self.sha[:12]}"
        return info

    def load_torch(self) -> None:
        from expmae.mae.checkpoint import load_encoder

        import torch

        self.model, _ = load_encoder(self.inputs["encoder"], torch.device(self.device))
        self.backend = "torch"

    def use_model(self, model: Any) -> "_MAEEncoder":
        """Wrap an already-built torch encoder (the probe's random init): no file."""
        self.model, self.cfg, self.backend = model, dict(vars(model.cfg)), "torch"
        self.dim = int(model.cfg.embed_dim)
        return self

    def info(self) -> dict[str, Any]:
        """Table metadata: the encoder file's sha256 and training metadata, and where its weights
        started (init_source: path, format, sha256 of a public checkpoint; null = random init)."""
        init = (getattr(self, "enc_meta", None) or {}).get("init") or None
        source = {k: init.get(k) for k in ("path", "format", "sha256")} if init else None
        return {"encoder_sha256": getattr(self, "sha", None), "encoder_meta": getattr(self, "enc_meta", None),
                "init_source": source, "level": self.level, **self.pool_info()}

    def pool_info(self) -> dict[str, Any]:
        return {}


@register("expmae_image")
class ExpmaeImage(_MAEEncoder):
    """expMAE image encoder (this workflow's results/mae/encoder.safetensors) on every crop (after the
    final norm: mean of the patch tokens, or the cls token with pool: cls), mean per video."""

    needs = "face crops + mae encoder"
    kind = "image"
    set_name = "expmae"
    encoder_section = "mae"
    level = "video (mean of frame features)"
    defaults = {**_MAEEncoder.defaults, "pool": "mean"}  # per crop: mean of patch tokens | cls token

    def pool_info(self) -> dict[str, Any]:
        return {"pool": self.pool}

    @property
    def pool(self) -> str:
        pool = str(self.p.get("pool", "mean"))
        if pool not in ("mean", "cls"):
            raise ValueError(f"config key {self.key}.pool: mean | cls, got {pool!r}")
        return pool

    def load(self) -> None:
        """backend auto: numpy on CPU when the crops are at the encoder's img_size; torch | numpy force one."""
        self.read_encoder()
        backend = str(self.p.get("backend", "auto"))
        size = crop_size(self.inputs.get("faces"))
        numpy_ok = size in (None, self.cfg["img_size"])
        if backend == "numpy" and not numpy_ok:
            raise ValueError(f"backend numpy needs an image encoder with img_size {size} (the crop size); "
                             f"got img_size {self.cfg['img_size']}")
        if backend == "numpy" or (backend == "auto" and numpy_ok and self.device == "cpu"):
            self.model, self.backend = MAEImageEncoder.from_file(self.inputs["encoder"]), "numpy"
        else:
            self.load_torch()

    def encode(self, items: np.ndarray) -> np.ndarray:
        """uint8 crops [B, S, S, 3] -> float32 [B, D] (bf16 autocast on GPU)."""
        if isinstance(self.model, MAEImageEncoder):
            return self.model.encode(np.ascontiguousarray(items), self.pool)
        import torch

        from expmae.imaging import to_tensor

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(items)).to(self.device)
            with self.autocast():
                z = self.model.encode(to_tensor(x, int(self.cfg["img_size"])), self.pool)  # [B, D]
        return z.float().cpu().numpy()


@register("expmae_video")
class ExpmaeVideo(_MAEEncoder):
    """expMAE video encoder (results/mae_video/encoder.safetensors) on one T-frame face clip per video."""

    needs = "face crops + mae_video encoder"
    kind = "video"
    set_name = "expmae_video"
    encoder_section = "mae_video"

    @property
    def level(self) -> str:
        return f"video (one {self.cfg['num_frames']}-frame clip)"

    def load(self) -> None:
        self.read_encoder()
        self.load_torch()
        self.crops_per_item = int(self.cfg["num_frames"])

    def use_model(self, model: Any) -> "_MAEEncoder":
        super().use_model(model)
        self.crops_per_item = int(model.cfg.num_frames)
        return self

    def units(self, frames: Any) -> tuple[np.ndarray, np.ndarray]:
        """One clip per video: T crop rows each ([V, T], clips.clip_rows)."""
        from expmae.mae.clips import video_clips

        names, rows = video_clips(frames, int(self.cfg["num_frames"]))
        return np.asarray(names, dtype=object), rows

    def encode(self, items: np.ndarray) -> np.ndarray:
        """uint8 clips [B, T, S, S, 3] -> float32 [B, D]."""
        import torch

        from expmae.mae.clips import clip_tensor

        with torch.inference_mode():
            x = clip_tensor(items, int(self.cfg["img_size"])).to(self.device)   # [B, 3, T, H, W]
            with self.autocast():
                z = self.model.encode(x)                                         # [B, D]
        return z.float().cpu().numpy()


def for_model(model: Any, batch_size: int = 256) -> _MAEEncoder:
    """An expMAE extractor around a built torch MAE / VideoMAE (the linear probe's encoders)."""
    cls = ExpmaeVideo if hasattr(model.cfg, "num_frames") else ExpmaeImage
    device = str(next(model.parameters()).device)
    return cls({"batch_size": batch_size}, key="probe", device=device).use_model(model)

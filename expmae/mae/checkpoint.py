"""Safetensors-only checkpoints (no pickle anywhere).

checkpoint.safetensors  tensors  model/<param>          full MAE (encoder + decoder)
                                 optim/<param id>/<key>  AdamW moments and step counters
                                 rng/torch_cpu, rng/cuda RNG states as uint8 tensors
                        metadata "format", "state" -> JSON: step, epoch, losses, optimizer
                                 param_groups, config, shards, run fingerprint
encoder.safetensors     the encoder file format: see expmae/encoder_format.py (torch-free, shared with expmae.npnet)

Both are written by expmae.weights.save: byte-stable (equal weights and metadata, equal sha256) and
carrying the sha256 of their content, which every load checks first. A corrupt checkpoint is removed
and pretraining starts afresh; a corrupt encoder is removed (the pretraining rule rebuilds it) or, outside
results/ (a bundle's copy), refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

import expmae
from expmae import weights
from expmae.encoder_format import encoder_kind, encoder_metadata, read_encoder_info

from .model import MAE, MAEConfig
from .video import VideoMAE, VideoMAEConfig

CKPT_FORMAT = "expmae-mae-checkpoint-v1"
log = logging.getLogger("expmae.mae")


def code_version() -> str:
    """Package version + hash of this package's source, so a checkpoint names the code that made it."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return f"{expmae.__version__}+{h.hexdigest()[:12]}"


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def save_checkpoint(path: str | Path, model: torch.nn.Module, optim: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    tensors = {f"model/{k}": _cpu(v) for k, v in model.state_dict().items()}
    osd = optim.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"optim/{pid}/{k}"] = _cpu(t)
    tensors["rng/torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    meta = {"format": CKPT_FORMAT, "state": json.dumps({**state, "param_groups": osd["param_groups"]})}
    weights.save(path, tensors, meta)


def read_checkpoint_state(path: str | Path) -> dict[str, Any] | None:
    """JSON state of a checkpoint, or None if the file is missing or not ours. A checkpoint whose content
    differs from what was written (its sha256) is removed, so the run starts afresh instead of resuming it."""
    if not Path(path).exists():
        return None
    why, _ = weights.check(path)
    if why:
        log.warning("checkpoint %s: %s: removed; training starts afresh", path, why)
        Path(path).unlink(missing_ok=True)
        return None
    md = weights.metadata(path)
    if md.get("format") != CKPT_FORMAT:
        return None
    return json.loads(md["state"])


def load_checkpoint(path: str | Path, model: torch.nn.Module, optim: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimizer and RNG state in place; returns the JSON state."""
    tensors = weights.load(path, "pt", remove=True, what="MAE checkpoint")
    md = weights.metadata(path)
    if md.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path} is not an expmae MAE checkpoint")
    state = json.loads(md["state"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, strict=True)
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, pid, key = k.split("/", 2)
            opt_state.setdefault(int(pid), {})[key] = v
    optim.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    torch.set_rng_state(tensors["rng/torch_cpu"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    return state


def save_encoder(path: str | Path, model: MAE | VideoMAE, meta: dict[str, Any]) -> None:
    tensors = {k: _cpu(v) for k, v in model.encoder_state_dict().items()}
    kind = "video" if isinstance(model, VideoMAE) else "image"
    info = {**meta, "kind": kind, "model_config": model.cfg.to_dict(), "code_version": code_version()}
    weights.save(path, tensors, encoder_metadata(info))


def load_encoder(path: str | Path, device: str | torch.device = "cpu",
                 remove: bool = False) -> tuple[Any, dict[str, Any]]:
    """-> (MAE or VideoMAE (metadata "kind") with encoder weights loaded, in eval mode; the JSON metadata).
    The file is checked against its recorded sha256 first; `remove`: a workflow output, removed when corrupt
    (a rerun rebuilds it), else refused."""
    tensors = weights.load(path, "pt", remove=remove, what="MAE encoder")
    info = read_encoder_info(path)
    if encoder_kind(info) == "video":
        model: MAE | VideoMAE = VideoMAE(VideoMAEConfig.from_dict(info["model_config"]))
    else:
        model = MAE(MAEConfig.from_dict(info["model_config"]))
    model.load_encoder_state_dict(tensors)
    return model.to(device).eval(), info

"""The config key `device` (auto | cpu | cuda | cuda:N) -> a torch device, for every stage."""
from __future__ import annotations

import torch


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{local_rank}"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: {spec!r} requested but CUDA is not available (set device: cpu or auto)")
    return torch.device(spec)

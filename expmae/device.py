"""The config key `device` (auto | cpu | cuda | cuda:N) -> a torch device, for every stage."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def gpu_visible() -> bool:
    """Is an NVIDIA GPU visible to this process? Answered without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidia0").exists() or any(Path("/proc/driver/nvidia/gpus").glob("*"))


def resolve_device(spec: str, local_rank: int = 0) -> "torch.device":
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{local_rank}"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: {spec!r} requested but CUDA is not available (set device: cpu or auto)")
    return torch.device(spec)


def device_name(spec: str) -> str:
    """resolve_device as a string, without importing torch when the answer is the CPU
    (`cpu`, or `auto` with no NVIDIA GPU visible): CPU jobs may then skip torch altogether."""
    if spec == "cpu" or (spec == "auto" and not gpu_visible()):
        return "cpu"
    return str(resolve_device(spec))

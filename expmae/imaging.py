"""Face crops -> model inputs: the one path from uint8 crops to normalised float tensors.

Every torch image encoder of the package takes its input from `to_tensor`: the registry's
clip_image / timm extractors, the MAE pretraining data (mae/data.py, mae/clips.py) and the
expMAE features (features/mae.py). ImageNet mean/std are defined once (npnet, the numpy
encoder, normalises with the same arrays and never resizes: it only runs when the crop size
equals the encoder's img_size). torch is imported inside the functions: importing this module
stays light (the Snakefile and the numpy CPU jobs import its neighbours).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from expmae.npnet import IMAGENET_MEAN, IMAGENET_STD  # float32 [3]; the one copy (numpy and torch)

if TYPE_CHECKING:
    import torch

__all__ = ["denormalize", "to_tensor"]


def to_tensor(crops: Any, size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              device: Any = None) -> "torch.Tensor":
    """uint8 crops [B, S, S, 3] RGB (numpy, memmap or tensor) -> float [B, 3, size, size], (x/255 - mean) / std.

    `device`: where the result lives (None: where `crops` is; numpy input -> CPU). The one
    resize rule, for crops of another side than `size`: bicubic with antialias (a downscale
    averages instead of aliasing), clamped to [0, 1] (bicubic overshoots at edges)."""
    import torch
    import torch.nn.functional as F

    x = crops if isinstance(crops, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(crops))
    if device is not None:
        x = x.to(device)
    x = x.permute(0, 3, 1, 2).float() / 255.0                                   # [B, 3, S, S] in [0, 1]
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    m = torch.as_tensor(np.asarray(mean, np.float32), device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(np.asarray(std, np.float32), device=x.device).view(1, 3, 1, 1)
    return (x - m) / s



def denormalize(x: "torch.Tensor", mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> "torch.Tensor":
    """Inverse of `to_tensor` for display: float [B, 3, H, W] -> [B, H, W, 3] in [0, 1]."""
    import torch

    m = torch.as_tensor(np.asarray(mean, np.float32), device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(np.asarray(std, np.float32), device=x.device).view(1, 3, 1, 1)
    return (x * s + m).clamp(0, 1).permute(0, 2, 3, 1)

"""Face clips for the video MAE: T-frame clips of one video's main-face crops.

The face stage samples up to `faces.max_frames` crops per video (16 by default) and keeps
only frames where the main face was found, so a video can have fewer than T crops. A clip is
always exactly T crop rows, picked by nearest-neighbour resampling of the video's crops in
time order: `clip_rows(rows, T)` = rows[round(linspace(0, n-1, T))]. With n >= T this is an
even spread over the video; with n < T it repeats frames (each about T/n times, in order),
i.e. the clip plays the video slower instead of padding with black frames, which would teach
the model to reconstruct padding. A single-crop video becomes a still clip. One clip per
video: with 3-10 s MER clips and 16 sampled frames, the clip is the whole video.

Like data.FaceCropDataset, a clip's augmentation is a pure function of its seed (from
data.EpochBatches), so resume stays exact. The same crop box and flip apply to every frame
(a per-frame jitter would look like motion).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from expmae.imaging import to_tensor

from .data import ShardCrops


def clip_rows(rows: np.ndarray, num_frames: int) -> np.ndarray:
    """Crop rows of one video in time order [n >= 1] -> exactly num_frames rows [T] (see module doc)."""
    rows = np.asarray(rows, np.int64)
    return rows[np.linspace(0, len(rows) - 1, num_frames).round().astype(np.int64)]


def video_clips(frames: pd.DataFrame, num_frames: int) -> tuple[list[str], np.ndarray]:
    """Frames table of one shard -> (video names, crop rows [V, T]) for the videos with any crop."""
    if "frame_index" in frames.columns:  # time order; the face stage writes it, but do not rely on row order
        frames = frames.sort_values(["name", "frame_index"], kind="stable")
    names, clips = [], []
    for name, g in frames.groupby("name", sort=False):
        names.append(str(name))
        clips.append(clip_rows(g["crop_row"].to_numpy(np.int64), num_frames))
    return names, (np.stack(clips) if clips else np.zeros((0, num_frames), np.int64))


def build_clip_samples(frames_per_shard: Sequence[pd.DataFrame], num_frames: int) -> np.ndarray:
    """One clip per video over all shards -> [N, 1+T] (shard index, T crop rows)."""
    out = []
    for s, frames in enumerate(frames_per_shard):
        _, rows = video_clips(frames, num_frames)
        out.append(np.concatenate([np.full((len(rows), 1), s, np.int64), rows], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 1 + num_frames), np.int64)


def clip_tensor(crops: np.ndarray, img_size: int) -> torch.Tensor:
    """uint8 clips [B, T, S, S, 3] -> float [B, 3, T, img, img], ImageNet-normalised."""
    B, T = crops.shape[:2]
    x = to_tensor(torch.from_numpy(np.ascontiguousarray(crops)).flatten(0, 1), img_size)  # [B*T, 3, H, W]
    return x.view(B, T, *x.shape[1:]).transpose(1, 2).contiguous()


def augment_clip(clip: np.ndarray, rng: np.random.Generator, out_size: int) -> torch.Tensor:
    """uint8 [T, S, S, 3] -> float [3, T, out, out]: one mild random-resized crop + flip for the whole clip."""
    S0, S1 = clip.shape[1:3]
    area = S0 * S1 * rng.uniform(0.7, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = int(min(S1, round(np.sqrt(area * aspect))))
    h = int(min(S0, round(np.sqrt(area / aspect))))
    y0, x0 = int(rng.integers(0, S0 - h + 1)), int(rng.integers(0, S1 - w + 1))
    x = to_tensor(torch.from_numpy(np.ascontiguousarray(clip[:, y0 : y0 + h, x0 : x0 + w])), out_size)  # [T, 3, o, o]
    if rng.random() < 0.5:
        x = x.flip(-1)
    return x.transpose(0, 1).contiguous()


class FaceClipDataset(Dataset):
    """Indexed by (clip index, augmentation seed) pairs from data.EpochBatches -> [3, T, H, W]."""

    def __init__(self, folders: Sequence[str | Path], samples: np.ndarray, img_size: int) -> None:
        self.crops = ShardCrops(folders)
        self.samples = samples  # [N, 1+T] (shard, crop rows)
        self.img_size = img_size

    def clip(self, idx: int) -> np.ndarray:
        """uint8 [T, S, S, 3] of clip `idx` (un-augmented)."""
        return self.crops.read(int(self.samples[idx, 0]), self.samples[idx, 1:])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        idx, seed = item
        return augment_clip(self.clip(int(idx)), np.random.default_rng(seed), self.img_size)

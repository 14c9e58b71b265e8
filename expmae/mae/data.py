"""Face-crop data for MAE pretraining and feature extraction.

Reads the face stage's per-shard cache folders (`crops.npy` uint8 [F, S, S, 3] RGB and
`frames.parquet` with one row per crop: name, crop_row, ...). The pretraining data order is
a pure function of (seed, epoch): the permutation, and a per-position augmentation seed, both
come from a numpy Generator seeded with [seed, epoch]. Nothing depends on global RNG state or
on the number of DataLoader workers, so a run resumed from a mid-epoch checkpoint replays the
exact same batches.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from expmae.faces.store import load_face_shard
from expmae.imaging import to_tensor

log = logging.getLogger(__name__)


class ShardCrops:
    """The face shards' crops (crops.npy, memory-mapped), opened on first read in each process: a DataLoader
    worker maps the files itself instead of receiving a pickled map, which numpy would pickle as a full
    copy of the array. Shared by the image and the video datasets (FaceCropDataset, clips.FaceClipDataset)."""

    def __init__(self, folders: Sequence[str | Path]) -> None:
        self.folders = [str(f) for f in folders]
        self._maps: list[np.ndarray | None] | None = None

    def read(self, shard: int, rows: int | np.ndarray) -> np.ndarray:
        """uint8 crops of `shard` at `rows` (one row [S, S, 3] or several [n, S, S, 3]), copied out of the map."""
        if self._maps is None:
            self._maps = [load_face_shard(f)[0] for f in self.folders]
        crops = self._maps[shard]
        if crops is None:  # samples come from the frames tables, so only a shard with crops is ever read
            raise ValueError(f"face shard {self.folders[shard]} has no crops")
        return np.asarray(crops[rows])

    def __getstate__(self) -> dict:
        return {"folders": self.folders, "_maps": None}


def build_samples(frames_per_shard: Sequence[pd.DataFrame], frames_per_video: int) -> np.ndarray:
    """Pick up to `frames_per_video` crops per video, evenly spaced in time -> [N, 2] (shard, crop_row)."""
    out: list[np.ndarray] = []
    for s, frames in enumerate(frames_per_shard):
        for _, rows in frames.groupby("name", sort=False):
            rows_ = rows["crop_row"].to_numpy(np.int64)
            k = min(frames_per_video, len(rows_)) if frames_per_video > 0 else len(rows_)
            pick = rows_[np.unique(np.linspace(0, len(rows_) - 1, k).round().astype(int))]
            out.append(np.stack([np.full(len(pick), s), pick], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def augment(img: np.ndarray, rng: np.random.Generator, out_size: int) -> torch.Tensor:
    """Random-resized-crop-lite + horizontal flip: uint8 [S, S, 3] -> float [3, out, out] normalised.

    Milder than ImageNet's RandomResizedCrop (area 0.6-1, aspect 3/4-4/3): aligned face crops
    are already tight, so aggressive crops would cut away the expression itself.
    """
    S0, S1 = img.shape[:2]
    area = S0 * S1 * rng.uniform(0.6, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = int(min(S1, round(np.sqrt(area * aspect))))
    h = int(min(S0, round(np.sqrt(area / aspect))))
    y0 = int(rng.integers(0, S0 - h + 1))
    x0 = int(rng.integers(0, S1 - w + 1))
    crop = torch.from_numpy(np.array(img[y0 : y0 + h, x0 : x0 + w]))[None]  # [1, h, w, 3]
    x = to_tensor(crop, out_size)[0]  # [3, out, out]
    if rng.random() < 0.5:
        x = x.flip(-1)
    return x


class FaceCropDataset(Dataset):
    """Indexed by (sample index, augmentation seed) pairs from `EpochBatches`."""

    def __init__(self, folders: Sequence[str | Path], samples: np.ndarray, img_size: int) -> None:
        self.crops = ShardCrops(folders)
        self.samples = samples  # [N, 2] (shard, crop_row)
        self.img_size = img_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        idx, seed = item
        shard, row = self.samples[idx]
        return augment(self.crops.read(int(shard), int(row)), np.random.default_rng(seed), self.img_size)


def epoch_plan(n: int, batch_size: int, world: int, accum: int) -> tuple[int, int]:
    """-> (global batch per optimizer step, steps per epoch).

    The global batch is split over `world` ranks x `accum` micro-batches, so it is rounded to a
    multiple of world*accum; a set smaller than one batch gives one (wrapped, padded) step.
    """
    if n == 0:
        return 0, 0
    unit = world * accum
    B = max(unit, min(batch_size, n) // unit * unit)
    return B, max(1, n // B)


class EpochBatches:
    """Batch sampler: this rank's micro-batches of (index, aug seed) for one epoch, from `start_step`."""

    def __init__(self, n: int, seed: int, epoch: int, batch: int, steps: int, rank: int, world: int,
                 accum: int, start_step: int = 0) -> None:
        rng = np.random.default_rng([seed, epoch])
        order = np.resize(rng.permutation(n), steps * batch)  # drop the tail or wrap a tiny set
        aug = rng.integers(0, 2**62, size=steps * batch)
        # [steps, batch] -> this rank's strided share -> [steps, accum, micro]
        micro = batch // (world * accum)
        self.idx = order.reshape(steps, batch)[:, rank::world].reshape(steps, accum, micro)
        self.aug = aug.reshape(steps, batch)[:, rank::world].reshape(steps, accum, micro)
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for s in range(self.start_step, self.idx.shape[0]):
            for a in range(self.idx.shape[1]):
                yield [(int(i), int(g)) for i, g in zip(self.idx[s, a], self.aug[s, a])]

    def __len__(self) -> int:
        return (self.idx.shape[0] - self.start_step) * self.idx.shape[1]

"""On-disk format of one faces shard folder, and its loader.

    crops.npy       uint8 [F, S, S, 3] RGB aligned crops of each video's main face
    frames.parquet  one row per crop (see FRAMES_SCHEMA); crop_row indexes crops.npy
    qc.parquet      one row per manifest video (see QC_SCHEMA); written last

crops.npy is streamed to a temp file while videos finish (a 500-video shard at 224 px
is ~1.2 GB, more than we want to hold in memory) and renamed into place at the end.
"""
from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from expmae.io import CacheError, atomic_path, write_table

_log = logging.getLogger(__name__)

FRAMES_SCHEMA = pa.schema([
    ("name", pa.string()),
    ("frame_index", pa.int64()),
    ("time_s", pa.float64()),
    ("box", pa.list_(pa.float32(), 4)),         # x, y, w, h in displayed full-resolution pixels
    ("landmarks", pa.list_(pa.float32(), 10)),  # 5 (x, y) points, order as in align.ARCFACE_112
    ("score", pa.float32()),
    ("track_id", pa.int64()),
    ("crop_row", pa.int64()),
    ("aligned", pa.bool_()),                    # False: padded box crop (landmarks unusable)
])
QC_SCHEMA = pa.schema([
    ("name", pa.string()),
    ("ok", pa.bool_()),                 # at least one crop
    ("reason", pa.string()),            # "" | zero-byte file | file missing | undecodable: ... | no frames | no face
    ("frames_decoded", pa.int64()),     # sampled frames actually decoded
    ("frames_with_face", pa.int64()),   # ... with any face at >= min_score
    ("n_crops", pa.int64()),            # ... with the main face (rows in frames.parquet)
    ("mean_score", pa.float64()),       # mean detector score of the crops (NaN if none)
    ("width", pa.int64()), ("height", pa.int64()),  # displayed size (rotation applied)
    ("fps", pa.float64()), ("duration_s", pa.float64()),
    ("has_audio", pa.bool_()),
    ("decoder", pa.string()),   # pyav | decord (fallback) | "" (never decoded)
    ("seconds", pa.float64()),  # processing time of the video
    ("notes", pa.string()),     # readable but unusual, comma-separated: no audio, rotated 90, 1 frame,
                                # variable frame rate, large WxH, partly decoded (...), decord fallback (...)
])
_HEADER = 128  # fixed .npy header size, rewritten with the final row count at the end


class NpyAppender:
    """Append uint8 rows [k, *item_shape] to a .npy file; the file appears (atomically)
    only when the `with` block completes."""

    def __init__(self, path: str | os.PathLike, item_shape: tuple[int, ...]) -> None:
        self.path, self.item_shape, self.rows = Path(path), tuple(item_shape), 0

    def __enter__(self) -> "NpyAppender":
        self._ctx = atomic_path(self.path, suffix=".npy")
        self._tmp = self._ctx.__enter__()
        self._fh = open(self._tmp, "wb")
        self._fh.write(self._header(0))
        return self

    def append(self, rows: np.ndarray) -> int:
        """Write rows; return the index of the first one."""
        rows = np.ascontiguousarray(rows, np.uint8)
        assert rows.shape[1:] == self.item_shape, (rows.shape, self.item_shape)
        start = self.rows
        self._fh.write(rows.tobytes())
        self.rows += len(rows)
        return start

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                self._fh.seek(0)
                self._fh.write(self._header(self.rows))
                self._fh.flush()
                os.fsync(self._fh.fileno())
        finally:
            self._fh.close()
            self._ctx.__exit__(*exc)

    def _header(self, n: int) -> bytes:
        d = "{'descr': '|u1', 'fortran_order': False, 'shape': %r, }" % ((n, *self.item_shape),)
        body = (d.ljust(_HEADER - 10 - 1) + "\n").encode("latin1")
        assert len(body) == _HEADER - 10
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


def frames_table(rows: list[dict]) -> pa.Table:
    cols = {f.name: [r[f.name] for r in rows] for f in FRAMES_SCHEMA}
    return pa.Table.from_pydict(cols, schema=FRAMES_SCHEMA)


def qc_table(rows: list[dict]) -> pa.Table:
    cols = {f.name: [r.get(f.name, "") if f.name == "notes" else r[f.name] for r in rows] for f in QC_SCHEMA}
    return pa.Table.from_pydict(cols, schema=QC_SCHEMA)


def write_outputs_tables(out_dir: Path, frames: list[dict], qc: list[dict], meta: dict) -> pd.DataFrame:
    write_table(out_dir / "frames.parquet", frames_table(frames), meta=meta)
    table = qc_table(qc)
    write_table(out_dir / "qc.parquet", table, meta=meta)  # last: marks the shard complete
    return table.to_pandas()


def load_faces(out_dir: str | os.PathLike, mmap: bool = True) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """-> (crops uint8 [F, S, S, 3] (memory-mapped by default), frames, qc) of one shard folder."""
    out_dir = Path(out_dir)
    try:
        crops = np.load(out_dir / "crops.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError:  # numpy cannot memory-map a 0-row array
        crops = np.load(out_dir / "crops.npy", allow_pickle=False)
    frames = pd.read_parquet(out_dir / "frames.parquet")
    qc = pd.read_parquet(out_dir / "qc.parquet")
    return crops, frames, qc


def load_face_shard(folder: str | Path) -> tuple[np.ndarray | None, pd.DataFrame]:
    """-> (crops memmap [F, S, S, 3] uint8 or None, frames table with `name` and `crop_row`).

    An incomplete or unreadable cache is a CacheError (naming the folder), never a shard without faces;
    a folder that does not exist at all is logged and has no faces.
    """
    folder = Path(folder)
    crops_p, frames_p = folder / "crops.npy", folder / "frames.parquet"
    empty = pd.DataFrame({"name": pd.Series([], dtype=str), "crop_row": pd.Series([], dtype="int64")})
    # A missing or corrupt cache is an error naming the folder, not "no faces": that would silently
    # mask every video of the shard. CacheError removes the folder: a plain rerun rebuilds it (rule faces).
    if not folder.exists():  # no such shard at all (a caller's list, not a damaged cache): nothing to heal
        _log.warning("face cache %s does not exist; treating it as having no faces", folder)
        return None, empty
    if not crops_p.exists() or not frames_p.exists():
        raise CacheError(folder, "lacks crops.npy or frames.parquet")
    try:
        crops = np.load(crops_p, mmap_mode="r", allow_pickle=False)
        frames = pd.read_parquet(frames_p)
    except Exception as e:
        raise CacheError(folder, e) from e
    if "crop_row" not in frames.columns:  # older layout: row i of frames.parquet is crop i
        frames = frames.assign(crop_row=np.arange(len(frames)))
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        _log.warning("face cache %s: crops.npy has shape %s dtype %s, expected [F,S,S,3] uint8", folder, crops.shape, crops.dtype)
        return None, empty
    ok = frames["crop_row"].between(0, len(crops) - 1)
    if not ok.all():
        _log.warning("face cache %s: %d frame rows point outside crops.npy; dropped", folder, int((~ok).sum()))
        frames = frames[ok]
    return crops, frames.reset_index(drop=True)


def video_means(names: Sequence[str], frame_names: np.ndarray, frame_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame features [F, D] grouped by video name -> (X [N, D] per-video mean, mask [N]) in `names` order.
    mask False (zero row) for a video without frames; frames of videos not in `names` are ignored."""
    D = frame_feats.shape[1]
    X = np.zeros((len(names), D), np.float32)
    pos = {n: i for i, n in enumerate(names)}
    idx = np.array([pos.get(n, -1) for n in frame_names], dtype=np.int64)
    if len(idx) and (idx < 0).any():
        extra = sorted(set(np.asarray(frame_names)[idx < 0].tolist()))
        _log.warning("%d face-cache videos are not in the manifest and are ignored: %s", len(extra), extra[:5])
    keep = idx >= 0
    sums = np.zeros((len(names), D), np.float64)
    np.add.at(sums, idx[keep], frame_feats[keep].astype(np.float64))
    counts = np.bincount(idx[keep], minlength=len(names))
    mask = counts > 0
    X[mask] = (sums[mask] / counts[mask, None]).astype(np.float32)
    return X, mask

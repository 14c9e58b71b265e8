"""Atomic file writes and the per-shard feature cache format.

Every artifact in results/ is written through these helpers: a temp file in the same
folder, then os.replace, so a killed job never leaves a half-written file that looks
complete to Snakemake or to a later reader.

Feature cache (one Parquet file per shard and extractor):
    columns  name: string, feature: fixed_size_list<float32>[D], mask: bool
    metadata b"expmae" -> JSON {extractor, model_id, dim, config_hash, ...}
mask=False means the modality is missing for that video (no face, no audio, empty
transcript); the feature is then a zero vector, never a dropped row.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"expmae"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON: NaN/inf (e.g. an F1 that cannot be computed) become null."""
    write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n")


def _finite(o: Any) -> Any:
    if isinstance(o, float | np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_npy(path: str | os.PathLike, arr: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, arr, allow_pickle=False)


def write_table(path: str | os.PathLike, table: pa.Table | Any, meta: dict | None = None) -> None:
    """Write a pandas DataFrame or Arrow table as Parquet, atomically, with optional JSON metadata."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    if meta is not None:
        md = dict(table.schema.metadata or {})
        md[META_KEY] = json.dumps(meta, sort_keys=True, default=_json_default).encode()
        table = table.replace_schema_metadata(md)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_csv_tolerant(path: str | os.PathLike) -> tuple[pd.DataFrame, bool]:
    """A user CSV as strings -> (table, valid_utf8). Non-UTF-8 bytes are replaced rather than
    failing the run; a blank file gives a table without columns."""
    raw = Path(path).read_bytes()
    try:
        text, ok = raw.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        text, ok = raw.decode("utf-8", errors="replace"), False
    if not text.strip():
        return pd.DataFrame(), ok
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), ok


def read_meta(path: str | os.PathLike) -> dict:
    md = pq.read_schema(path).metadata or {}
    return json.loads(md[META_KEY]) if META_KEY in md else {}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able object (used in params so a change reruns a rule)."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def write_features(
    path: str | os.PathLike,
    names: Sequence[str],
    features: np.ndarray,
    mask: np.ndarray,
    meta: dict,
) -> None:
    """Write one row per video: name, fixed-size float32 feature, mask (True = present)."""
    features = np.asarray(features, dtype=np.float32)
    n = len(names)
    dim = features.shape[1] if features.ndim == 2 and n else int(meta.get("dim", 0))
    if n == 0:
        features = np.zeros((0, dim), np.float32)
    assert features.shape == (n, dim), (features.shape, n, dim)
    features = np.where(np.asarray(mask, bool)[:, None], features, 0.0).astype(np.float32)
    flat = pa.array(features.reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "name": pa.array(list(names), type=pa.string()),
            "feature": pa.FixedSizeListArray.from_arrays(flat, dim),
            "mask": pa.array(np.asarray(mask, bool)),
        }
    )
    write_table(path, table, meta={**meta, "dim": dim})


def read_features(paths: Sequence[str | os.PathLike]) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """Concatenate feature shards -> (names, X [N, D] float32, mask [N] bool, meta of first shard)."""
    names: list[str] = []
    feats: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    meta: dict = {}
    for p in paths:
        t = pq.read_table(p)
        meta = meta or read_meta(p)
        dim = t.schema.field("feature").type.list_size
        names += t.column("name").to_pylist()
        col = t.column("feature").combine_chunks()
        feats.append(col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32))
        masks.append(t.column("mask").to_numpy(zero_copy_only=False).astype(bool))
    if not feats:
        return [], np.zeros((0, int(meta.get("dim", 0))), np.float32), np.zeros(0, bool), meta
    return names, np.concatenate(feats), np.concatenate(masks), meta

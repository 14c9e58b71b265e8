"""Atomic file writes and the per-shard feature cache format.

Every artifact in results/ is written through these helpers: a temp file in the same
folder, then os.replace, so a killed job never leaves a half-written file that looks
complete to Snakemake or to a later reader.

Feature cache (one Parquet file per shard and extractor):
    columns  name: string, feature: fixed_size_list<float32>[D], mask: bool
    metadata b"expmae" -> JSON {extractor, model_id, dim, config_hash, ...}
mask=False means the modality is missing for that video (no face, no audio, empty
transcript); the feature is then a zero vector, never a dropped row.

Healing: every Parquet file is written with a CRC per page (recorded at write time); `verify` reads
a cached file back with those checks (.npy headers against the file size, a .safetensors weight file
against the sha256 recorded in it: check_weights, written by expmae/weights.py), and
`python -m expmae.io verify` (rule cache_check, one job per shard, an input of the report) removes a
corrupt or incomplete cache file and says so, so the next run rebuilds it and everything after it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from expmae.cache import CacheError, remove_cache  # CacheError: importers use expmae.io.CacheError

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
        pq.write_table(table, tmp, write_page_checksum=True)  # CRC per page: verify() catches a flipped byte


ENCODINGS = ("utf-8", "utf-8-sig", "gb18030")


def decode(raw: bytes, encoding: str = "") -> tuple[str, str, bool]:
    """-> (text, encoding used, exact). exact=False: no candidate decoded every byte, bad bytes replaced.
    A configured `encoding` is tried after UTF-8 and before GB18030: GB18030 accepts many byte pairs,
    so a cp1252 file could decode "exactly" as GB18030 nonsense and the user's setting would be ignored."""
    utf8 = ["utf-8-sig", "utf-8"] if raw.startswith(b"\xef\xbb\xbf") else ["utf-8", "utf-8-sig"]  # BOM never kept
    for enc in dict.fromkeys([*utf8, *([encoding] if encoding else []), "gb18030"]):
        try:
            return raw.decode(enc), enc, True
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return raw.decode(encoding or "utf-8", errors="replace"), encoding or "utf-8", False
    except LookupError:  # an unknown data.encoding (ingest.check_data names it)
        return raw.decode("utf-8", errors="replace"), "utf-8", False


def read_csv_tolerant(path: str | os.PathLike, encoding: str = "") -> tuple[pd.DataFrame, bool]:
    """A user CSV as strings -> (table, decoded exactly). Tries UTF-8, UTF-8-SIG, GB18030, then `encoding`
    (decode); only then are bad bytes replaced. A blank file gives a table without columns.
    expmae.labels.read_csv does the same and returns QC rows instead of a flag."""
    text, _, exact = decode(Path(path).read_bytes(), encoding)
    if not text.strip():
        return pd.DataFrame(), exact
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), exact


def read_meta(path: str | os.PathLike) -> dict:
    md = pq.read_schema(path).metadata or {}
    return json.loads(md[META_KEY]) if META_KEY in md else {}


class NotRegularFile(OSError):
    """A path whose target is a FIFO, device, socket or kernel file (/proc, /sys, /dev): reading it may
    block forever or never end, so it is never read (ingest makes it a `not a regular file` QC row)."""


_KERNEL_TREES = ("/proc/", "/sys/", "/dev/")  # their "regular" files have no fixed bytes (/proc/self/mem, /proc/kmsg)


def kernel_path(path: str | os.PathLike) -> bool:
    """True for a path resolving into /proc, /sys or /dev (but /dev/shm, a plain tmpfs)."""
    real = os.path.realpath(path)
    return real.startswith(_KERNEL_TREES) and not real.startswith("/dev/shm/")


def regular_file(path: str | os.PathLike) -> os.stat_result:
    """os.stat of the path's target when it is a plain regular file, else NotRegularFile."""
    st = os.stat(path)  # follows symlinks: the target decides
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(f"not a regular file: {path}")
    if kernel_path(path):
        raise NotRegularFile(f"not a regular file (kernel file): {path}")
    return st


def file_sha256(path: str | Path) -> str:
    """sha256 of a regular file's bytes, reading no more than its size when opened: a FIFO, device or
    /proc file is refused before it is opened (NotRegularFile), O_NONBLOCK keeps a path swapped for a FIFO
    in between from blocking the open, and the fstat of the open file is checked again."""
    regular_file(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"not a regular file: {path}")
        h, left = hashlib.sha256(), st.st_size
        while left > 0 and (chunk := f.read(min(left, 1 << 20))):
            h.update(chunk)
            left -= len(chunk)
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
    if isinstance(paths, (str, os.PathLike)):  # a lone path would be iterated character by character
        raise TypeError(f"read_features takes a list of shard paths, not one path: {paths!r}")
    names: list[str] = []
    feats: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    meta: dict = {}
    for p in paths:
        try:
            t = pq.read_table(p, page_checksum_verification=True)
        except (OSError, pa.ArrowException) as err:
            raise CacheError(p, err) from err
        meta = meta or read_meta(p)
        dim = t.schema.field("feature").type.list_size
        names += t.column("name").to_pylist()
        col = t.column("feature").combine_chunks()
        feats.append(col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32))
        masks.append(t.column("mask").to_numpy(zero_copy_only=False).astype(bool))
    if not feats:
        return [], np.zeros((0, int(meta.get("dim", 0))), np.float32), np.zeros(0, bool), meta
    return names, np.concatenate(feats), np.concatenate(masks), meta


WEIGHTS_DIGEST = "expmae_sha256"  # the __metadata__ key of a weight file's recorded sha256 (expmae/weights.py)


def weights_digest(header: dict, data_chunks: Iterable[bytes]) -> str:
    """sha256 of a safetensors header (without its digest key, canonical JSON) and its data bytes."""
    meta = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != WEIGHTS_DIGEST}
    head = {**{k: v for k, v in header.items() if k != "__metadata__"}, **({"__metadata__": meta} if meta else {})}
    h = hashlib.sha256(b"expmae-weights-v1\n" + json.dumps(head, sort_keys=True, separators=(",", ":"),
                                                            ensure_ascii=False).encode())
    for b in data_chunks:
        h.update(b)
    return h.hexdigest()


def check_weights(path: str | os.PathLike) -> tuple[str, str]:
    """A weight file expmae.weights wrote -> (why it is not the file as written, "" when intact; the file's sha256
    when intact). Reads only a regular file and no more than its size: a FIFO or /proc file is never waited on."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < 8:  # checked before any read (/proc/kmsg says 0 bytes)
            return ("not a regular file" if not stat.S_ISREG(st.st_mode) else f"truncated ({st.st_size} bytes)"), ""
        whole, head = hashlib.sha256(), f.read(8)
        n = int.from_bytes(head, "little")
        if n > min(100 << 20, st.st_size - 8):
            return f"header length {n} does not fit the file ({st.st_size} bytes)", ""
        blob = f.read(n)
        try:
            header = json.loads(blob)
            want = (header.get("__metadata__") or {}).get(WEIGHTS_DIGEST)
            end = 8 + n + max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            return f"unreadable header ({type(err).__name__})", ""
        if not want:
            return "no sha256 recorded in the file (written by an older expmae or another program)", ""
        if end != st.st_size:
            return f"{st.st_size} bytes, its header says {end}", ""
        whole.update(head + blob)

        def chunks(left: int = st.st_size - 8 - n) -> Iterator[bytes]:
            while left > 0 and (b := f.read(min(left, 1 << 20))):
                whole.update(b)
                left -= len(b)
                yield b

        if weights_digest(header, chunks()) != want:
            return "sha256 of its content differs from the one recorded when it was written", ""
    return "", whole.hexdigest()


def verify(path: str | os.PathLike) -> str:
    """"" when the cached file (or faces folder, or weight file) reads back intact, else the reason."""
    p = Path(path)
    if p.is_dir():  # a faces shard folder: its three files
        return next((f"{f}: {r}" for f in ("crops.npy", "frames.parquet", "qc.parquet") if (r := verify(p / f))), "")
    if not p.exists():
        return "missing"
    try:
        if p.suffix == ".parquet":
            pq.read_table(p, page_checksum_verification=True)
        elif p.suffix == ".npy":
            with open(p, "rb") as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
                need = f.tell() + int(np.prod(shape)) * dtype.itemsize
            if p.stat().st_size != need:
                return f"size {p.stat().st_size} bytes, header says {need}"
        elif p.suffix == ".safetensors":  # a weight file: the sha256 recorded in it when it was written
            return check_weights(p)[0]
    except (OSError, ValueError, pa.ArrowException) as err:
        return str(err).splitlines()[0][:200] or type(err).__name__
    return ""


def main(argv: list[str] | None = None) -> None:
    """python -m expmae.io verify --files a.parquet b.npy faces/s00000 --out stamp.tsv"""
    import argparse

    ap = argparse.ArgumentParser(description="Verify cached per-shard files; remove the corrupt ones.")
    ap.add_argument("cmd", choices=["verify"])
    ap.add_argument("--files", nargs="*", default=[])
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    bad = [(f, r) for f in a.files if (r := verify(f))]
    for f, why in bad:
        done = "removed" if remove_cache(Path(f)) else "not removed (not a cache file or folder)"
        print(f"corrupt cache {f} ({why}): {done}", flush=True)
    if bad:
        raise SystemExit(f"{len(bad)} corrupt cache file(s) (listed above): rerun snakemake to rebuild "
                         "them and everything computed from them")
    write_text(a.out, "path\n" + "".join(f"{f}\n" for f in a.files))


if __name__ == "__main__":
    main()

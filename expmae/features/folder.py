"""Feature vectors computed elsewhere, read from a folder: `<path>/<name>.npy` or `<name>.npz` per video
(MERTools / MERBench `features/<feat>_UTT/<name>.npy`), or one Parquet / CSV table with a name column.

    features: {hubert_ext: {extractor: folder, path: /data/mer2023/features/chinese-hubert-large-UTT, dims: 1024}}

One utterance vector per video ([D] or [1, D]). Every manifest video gets a row: a video without a file, with
a vector of the wrong size, non-finite values, an unreadable or oversized file is a zero row, mask False and a
QC row saying why (never a failed job). The size is config `dims`, or, unset, the most common size among the
vectors read (the others are QC rows). Reads are bounded: regular files only (no FIFOs or devices), at most
`max_mb` each, arrays without pickles. The table's metadata records the source folder, each file's sha256 and
one hash of that list, so a result names the exact vectors it was trained on.

Scheduled like an audio extractor (its job reads only the shard's manifest and writes a QC table beside the
features); which modality it stands for is the fusion's `fuse.modalities` entry that lists it. A folder holds
vectors for the videos it was made for only: a predict bundle records the set as not computable, with its folder
and provenance, and `expmae predict` reads the vectors of new videos from a folder the user names
(expmae/predict/precomputed.py, through this reader). Snakemake does not watch the folder: after its files
change, rerun the set's jobs (`--forcerun extract_audio` or delete results/features/<set>/).
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .registry import Extractor, register

TABLE_SUFFIXES = (".parquet", ".csv")


def _regular(path: Path, max_bytes: int) -> str:
    """'' when `path` is a regular file of at most max_bytes, else why it is not read."""
    try:
        st = os.stat(path)
    except OSError as err:
        return f"cannot stat {path.name}: {err.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path.name} is not a regular file"
    if st.st_size > max_bytes:
        return f"{path.name} is {st.st_size} bytes, over max_mb ({max_bytes // 2**20} MiB)"
    return ""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_list_sha256(files: dict[str, str]) -> str:
    """One hash of a {file name: sha256} listing: a shard's provenance, or the union of a set's shards'."""
    listing = "".join(f"{f}\t{h}\n" for f, h in sorted(files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def _vector(arr: Any) -> tuple[np.ndarray | None, str]:
    """One utterance vector from an array of shape [D] or [1, D] -> (float32 [D], '') or (None, why)."""
    a = np.asarray(arr)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1 or a.size == 0:
        return None, f"shape {list(np.shape(arr))}, expected [D] or [1, D] (one utterance vector)"
    if not np.issubdtype(a.dtype, np.number):
        return None, f"dtype {a.dtype} is not numeric"
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        return None, "non-finite values"
    return a, ""


def _load_array(path: Path, key: str) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if key:
            if key not in keys:
                raise ValueError(f"no array {key!r} (has {keys})")
            return z[key]
        if len(keys) != 1:
            raise ValueError(f"{len(keys)} arrays {keys}: set the key param")
        return z[keys[0]]


@register("folder", doc="per-video vectors computed elsewhere: <path>/<name>.npy|.npz, or a Parquet/CSV table",
          dims="config dims, or inferred")
class Folder(Extractor):
    """Per-video utterance vectors computed elsewhere (a folder of .npy/.npz, or one table)."""

    modality = "audio"   # scheduling only: a job over the shard's manifest with a QC table (module doc)
    needs = "a folder or table of vectors"
    precomputed = True   # expmae.features.run calls read(), never encode()
    defaults: dict[str, Any] = {"path": "", "dims": 0, "key": "", "name_column": "name", "max_mb": 256}

    # what errors about the path name: the config key, or (expmae predict) the flag that gave the folder
    label = ""

    def where(self) -> str:
        return self.label or f"config key {self.key}.path"

    def dims_from(self) -> str:
        if not self.p.get("dims"):
            return "inferred"
        return "the bundle's" if self.label else f"config {self.key}.dims"

    def load(self) -> None:
        path = str(self.p.get("path") or "")
        if not path:
            raise SystemExit(f"{self.where()}: set it to the folder (or Parquet/CSV table) of vectors")
        self.root = Path(path).expanduser().resolve()
        if not self.root.exists():
            raise SystemExit(f"{self.where()}: {self.root} does not exist")
        self.max_bytes = int(float(self.p["max_mb"]) * 2**20)
        self.model_id = f"folder:{self.root}"

    def read(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, dict[str, Any]]:
        """-> X [N, D], mask [N], QC (name, ok, reason, seconds) and the provenance metadata."""
        vecs, why, files = self.collect(names)
        dims = int(self.p.get("dims") or 0)
        if not dims:  # inferred: the most common size (ties: the first video's)
            counts = Counter(len(v) for v in vecs.values())
            dims = counts.most_common(1)[0][0] if counts else self._any_size()
        return self.table(names, vecs, why, files, dims)

    def collect(self, names: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
        """-> the vectors read (name -> [D]), why the others were not (name -> reason), file name -> sha256."""
        return self._read_folder(names) if self.root.is_dir() else self._read_table(names)

    def table(self, names: Sequence[str], vecs: dict[str, np.ndarray], why: dict[str, str], files: dict[str, str],
              dims: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, dict[str, Any]]:
        """What collect() read -> X [N, dims], mask, QC and metadata; a vector of another size is a QC row."""
        X = np.zeros((len(names), dims), np.float32)
        reason = []
        for i, n in enumerate(names):
            v = vecs.get(n)
            r = why.get(n, "")
            if v is not None and len(v) != dims:
                r = f"dim {len(v)}, expected {dims} ({self.dims_from()})"
            elif v is not None:
                X[i] = v
            reason.append(r)
        mask = np.array([not r for r in reason], bool)
        self.dim = dims
        meta = {"source": str(self.root), "files_sha256": files, "files_list_sha256": files_list_sha256(files),
                "level": "video (computed elsewhere)", "computable": False}
        qc = pd.DataFrame({"name": list(names), "ok": mask, "reason": reason, "seconds": 0.0})
        return X, mask, qc, meta

    def _any_size(self) -> int:
        """The size of the first readable vector of the folder (a shard none of whose videos has one still
        needs a width); none at all: an error naming `dims`."""
        files = sorted(self.root.glob("*.np[yz]"))[:50] if self.root.is_dir() else []
        for path in files:
            if _regular(path, self.max_bytes):
                continue
            try:
                v, _ = _vector(_load_array(path, str(self.p.get("key") or "")))
            except Exception:  # noqa: BLE001 — an unreadable file says nothing about the size
                continue
            if v is not None:
                return len(v)
        raise SystemExit(f"config key {self.key}.dims: no vector of {self.root} could be read to infer the size; "
                         "set dims (the vector size)")

    def _read_folder(self, names: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
        vecs: dict[str, np.ndarray] = {}
        why: dict[str, str] = {}
        files: dict[str, str] = {}
        for n in names:
            cands = [self.root / f"{n}{s}" for s in (".npy", ".npz")]
            path = next((c for c in cands if os.path.lexists(c)), None)
            if path is None:
                why[n] = f"no {n}.npy or {n}.npz in {self.root.name}"  # QC rows name no paths (shared tables)
                continue
            if bad := _regular(path, self.max_bytes):
                why[n] = bad
                continue
            try:
                files[path.name] = sha256(path)
                v, bad = _vector(_load_array(path, str(self.p.get("key") or "")))
            except Exception as err:  # noqa: BLE001 — any unreadable file is the video's QC row
                v, bad = None, f"{path.name} unreadable ({type(err).__name__}: {str(err)[:120]})"
            if v is None:
                why[n] = f"{path.name}: {bad}" if not bad.startswith(path.name) else bad
            else:
                vecs[n] = v
        return vecs, why, files

    def _read_table(self, names: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
        """One table: a name column and either one list column or one numeric column per dimension."""
        key = self.where()
        if self.root.suffix.lower() not in TABLE_SUFFIXES:
            raise SystemExit(f"{key}: {self.root.name} is neither a folder nor a .parquet/.csv table")
        if bad := _regular(self.root, self.max_bytes):
            raise SystemExit(f"{key}: {bad} (raise {self.key}.max_mb if the table is right)")
        df = pd.read_parquet(self.root) if self.root.suffix.lower() == ".parquet" else pd.read_csv(self.root)
        col = str(self.p["name_column"])
        if col not in df.columns:
            raise SystemExit(f"{key}: {self.root.name} has no {col!r} column ({self.key}.name_column); "
                             f"columns {list(df.columns)[:8]}")
        names_col = df[col].astype(str)
        rest = df.drop(columns=[col])
        if rest.shape[1] == 1 and rest.iloc[:, 0].map(lambda v: isinstance(v, (list, np.ndarray))).all():
            rows = [np.asarray(v) for v in rest.iloc[:, 0]]
        else:
            rest = rest.select_dtypes("number")
            rows = list(rest.to_numpy())
        vecs, why = {}, {}
        seen = dict(zip(names_col, rows))  # a repeated name: its last row
        for n in names:
            if n not in seen:
                why[n] = f"no row named {n} in {self.root.name}"
                continue
            v, bad = _vector(seen[n])
            if v is None:
                why[n] = f"{self.root.name}: {bad}"
            else:
                vecs[n] = v
        return vecs, why, {self.root.name: sha256(self.root)}

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        raise RuntimeError("the folder extractor reads vectors (read), it encodes nothing")

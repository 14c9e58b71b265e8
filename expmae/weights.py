"""Weight files the workflow writes (MAE checkpoints and encoders, classifier and fusion heads, the
bundle's copies): safetensors that carry their own sha256 and are byte-stable.

    header    JSON, keys sorted, no spaces, padded with spaces to a multiple of 8 bytes
    __metadata__["expmae_sha256"]   sha256 of the canonical header without this key + the data
                                    (io.weights_digest; io.check_weights reads it back: the cache check)

Written by `save`, not by safetensors' save_file: that one serialises `__metadata__` from a Rust HashMap,
whose key order differs between processes, so two equal trainings gave files with different sha256.
Here equal tensors and metadata give equal bytes (tensors laid out by alignment, then name, as the
safetensors library does, so every tensor stays aligned). The recorded sha256 covers the tensor names,
dtypes, shapes, offsets, the metadata and every data byte, so `check` tells a flipped byte (bit rot, a
bad copy) from the file as written, whatever its mtime. Every reader of such a file goes through
`check` (or `load`, which checks the bytes it loads) before using a weight.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np

from expmae.io import WEIGHTS_DIGEST, CacheError, atomic_path, check_weights, weights_digest

MAX_HEADER = 100 << 20  # the safetensors library's own limit on a header

_NP = {"f8": "F64", "f4": "F32", "f2": "F16", "i8": "I64", "i4": "I32", "i2": "I16", "i1": "I8",
       "u8": "U64", "u4": "U32", "u2": "U16", "u1": "U8", "b1": "BOOL"}
_SIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
         "I8": 1, "U8": 1, "BOOL": 1}  # bytes per element: the layout puts the widest first (aligned)


def _raw(t: Any) -> tuple[str, list[int], np.ndarray]:
    """A torch tensor or numpy array -> (safetensors dtype, shape, its little-endian bytes as uint8)."""
    if type(t).__module__.startswith("torch"):
        import torch

        t = t.detach().to("cpu").contiguous()
        name = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                torch.bool: "BOOL"}.get(t.dtype)
        if name is None:
            raise TypeError(f"no safetensors dtype for {t.dtype}")
        return name, list(t.shape), t.reshape(-1).view(torch.uint8).numpy()
    a = np.asarray(t)
    a = a if a.flags.c_contiguous else a.copy(order="C")  # not ascontiguousarray: it turns a 0-d array into 1-d
    a = a.astype(a.dtype.newbyteorder("<"), copy=False) if a.dtype.byteorder == ">" else a
    name = _NP.get(f"{a.dtype.kind}{a.dtype.itemsize}")
    if name is None:
        raise TypeError(f"no safetensors dtype for {a.dtype}")
    return name, list(a.shape), a.reshape(-1).view(np.uint8)


def save(path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> str:
    """Write `tensors` (torch or numpy) with `metadata` atomically, byte-stable, sha256 recorded -> that sha256."""
    raw = {k: _raw(v) for k, v in tensors.items()}
    order = sorted(raw, key=lambda k: (-_SIZE[raw[k][0]], k))
    header: dict[str, Any] = {}
    offset = 0
    for k in order:
        dtype, shape, data = raw[k]
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if meta:
        header["__metadata__"] = meta
    digest = weights_digest(header, (memoryview(raw[k][2]) for k in order))
    header["__metadata__"] = {**meta, WEIGHTS_DIGEST: digest}
    blob = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    blob += b" " * (-len(blob) % 8)
    with atomic_path(path, suffix=".safetensors") as tmp:
        with open(tmp, "wb") as f:
            f.write(len(blob).to_bytes(8, "little"))
            f.write(blob)
            for k in order:
                f.write(memoryview(raw[k][2]))
    return digest


def check(path: str | os.PathLike) -> tuple[str, str]:
    """-> (why the file is not the one written, "" when intact; its sha256 when intact): io.check_weights,
    the reader every cache check shares."""
    try:
        return check_weights(path)
    except OSError as err:
        return (err.strerror or type(err).__name__), ""


def verified(path: str | os.PathLike, remove: bool, what: str = "weight file") -> str:
    """The file's sha256 when `check` passes; else one line naming the file: with `remove` (a workflow output
    that a rerun rebuilds) the file is removed first (io.CacheError), otherwise it is refused as it is."""
    why, sha = check(path)
    if why:
        if remove:
            raise CacheError(path, why)
        raise SystemExit(f"{what} {path}: {why}; refused (nothing was computed from it)")
    return sha


def load(path: str | os.PathLike, framework: str = "numpy", remove: bool = False,
         what: str = "weight file") -> dict[str, Any]:
    """The tensors of a file `save` wrote, after `verified` (framework numpy | pt)."""
    verified(path, remove, what)
    try:
        if framework == "pt":
            from safetensors.torch import load_file
        else:
            from safetensors.numpy import load_file
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 — a well-formed header over tensors the library refuses
        raise SystemExit(f"{what} {path}: cannot be loaded ({str(err).splitlines()[0][:160]}); refused") from None


def metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` of a file that `check` passed (header only)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return dict(json.loads(f.read(min(n, MAX_HEADER))).get("__metadata__") or {})

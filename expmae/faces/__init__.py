"""Face stage: sampled frames -> detected, tracked, aligned crops of each video's main face.

    extract_shard(manifest_df, out_dir, params) -> qc DataFrame   (one shard folder)
    load_faces(out_dir) -> (crops uint8 [F, S, S, 3], frames DataFrame, qc DataFrame)
CLI: python -m expmae.faces --manifest M.parquet --out DIR --params JSON [--threads 2]
QC report: python -m expmae.faces.report --faces-dirs DIR... --out results/qc

Names are imported lazily: worker processes import expmae.faces.worker only, and should
not pay for pandas/pyarrow at start-up.
"""
from __future__ import annotations

from typing import Any

from .params import resolve_params

__all__ = ["extract_shard", "load_faces", "resolve_params"]


def __getattr__(name: str) -> Any:
    if name == "extract_shard":
        from .extract import extract_shard
        return extract_shard
    if name == "load_faces":
        from .store import load_faces
        return load_faces
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

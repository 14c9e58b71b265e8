"""expMAE: masked autoencoder pretraining on face crops and per-shard feature extraction.

The models are imported on first use (PEP 562), so a CPU feature job, which reads the encoder
file (expmae/encoder_format.py) and runs it on numpy (expmae.npnet), never imports torch."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"MAE": "model", "MAEConfig": "model", "MAE_SIZES": "model", "create_mae": "model",
            "VideoMAE": "video", "VideoMAEConfig": "video"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

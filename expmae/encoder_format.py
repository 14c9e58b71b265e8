"""The encoder file format: encoder.safetensors, what MAE pretraining writes and every encoder user
reads (torch in checkpoint.load_encoder, numpy in expmae.npnet). Torch-free, so a CPU feature job
can read the header without importing torch.

    tensors   encoder weights only, named as in the model's state_dict:
              image MAE  IMAGE_ENCODER_PREFIXES  patch_embed.proj.*, cls_token, blocks.<i>.*, norm.*
              video MAE  VIDEO_ENCODER_PREFIXES  tube_embed.*, blocks.<i>.*, norm.*
              (fixed sin-cos position embeddings are recomputed from the config, never stored)
    metadata  "format": ENCODER_FORMAT
              "expmae": JSON object: kind (image | video; absent = image), model_config (MAEConfig /
              VideoMAEConfig as a dict), shards, step, epochs, final_loss, n_samples, seed,
              untrained, warnings, config_hash (pretraining fingerprint), code_version
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

ENCODER_FORMAT = "expmae-mae-encoder-v1"
KINDS = ("image", "video")
# Parameter-name prefixes that make up each encoder (everything else is the pretraining decoder).
IMAGE_ENCODER_PREFIXES = ("patch_embed.", "cls_token", "blocks.", "norm.")
VIDEO_ENCODER_PREFIXES = ("tube_embed.", "blocks.", "norm.")


def encoder_metadata(info: Mapping[str, Any]) -> dict[str, str]:
    """The safetensors metadata of an encoder file: format tag + the JSON `info` (see module doc)."""
    if info.get("kind", "image") not in KINDS:
        raise ValueError(f"encoder kind must be one of {KINDS}, got {info.get('kind')!r}")
    return {"format": ENCODER_FORMAT, "expmae": json.dumps(dict(info))}


def read_encoder_info(path: str | Path) -> dict[str, Any]:
    """JSON metadata of an expMAE encoder.safetensors (kind, model_config, ...), header only."""
    from safetensors import safe_open

    if not Path(path).exists():
        raise FileNotFoundError(f"MAE encoder {path} not found (run the mae_pretrain rule first)")
    with safe_open(str(path), framework="numpy") as f:
        md = f.metadata() or {}
    if md.get("format") != ENCODER_FORMAT:
        raise ValueError(f"{path} is not an expmae MAE encoder (format {md.get('format')!r})")
    return json.loads(md["expmae"])


def encoder_kind(info: Mapping[str, Any]) -> str:
    """"image" or "video" (files written before video MAEs existed have no kind: image)."""
    return str(info.get("kind", "image"))

"""The `faces:` config section: schema defaults, types and bounds (workflow/schemas/config.schema.yaml).

The Snakemake rule passes the section as JSON (`--params`); keys it omits take the schema
defaults (expmae.config), so a direct `python -m expmae.faces` call and a workflow job agree,
and an older config keeps working when a key is added to the schema.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Mapping

from expmae import config

# type each key is coerced to before validation (JSON from the rule may carry 4 for 4.0)
TYPES: dict[str, type] = {"backend": str, "insightface_root": str, "insightface_pack": str, "fps": float,
                          "max_frames": int, "det_size": int, "min_score": float, "crop_size": int,
                          "margin": float, "landmarks": str, "onet_weights": str}
VIDEO_TIMEOUT_S = 600.0  # a decoder stuck this long on one video is killed (QC: undecodable)


def resolve_params(params: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Merge `params` (dict or JSON text) over the schema defaults, coerce types, validate
    against the schema (an error names the key, e.g. `config key faces.fps: 0 is less than ...`)."""
    if params is None:
        params = {}
    if isinstance(params, str):
        params = json.loads(params) if params.strip() else {}
    unknown = sorted(set(params) - set(TYPES))
    if unknown:
        print(f"[faces] ignoring unknown faces.* keys: {unknown}", file=sys.stderr)
    p = {**config.defaults("faces"), **{k: v for k, v in params.items() if k in TYPES and v is not None}}
    out = {k: TYPES[k](p[k] or "") if TYPES[k] is str else TYPES[k](p[k]) for k in TYPES}
    config.check("faces", out)
    return out

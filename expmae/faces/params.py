"""The `faces:` config section: schema defaults, types and bounds (expmae/config.schema.yaml).

The Snakemake rule passes the section as JSON (`--params`); keys it omits take the schema
defaults (expmae.config), so a direct `python -m expmae.faces` call and a workflow job agree,
and an older config keeps working when a key is added to the schema.
"""
from __future__ import annotations

import functools
import json
import sys
from typing import Any, Mapping

from expmae import config

# JSON schema type -> the Python type a faces.* value is coerced to before validation (JSON from the rule
# may carry 4 for 4.0). The keys and their types are the schema's: one home, so a key added there is never dropped.
SCHEMA_TYPES: dict[str, type] = {"string": str, "number": float, "integer": int, "boolean": bool}
VIDEO_TIMEOUT_S = 600.0  # a decoder stuck this long on one video is killed (QC: undecodable)


@functools.cache
def key_types() -> dict[str, type]:
    """faces.* key -> its Python type, read from the schema's faces section (expmae.config)."""
    out: dict[str, type] = {}
    for key, node in config.section_schema("faces")["properties"].items():
        kind = node.get("type")
        if isinstance(kind, list):  # e.g. [string, "null"]: the value's own type
            kind = next((k for k in kind if k != "null"), None)
        if kind not in SCHEMA_TYPES:
            raise ValueError(f"config schema key faces.{key}: type {kind!r} has no coercion in expmae/faces/params.py "
                             f"(one of {sorted(SCHEMA_TYPES)})")
        out[key] = SCHEMA_TYPES[kind]
    return out


def resolve_params(params: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Merge `params` (dict or JSON text) over the schema defaults, coerce types, validate
    against the schema (an error names the key, e.g. `config key faces.fps: 0 is less than ...`)."""
    if params is None:
        params = {}
    if isinstance(params, str):
        params = json.loads(params) if params.strip() else {}
    types = key_types()
    unknown = sorted(set(params) - set(types))
    if unknown:
        print(f"[faces] ignoring unknown faces.* keys: {unknown}", file=sys.stderr)
    p = {**config.defaults("faces"), **{k: v for k, v in params.items() if k in types and v is not None}}
    out = {k: t(p[k] or "") if t is str else t(p[k]) for k, t in types.items()}
    config.check("faces", out)
    return out

"""The Snakemake workflow's parse-time planning, as plain Python tested without Snakemake.

The rule files (workflow/rules/*.smk) hold each stage's constants and rules; what they compute
lives here (Snakemake's linter keeps functions out of files with rules):
    shards   the shard registry and the per-shard param maps (fingerprints, transcript and ASR hashes)
    extract  the feature jobs' params, flags and per-shard cache files
    train    what each round's training jobs read and write (expmae.train.plan says what is trained)
The top floor of the package: it reads every stage's config helpers, and nothing imports it.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from typing import Any


def js(obj: Any) -> str:
    """Params as compact JSON: a changed setting changes the param, so Snakemake reruns the rule."""
    return json.dumps(obj, sort_keys=True)


def flag_args(input: Mapping[str, Any], keys: Iterable[str]) -> str:
    """--<key> 'path' for each named input of these keys that is set (optional files may be [])."""
    out = []
    for key in keys:
        val = input[key]
        out += [f"--{key.replace('_', '-')} {shlex.quote(v)}" for v in ([val] if isinstance(val, str) else list(val))]
    return " ".join(out)

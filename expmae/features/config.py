"""The `features:` / `asr:` config sections -> what the Snakefile needs at parse time.

Pure Python, no torch: it runs at every Snakemake parse. Errors name the config key.
"""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

from expmae.io import config_hash

from .registry import spec

CODE_VERSION = 1                                   # bump to rerun every extractor (shared runner changed)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def plan(features: dict[str, dict], feature_sets: list[str],
         config: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Validate config `features` (+ classify.feature_sets) -> {modality: [instance names]}.

    `config`: the whole config, for extractors whose weights come from a pretraining section
    (encoder_section): a feature set that needs a disabled section (`<section>.enabled: false`)
    is an error naming the key, not a job waiting on an encoder nobody makes."""
    by_mod: dict[str, list[str]] = {"audio": [], "text": [], "visual": []}
    for name, entry in (features or {}).items():
        key = f"features.{name}"
        if not _NAME.match(name):
            raise ValueError(f"config key {key}: instance names are letters, digits, _ or -")
        if not isinstance(entry, dict) or "extractor" not in entry:
            raise ValueError(f"config key {key}: needs `extractor: <registry name>` (see python -m expmae.features list)")
        try:
            cls, _ = spec(str(entry["extractor"]), f"{key}.extractor")
        except SystemExit as err:
            raise ValueError(str(err)) from None
        section = cls.encoder_section
        if section and name in feature_sets and not (config or {}).get(section, {}).get("enabled", True):
            raise ValueError(f"config key features.{name}: extractor {entry['extractor']} reads "
                             f"results/{section}/encoder.safetensors, but {section}.enabled is false "
                             f"(enable {section}, or drop {name} from classify.feature_sets)")
        by_mod[cls.modality].append(name)
    bad = [n for n in feature_sets if n not in (features or {})]
    if bad:
        raise ValueError(f"config key classify.feature_sets: {bad} are not `features:` entries "
                         f"({sorted(features or {})})")
    return by_mod


def encoder_section(entry: dict[str, Any]) -> str:
    """Config section whose pretraining writes this instance's weights (results/<section>/encoder.safetensors),
    "" for extractors whose weights come from `model`."""
    return spec(str(entry["extractor"]))[0].encoder_section


def rule_params(name: str, entry: dict[str, Any], device: str, column: str | None = None) -> dict[str, Any]:
    """The job's --params: the instance's config + device + code versions. A Snakemake param,
    so changing one instance's settings reruns only that instance's jobs."""
    cls, _ = spec(str(entry["extractor"]))
    p = {**entry, "device": device, "code_version": [CODE_VERSION, cls.version]}
    if cls.modality == "text" and column is not None:
        p["column"] = column
    return p


def gpu(entry: dict[str, Any]) -> int:
    """1 for transformer extractors (the gpu resource), 0 for CPU-only ones (openSMILE)."""
    return int(spec(str(entry["extractor"]))[0].gpu)


def asr_rows(asr: dict[str, Any], transcripts: dict[str, str], registry: pd.DataFrame) -> pd.DataFrame:
    """The registry rows ASR must transcribe, by shard then name (as asr.needs_asr, vectorised).

    asr.enabled: auto -> videos without a transcript CSV row; true -> all; false -> none."""
    from expmae.shard_hash import by_shard, is_in

    mode = asr.get("enabled", "auto")
    if mode is False or str(mode).lower() == "false":
        return registry.iloc[:0]
    reg = by_shard(registry, names=True)
    if not (mode is True or str(mode).lower() == "true") and transcripts and len(reg):
        reg = reg[~is_in(reg["name"], transcripts)]
    return reg


def asr_plan(asr: dict[str, Any], transcripts: dict[str, str], registry: pd.DataFrame) -> dict[str, str]:
    """shard -> hash of the videos ASR must transcribe there, for shards with any (no entry = no asr job)."""
    from expmae.shard_hash import hash_json_rows, json_strings, shard_slices

    reg = asr_rows(asr, transcripts, registry)
    rows = json_strings(reg["name"].astype(str)) if len(reg) else None
    if rows is not None:  # plain ASCII names: joined and hashed per shard in C++ (same hashes)
        return hash_json_rows(reg["shard"], rows)
    names = reg["name"].tolist()
    return {shard: config_hash(names[a:b]) for shard, a, b in shard_slices(reg["shard"])}

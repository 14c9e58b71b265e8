"""The feature extraction jobs' parse-time plan (workflow/rules/extract.smk): each job's --params and
CLI flags, the expMAE encoder a job reads, and every cached per-shard file of a shard (rule
cache_check and the all rule's targets)."""
from __future__ import annotations

import shlex
from collections.abc import Container, Mapping
from typing import Any

from expmae.dag import js
from expmae.features import config as fcfg

FLAGS = {"features": "--out", "frames": "--frames-out"}  # a named input / output's flag; any other: --<name>


def extract_args(input: Mapping[str, Any], output: Mapping[str, Any], **more: Any) -> str:
    """Named inputs / outputs (+ more) of an extract job -> its CLI flags, quoted
    (--manifest m --faces f --encoder e --out o ...); an empty input list gives no flag."""
    args = []
    for name, value in [*input.items(), *output.items(), *more.items()]:
        paths = [value] if isinstance(value, str) else list(value)
        if paths:
            args += [FLAGS.get(name, f"--{name}"), *map(shlex.quote, paths)]
    return " ".join(args)


class ExtractPlan:
    """Input and param functions of the extract rules over one parse's config and shard plan."""

    def __init__(self, config: Mapping[str, Any], res: str, feature_names: Mapping[str, list[str]],
                 asr_todo: Container[str]):
        self.config, self.res = config, res
        self.features = config.get("features") or {}
        self.feature_sets = config["classify"]["feature_sets"]
        self.feature_names, self.asr_todo = feature_names, asr_todo

    def fparams(self, wildcards: Any, column: str | None = None) -> str:
        """--params of a feature job: the instance's config entry + device + code version (JSON)."""
        return js(fcfg.rule_params(wildcards.fset, self.features[wildcards.fset], self.config["device"], column))

    def encoder_input(self, wildcards: Any) -> list[str]:
        """The encoder file of an instance whose weights the workflow pretrains (expmae_image: config
        section mae, expmae_video: mae_video -> results/<section>/encoder.safetensors); [] otherwise."""
        section = fcfg.encoder_section(self.features[wildcards.fset])
        return [f"{self.res}/{section}/encoder.safetensors"] if section else []

    def shard_cache(self, wildcards: Any) -> list[str]:
        """Every cached per-shard file of one shard that the report depends on (rule cache_check)."""
        return self.shard_files(wildcards.shard)

    def shard_files(self, s: str) -> list[str]:
        res = self.res
        files = [f"{res}/ingest/{s}.parquet", f"{res}/faces/{s}"]
        for modality, names in self.feature_names.items():
            for n in [n for n in names if n in self.feature_sets]:
                files.append(f"{res}/features/{n}/{s}.parquet")
                files += {
                    "audio": [f"{res}/features/{n}/{s}.qc.parquet"],
                    "visual": [f"{res}/features/{n}/{s}.frames.npy"],
                }.get(modality, [])
        return files + ([f"{res}/asr/{s}.parquet"] if s in self.asr_todo else [])

"""The workflow's parse-time shard plan: the registry (which video is in which shard) and the per-shard
maps the rules use as params (members' fingerprints, transcript hashes, the ASR todo list).

Snakemake parses the workflow in the main process (it plans every job) and again in every cluster
job process (it runs one job). The main process plans the registry in memory from data.videos /
data.manifest and computes every shard's value at once; a job process reads the registry the main
process saved and computes only the shards it is asked for (expmae/shard_hash.LazyShards), so a job
start-up stays seconds at a million videos. Nothing here writes: `save` persists the plan when a
real run starts (workflow/rules/common.smk's onstart), so -n, --lint and --report leave results/ alone.

Pure Python (no Snakemake): tests/test_dag_shards.py runs it on real files.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from expmae import ingest
from expmae.io import config_hash
from expmae.shard_hash import LazyShards, ShardRows, peak_rss_mb

ShardFn = Callable[[pd.DataFrame], dict[str, str]]


@dataclass
class ShardPlan:
    """The registry of one parse; `issues` is the ingest issues text in the main process, None in a job process."""

    results: str
    registry: pd.DataFrame
    issues: str | None
    _rows: ShardRows | None = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        return self.issues is not None

    def shards(self, role: str) -> list[str]:
        """Sorted shards of one role: train (s-shards) or predict (data.predict's p-shards)."""
        return sorted(self.registry.loc[self.registry["role"] == role, "shard"].unique())

    @property
    def digest(self) -> str:
        """Hash of the ingest issues (a param of inputs_qc: an issue appearing or going away reruns it);
        empty in a job process, which never runs inputs_qc's planning."""
        return config_hash(self.issues) if self.issues is not None else ""

    def per_shard(self, fn: ShardFn, keys: Callable[[], Iterable[str]] | None = None) -> Mapping[str, str]:
        """shard -> fn(registry)[shard]: every shard at once in the main process; one shard at a time,
        on first access, in a job process (fn must give a shard's value from its own rows alone).
        keys: the shards that have a value when not every shard does (ASR: shards with videos to transcribe)."""
        if self.main:
            return fn(self.registry)
        if self._rows is None:  # one sort of the registry, shared by every map of the process
            self._rows = ShardRows(self.registry)
        return LazyShards(fn, self._rows, keys() if keys else None)

    def save(self) -> None:
        """Persist the registry and its issues (each only when changed); a job process has nothing to save."""
        if self.issues is not None:
            ingest.save_registry(self.results, self.registry, self.issues)


def plan(results: str, data: Mapping[str, Any], shard_size: int, main: bool = True) -> ShardPlan:
    """The shard plan of a parse. main: plan from the configured videos (raises ValueError naming the
    config key when there are none or data.manifest / ingest.shard_size is unusable); otherwise read
    the saved registry."""
    if not main:
        return ShardPlan(results, ingest.read_registry(results), None)
    registry, issues = ingest.plan_registry(
        results,
        data["videos"],
        data["extensions"],
        shard_size,
        predict=data.get("predict") or [],  # data.predict: role predict, own p-shards (expmae/predict)
        manifest=data.get("manifest") or "",  # data.manifest (expmae/manifest.py): read, never stat'ed
    )
    if not (registry["role"] == "train").any():
        raise ValueError(f"no videos found under config key data.videos = {data['videos']} / "
                         f"data.manifest = {data.get('manifest')!r}")
    return ShardPlan(results, registry, issues)


def end_of_parse(t0: float) -> None:
    """Called once the rule files are read. The parse's objects live as long as the process: keep them
    out of the cyclic GC's sweeps while Snakemake builds the DAG (at 1.1M videos the sweeps over them
    cost seconds). EXPMAE_PARSE_TIMING=1 (benchmarks/bench_dag.py) prints the project's parse-time share
    since t0 (the start of common.smk) and the peak memory, under the label bench_dag.py reads."""
    gc.collect()
    gc.freeze()
    if os.environ.get("EXPMAE_PARSE_TIMING"):
        print(f"EXPMAE_PARSE_TIMING common.smk {time.perf_counter() - t0:.3f} s, peak rss {peak_rss_mb()} MB",
              file=sys.stderr)


def pretrain_shards(results: str, section: str, retrain_on_new_videos: bool, shards: list[str]) -> list[str]:
    """Shards MAE pretraining (config section mae or mae_video) sees. Unless <section>.retrain_on_new_videos,
    keep the shards recorded by the existing checkpoint's meta.json, so new videos do not retrigger pretraining."""
    meta = Path(results, section, "meta.json")
    if not retrain_on_new_videos and meta.exists():
        seen = [s for s in json.loads(meta.read_text(encoding="utf-8")).get("shards", []) if s in shards]
        if seen:
            return seen
    return shards

"""Per-shard hashes of the registry at parse time (Snakemake params: fingerprints, transcript and ASR
hashes), vectorised: the registry is sliced by shard once, and where every value is plain ASCII the
JSON text of each shard's list is built and joined by pyarrow (C++). The hashes are exactly those of
expmae.io.config_hash over the per-shard lists, so existing results stay up to date.
LazyShards (over one ShardRows): the same maps computed one shard at a time, for cluster job processes, which re-parse the
workflow but need only their own shard's hashes (all of them: ~5 s per job at 1.1M videos).
peak_rss_mb: the parse's peak memory, for EXPMAE_PARSE_TIMING (workflow/rules/common.smk, bench_dag).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd


def shard_slices(shards: pd.Series) -> list[tuple[str, int, int]]:
    """(shard, start, stop) of each run of equal values in a sorted shard column: per-shard work at
    parse time slices one list instead of building a DataFrame per group (2,200 groups at 1.1M videos)."""
    v = shards.to_numpy()
    if not len(v):
        return []
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    return list(zip(v[starts].tolist(), starts.tolist(), [*starts[1:].tolist(), len(v)]))


def arrow_strings(values: pd.Series):
    import pyarrow as pa

    arr = pa.array(values.array if len(values) else [], pa.string())
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr  # (read from Parquet: chunked)


def is_in(names: pd.Series, values) -> np.ndarray:
    """names.isin(values) as a bool array, by pyarrow's hash set: pandas' isin on arrow strings loops
    in Python (5.5 s for 1.1M names against 550k values)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(names):
        return np.zeros(0, bool)
    found = pc.is_in(arrow_strings(names.astype(str)), value_set=pa.array(list(values), pa.string()))
    return found.to_numpy(zero_copy_only=False)


def by_shard(registry: pd.DataFrame, names: bool = False) -> pd.DataFrame:
    """The registry sorted by shard (names=True: by shard, then name), stable. A registry assign made
    is in that order already, which is checked in C++: a sort of a million strings costs seconds."""
    import pyarrow.compute as pc

    keys = ["shard", "name"] if names else ["shard"]
    if len(registry) > 1:
        sh, nm = arrow_strings(registry["shard"].astype(str)), arrow_strings(registry["name"].astype(str))
        s0, s1 = sh[:-1], sh[1:]
        order = pc.less_equal(s0, s1) if not names else pc.or_(
            pc.less(s0, s1), pc.and_(pc.equal(s0, s1), pc.less_equal(nm[:-1], nm[1:])))
        if pc.all(order).as_py():
            return registry
    return registry.sort_values(keys, kind="stable")


_PLAIN = r"^[ !#-\[\]-~]*$"  # printable ASCII but " and \: json.dumps writes such a string as it is, in quotes


def json_strings(values: pd.Series):
    """Each value as json.dumps writes it (a pyarrow array), built in C++; None when a value needs
    escaping (non-ASCII, quotes...): the caller then takes json.dumps itself."""
    import pyarrow.compute as pc

    arr = arrow_strings(values)
    if arr.null_count or not pc.all(pc.match_substring_regex(arr, _PLAIN)).as_py():
        return None
    return pc.binary_join_element_wise('"', arr, '"', "")


def hash_json_rows(shards: pd.Series, rows) -> dict[str, str]:
    """shard -> config_hash of its rows' list, from each row's JSON text (sorted shard column): the
    hash json.dumps + sha256 would give, with the joining done per shard by pyarrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    sl = shard_slices(shards)
    offsets = pa.array([a for _, a, _ in sl] + [len(rows)], pa.int32())
    rows = rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, rows), ", ").to_pylist()
    return {s: hashlib.sha256(f"[{j}]".encode()).hexdigest()[:12] for (s, _, _), j in zip(sl, joined)}


class ShardRows:
    """The registry sorted by shard and each shard's row range, made once for every LazyShards map of
    a process (sorting and slicing a 1.1M-row registry costs ~0.1 s each time)."""

    def __init__(self, registry: pd.DataFrame):
        self.registry = by_shard(registry)
        self.at = {s: (a, b) for s, a, b in shard_slices(self.registry["shard"])}

    def of(self, shard: str) -> pd.DataFrame:
        a, b = self.at[shard]
        return self.registry.iloc[a:b]


class LazyShards(Mapping):
    """shard -> fn(registry)[shard], each shard's value computed from its own rows on first access.

    fn must give a shard's value from that shard's rows alone (the per-shard hashes above do: each is a
    hash of the shard's own members), so the values equal fn(registry)'s. keys: the shards that have a
    value (default: every shard of the registry; ASR: only the shards with videos to transcribe)."""

    def __init__(self, fn: Callable[[pd.DataFrame], dict[str, str]], rows: ShardRows,
                 keys: Iterable[str] | None = None):
        self._fn, self._rows = fn, rows
        self._keys = list(rows.at) if keys is None else [s for s in keys if s in rows.at]
        self._has, self._done = set(self._keys), {}

    def __getitem__(self, shard: str) -> str:
        if shard not in self._done:
            if shard not in self._has:
                raise KeyError(shard)
            self._done[shard] = self._fn(self._rows.of(shard))[shard]
        return self._done[shard]

    def __contains__(self, shard: object) -> bool:  # membership never computes a value
        return shard in self._has

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def peak_rss_mb() -> int:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry a parent's peak across
    fork + exec), MB; -1 where /proc is not there."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(ln.split()[1]) // 1024 for ln in f if ln.startswith("VmHWM"))
    except (OSError, StopIteration):
        return -1

"""The shard registry on disk (`results/ingest/registry.parquet`): verified on every read, and recoverable.

A registry that reads back different (a flipped bit renaming a video, merging two shards) would silently
reassign shards, so every read checks three things and refuses with one line naming the file and the
recovery command when any fails:
- the Parquet page CRCs written with it (io.write_table),
- a digest of its content stored in its metadata (covers what page CRCs do not: footer, statistics),
- its invariants: columns, unique non-empty names, role train|predict, shard ids `s00000` / `p00000`
  whose prefix matches the role.

Every save also writes a second copy (`registry.copy.parquet`). Recovery (`python -m expmae.registry
recover --results results`) takes the first source that verifies and agrees with the per-shard ingest
manifests (`results/ingest/<shard>.parquet`, each listing its shard's members): the registry, its copy,
or else the manifests themselves. It never reassigns a video that a manifest places: a source that
disagrees with the manifests is not used, and manifests that disagree with each other stop it.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from expmae.io import read_meta, write_table

COLUMNS = ["name", "path", "shard", "size", "mtime_ns", "role"]
ROLES = {"train": "s", "predict": "p"}
SHARD_FILE = re.compile(r"^[sp]\d{5}\.parquet$")


class RegistryError(ValueError):
    """A registry that is corrupt, or missing while shards exist: the message names the file and the fix."""


def paths(results: str | os.PathLike) -> tuple[Path, Path]:
    """(registry, its copy)."""
    d = Path(results) / "ingest"
    return d / "registry.parquet", d / "registry.copy.parquet"


def recover_hint(results: str | os.PathLike) -> str:
    return f"recover it with: python -m expmae.registry recover --results {results}"


def _column_bytes(col: pa.ChunkedArray | pa.Array) -> list[bytes]:
    """A column's values as canonical bytes (strings: rebased int64 offsets + UTF-8 data; numbers: int64),
    whatever chunking or slicing Arrow gave it: the digest of equal content is equal."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return [np.asarray(arr.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64).tobytes()]
    arr = arr.cast(pa.large_string())
    off = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    body = data[int(off[0]): int(off[-1])].to_pybytes() if data is not None and len(arr) else b""
    return [(off - off[0]).tobytes(), body]


def digest(table: pa.Table) -> str:
    """sha256 of the registry's content, row order included (vectorised: no per-row Python)."""
    h = hashlib.sha256()
    for c in COLUMNS:
        h.update(c.encode() + b"\0")
        for part in _column_bytes(table.column(c)):
            h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()


def problems(table: pa.Table) -> str:
    """"" when the registry's invariants hold, else the first broken one (pyarrow kernels: 1M rows in ms)."""
    if missing := [c for c in COLUMNS if c not in table.column_names]:
        return f"no column {missing}"
    try:
        name, shard, role = (table.column(c).combine_chunks().cast(pa.string()) for c in ("name", "shard", "role"))
    except pa.ArrowException as err:
        return f"a text column of another type ({str(err)[:80]})"
    if name.null_count or shard.null_count or role.null_count or pc.any(pc.equal(name, "")).as_py():
        return "an empty video id, shard or role"
    if pc.count_distinct(name).as_py() < len(name):
        counts = pc.value_counts(name)
        twice = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")[0].as_py()
        return f"video id {twice!r} registered twice"
    if bad := sorted(set(pc.unique(role).to_pylist()) - set(ROLES)):
        return f"unknown role {bad[0]!r}"
    prefix = pc.if_else(pc.equal(role, "train"), ROLES["train"], ROLES["predict"])
    ok = pc.and_(pc.match_substring_regex(shard, r"^[sp]\d{5}$"), pc.equal(pc.utf8_slice_codeunits(shard, 0, 1), prefix))
    if not pc.all(ok).as_py():
        i = int(np.flatnonzero(~np.asarray(ok))[0])
        return f"shard id {shard[i].as_py()!r} does not fit role {role[i].as_py()!r}"
    return ""


def load(path: Path) -> pd.DataFrame:
    """Read and verify one registry file; RegistryError (the reason, without the fix) when it fails."""
    try:
        t = pq.read_table(path, page_checksum_verification=True)
        meta = read_meta(path)
        if "role" not in t.column_names:  # written before data.predict existed (and before digests)
            t = t.append_column("role", pa.array(["train"] * len(t), pa.string()))
        if why := problems(t):
            raise RegistryError(why)
        if "digest" in meta and meta["digest"] != digest(t):
            raise RegistryError("content does not match the digest written with it")
        reg = t.select(COLUMNS).to_pandas()
    except RegistryError:
        raise
    except Exception as err:  # noqa: BLE001 — any decoding failure (Arrow, JSON metadata, UTF-8) is corruption
        raise RegistryError(str(err).splitlines()[0][:200] or type(err).__name__) from None
    return reg.astype({"size": "int64", "mtime_ns": "int64"})


def manifests(results: str | os.PathLike) -> list[Path]:
    """The per-shard ingest manifests on disk."""
    d = Path(results) / "ingest"
    return sorted(p for p in d.glob("*.parquet") if SHARD_FILE.match(p.name)) if d.is_dir() else []


def read(results: str | os.PathLike) -> pd.DataFrame:
    """The verified registry; an empty one only when nothing was ever registered (no registry, no copy,
    no shard manifest, no faces output). Otherwise RegistryError naming the file and the recovery command."""
    main, copy = paths(results)
    if not main.exists():
        if copy.exists() or manifests(results) or any((Path(results) / "faces").glob("s[0-9]*")):
            raise RegistryError(f"{main} is missing but shards were registered before (a new one would move "
                                f"videos to other shards): {recover_hint(results)}")
        return pd.DataFrame(columns=COLUMNS)
    try:
        return load(main)
    except RegistryError as err:
        raise RegistryError(f"{main} is corrupt ({err}): {recover_hint(results)}") from None


def write(results: str | os.PathLike, reg: pd.DataFrame) -> None:
    """The registry and its copy, each atomically, with its content digest (page CRCs: io.write_table)."""
    reg = reg[COLUMNS].astype({"name": str, "path": str, "shard": str, "size": "int64", "mtime_ns": "int64", "role": str})
    table = pa.Table.from_pandas(reg, preserve_index=False).replace_schema_metadata(None)  # no pandas JSON to corrupt
    meta = {"digest": digest(table), "rows": len(reg)}
    for p in paths(results):
        write_table(p, table, meta=meta)


def _from_manifests(files: list[Path]) -> pd.DataFrame:
    parts = []
    for f in files:
        try:
            m = pq.read_table(f, page_checksum_verification=True).to_pandas()
        except (OSError, ValueError, pa.ArrowException) as err:
            raise RegistryError(f"shard manifest {f} is unreadable too ({str(err)[:120]}): remove it (its "
                                f"shard's videos are then registered anew) and rerun recover") from None
        shard = f.stem
        parts.append(m[["name", "path", "size", "mtime_ns"]].assign(shard=shard, role="predict" if shard[0] == "p" else "train"))
    reg = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    dup = reg["name"].duplicated(keep=False)
    if dup.any():
        name = reg.loc[dup, "name"].iloc[0]
        raise RegistryError(f"video {name!r} is listed by two shard manifests "
                            f"({', '.join(sorted(reg.loc[reg['name'] == name, 'shard']))}): keep the right one")
    return reg[COLUMNS].sort_values(["shard", "name"], ignore_index=True)


def disagreement(reg: pd.DataFrame, placed: pd.DataFrame) -> str:
    """"" when every video a shard manifest lists sits in that shard in `reg` (and no other video does)."""
    have = reg.set_index("name")["shard"]
    got = have.reindex(placed["name"]).to_numpy()
    wrong = got != placed["shard"].to_numpy()
    if wrong.any():
        row = placed[wrong].iloc[0]
        return f"{row['name']!r} is in shard {row['shard']} by its manifest, not {got[wrong][0]}"
    listed = set(placed["shard"])
    extra = reg[reg["shard"].isin(listed) & ~reg["name"].isin(placed["name"])]
    return f"{extra['name'].iloc[0]!r} is in shard {extra['shard'].iloc[0]} but not in its manifest" if len(extra) else ""


def recover(results: str | os.PathLike) -> str:
    """Rewrite the registry (and its copy) from the first source that verifies and agrees with the shard
    manifests: the registry, its copy, the manifests. Returns what was done, one line."""
    main, copy = paths(results)
    placed = _from_manifests(manifests(results))
    tried = []
    for src in (main, copy):
        if not src.exists():
            tried.append(f"{src.name}: missing")
            continue
        try:
            reg = load(src)
        except RegistryError as err:
            tried.append(f"{src.name}: {err}")
            continue
        if why := disagreement(reg, placed):
            tried.append(f"{src.name}: {why}")
            continue
        write(results, reg)
        return f"{main}: restored from {src.name} ({len(reg)} videos, {reg['shard'].nunique()} shards; " \
               f"agrees with {len(manifests(results))} shard manifests)"
    if not len(placed):
        raise RegistryError(f"{main}: nothing to recover from ({'; '.join(tried)}; no shard manifest): "
                            f"remove {Path(results)} to start over")
    write(results, placed)
    return f"{main}: rebuilt from {placed['shard'].nunique()} shard manifests ({len(placed)} videos; " \
           f"{'; '.join(tried)}). Videos no manifest lists are registered anew by the next run"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.registry", description="Verify or recover the shard registry.")
    ap.add_argument("cmd", choices=["verify", "recover"])
    ap.add_argument("--results", default="results", help="the results folder (config key results)")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "verify":
            reg = read(a.results)
            print(f"{paths(a.results)[0]}: intact ({len(reg)} videos, {reg['shard'].nunique()} shards)")
        else:
            print(recover(a.results))
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CacheError: a cached per-shard file (under results/) that cannot be read is removed, so a plain rerun
rebuilds it, and the message names it.

Removal is the dangerous half, so it is narrow: a regular file or a link is unlinked (never followed);
a folder only when it looks like one shard's cache (no subfolders, only regular files of the cache
types) and lies at least three levels below the root, never the working directory or one above it.
Anything else is left alone and the message says so: a path handed over by mistake (a string where a
list of paths was meant iterates its characters, the first being "/") must never be deleted.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

CACHE_SUFFIXES = (".npy", ".parquet", ".json", ".tsv", ".log", ".safetensors", ".png", ".txt")


def removable(p: Path) -> bool:
    """Whether `p` may be removed as a damaged cache (see the module docstring)."""
    if p.is_symlink() or p.is_file():
        return True
    if not p.is_dir():
        return False
    full = p.resolve()
    if len(full.parts) < 4 or full == Path.cwd().resolve() or full in Path.cwd().resolve().parents:
        return False
    with os.scandir(full) as it:
        return all(e.is_file(follow_symlinks=False) and e.name.endswith(CACHE_SUFFIXES) for e in it)


def remove_cache(p: Path) -> bool:
    """Remove a damaged cache file or shard folder when `removable` allows it -> whether it was removed."""
    if not (p.exists() or p.is_symlink()) or not removable(p):
        return False
    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    return True


class CacheError(SystemExit):
    """A cached per-shard file (under results/) that cannot be read. It is removed when that is safe
    (`removable`), so a plain rerun rebuilds it (every per-shard file is a target of rule all)."""

    def __init__(self, path: str | os.PathLike, err: BaseException | str, remove: bool = True) -> None:
        why = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        p = Path(path)
        removed = remove and remove_cache(p)
        note = "removed; " if removed else ("not removed (not a cache file or folder); " if remove else "")
        super().__init__(f"unreadable cache file {path} ({why}): {note}rerun snakemake, which rebuilds it "
                         f"with the rule that wrote it and reruns what was computed from it")

"""Cached feature sets -> the MERBench/MERTools layout: `<out>/<set>_UTT/<name>.npy`, one float32 vector per video.

    python -m expmae.export --out merbench/ [--set expmae --set hubert] [--labels data/labels.csv]
    (the same: expmae export ...)

Reads results/features/<set>/<shard>.parquet (expmae.io.read_features). A video whose row is masked (no face,
no audio, ...) has no vector and is skipped; a name that cannot be a file name (a path separator, `..`) is
refused; both are listed in <out>/export_skipped.csv (set,name,reason) and counted on stdout. With --labels
(the run's data.labels CSV), <out>/labels.csv holds `name,discrete[,valence]` for the exported videos that
have a label. Every file is written atomically, and nothing is written outside <out>.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from expmae.io import read_features, write_npy, write_text

SKIPPED = "export_skipped.csv"
LABELS = "labels.csv"


class ExportError(SystemExit):
    """A problem a user can fix (a missing set, an output path leading elsewhere): one line, exit 1."""

    def __init__(self, msg: str) -> None:
        super().__init__(f"expmae export: {msg}")


def bad_name(name: str) -> str:
    """Why `name` cannot be a file name inside a folder ("" = fine)."""
    if not name or name in (".", ".."):
        return f"name {name!r} cannot be a file name"
    if "/" in name or "\\" in name or "\0" in name or os.sep in name:
        return "name holds a path separator"
    return ""


def inside(path: Path, root: Path) -> bool:
    """True when `path` (resolved, symlinks followed) stays under `root`."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, real_root]) == real_root


def feature_shards(folder: Path) -> list[Path]:
    """A set's per-shard feature tables, <shard>.parquet (the registry's shard file names): not the audio sets'
    QC tables beside them (<shard>.qc.parquet), which hold no vectors."""
    from expmae.registry import SHARD_FILE

    return sorted(p for p in folder.glob("*.parquet") if SHARD_FILE.match(p.name))


def feature_sets(results: Path) -> list[str]:
    d = results / "features"
    return sorted(p.name for p in d.iterdir() if p.is_dir() and feature_shards(p)) if d.is_dir() else []


def export_set(results: str | os.PathLike, name: str, out: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """Write one feature set's vectors -> (exported names, skipped rows {set, name, reason})."""
    results, out = Path(results), Path(out)
    if bad_name(name):
        raise ExportError(f"feature set {name!r}: {bad_name(name)}")
    shards = feature_shards(results / "features" / name)
    if not shards:
        have = ", ".join(feature_sets(results)) or "none"
        raise ExportError(f"no cached feature set {name!r} under {results}/features (sets there: {have}); "
                          f"run the workflow first or pick one of those with --set")
    names, X, mask, _ = read_features(shards)
    folder = out / f"{name}_UTT"
    folder.mkdir(parents=True, exist_ok=True)
    if not inside(folder, out):  # a <set>_UTT symlink left in <out> pointing elsewhere
        raise ExportError(f"{folder} leads outside {out}; remove it or choose another --out")
    done: list[str] = []
    seen: set[str] = set()
    skipped: list[dict] = []
    for n, x, ok in zip(names, X, mask):
        why = bad_name(n) or ("" if ok else "no data (masked row)") or \
            ("duplicate name (kept first)" if n in seen else "")
        if why:
            skipped.append({"set": name, "name": n, "reason": why})
            continue
        target = folder / f"{n}.npy"
        if not inside(target, out):  # e.g. a symlink planted where the file goes
            skipped.append({"set": name, "name": n, "reason": "target leads outside the output folder"})
            continue
        write_npy(target, np.asarray(x, np.float32))
        seen.add(n)
        done.append(n)
    return done, skipped


def write_labels(labels_csv: str | os.PathLike, names: Sequence[str], out: Path) -> int:
    """<out>/labels.csv (name,discrete[,valence]) for the exported names that have a label -> rows written."""
    from expmae.labels import read_csv

    df, _ = read_csv(labels_csv, key="--labels")
    if "name" not in df.columns or "discrete" not in df.columns:
        raise ExportError(f"{labels_csv}: label CSV needs columns name,discrete[,valence]")
    df = df.assign(name=df["name"].str.strip()).drop_duplicates("name")
    cols = ["name", "discrete"] + (["valence"] if "valence" in df.columns and (df["valence"] != "").any() else [])
    keep = df[df["name"].isin(set(names))][cols]
    write_text(out / LABELS, keep.to_csv(index=False))
    return len(keep)


def export(results: str | os.PathLike, sets: Sequence[str], out: str | os.PathLike, labels: str = "") -> dict:
    """Export `sets` (empty = every cached set) -> {set: exported count, "skipped": n, "labels": n}."""
    results, out = Path(results), Path(out)
    sets = list(sets) or feature_sets(results)
    if not sets:
        raise ExportError(f"no cached feature sets under {results}/features: run the workflow first")
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    skipped: list[dict] = []
    exported: set[str] = set()
    for s in sets:
        done, skip = export_set(results, s, out)
        summary[s] = len(done)
        skipped += skip
        exported.update(done)
    write_text(out / SKIPPED, pd.DataFrame(skipped, columns=["set", "name", "reason"]).to_csv(index=False))
    summary["skipped"] = len(skipped)
    if labels:
        if not Path(labels).is_file():
            raise ExportError(f"--labels {labels}: no such file (the run's data.labels CSV)")
        summary["labels"] = write_labels(labels, sorted(exported), out)
    return summary


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="expmae export", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--out", required=True, help="output folder (gets <set>_UTT/<name>.npy folders)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME",
                    help="feature set to export (repeatable; default: every set under <results>/features)")
    ap.add_argument("--results", default="results", help="the run's results folder (default results)")
    ap.add_argument("--labels", default="", help="label CSV (name,discrete[,valence]) -> <out>/labels.csv")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        summary = export(args.results, args.sets, args.out, args.labels)
    except SystemExit as e:  # ExportError, CacheError: printed here, as the `expmae` dispatcher keeps only the code
        print(e.code, file=sys.stderr)
        return 1
    for s in args.sets or [k for k in summary if k not in ("skipped", "labels")]:
        print(f"{s}_UTT: {summary[s]} videos -> {Path(args.out) / (s + '_UTT')}")
    print(f"skipped: {summary['skipped']} (listed in {Path(args.out) / SKIPPED})")
    if "labels" in summary:
        print(f"labels: {summary['labels']} rows -> {Path(args.out) / LABELS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

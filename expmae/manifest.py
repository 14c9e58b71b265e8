"""data.manifest: a list of video paths, instead of (or beside) scanning the data.videos folders.

On a cluster file system listing a million files is slow; a manifest is read in one go and the file
system is never touched at parse time (no stat, no listing). Formats, by the file's ending:
- `.csv` / `.tsv`: a header with a `path` column; optional `size` (bytes) and `mtime` (seconds since the
  epoch, may be fractional) or `mtime_ns`;
- `.parquet`: the same columns;
- anything else (`.txt`, `.lst`, ...): one path per line; blank lines and lines starting with `#` skipped.
A relative path is taken relative to the manifest's own folder (so a manifest travels with its data).
The video id is the file's stem, as for scanned folders; the same id twice keeps the first row.

Identity: with `size` / `mtime` columns a shard's fingerprint covers them as for scanned files, so a
row whose size or mtime changed reruns its shard. Without them a video's identity is its path:
replacing the bytes under the same path is not seen at parse time (give the row new size / mtime
values, or a new path). The ingest job stats and hashes the shard's files (its manifest's size,
mtime_ns, sha256), and a listed path that is gone is a QC row (`file missing`, from the face and
audio stages), never a parse-time error. A manifest with size and mtime, from GNU find:

    (echo path,size,mtime; find /data/clips -name '*.mp4' -printf '%p,%s,%T@\n') > videos.csv
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

KEY = "data.manifest"
COLUMNS = ["name", "path", "size", "mtime_ns"]


class ManifestError(ValueError):
    """A manifest that cannot be used at all (unreadable, no path column): the message names data.manifest."""


def _table(path: Path) -> pd.DataFrame:
    ending = path.suffix.lower()
    try:
        if ending == ".parquet":
            df = pd.read_parquet(path)
        elif ending in (".csv", ".tsv"):
            df = _csv(path, "\t" if ending == ".tsv" else ",")
        else:
            text = path.read_bytes().decode("utf-8", "replace")  # lines that are not UTF-8: issue rows below
            lines = pd.Series(text.splitlines(), dtype=object).str.strip()
            df = pd.DataFrame({"path": lines[(lines != "") & ~lines.str.startswith("#")].reset_index(drop=True)})
    except (OSError, ValueError, ImportError) as err:  # pyarrow / pandas parser errors are ValueErrors
        raise ManifestError(f"config key {KEY}: cannot read {path}: {type(err).__name__}: {str(err)[:200]}") from None
    if "path" not in df.columns:
        raise ManifestError(f"config key {KEY}: {path} needs a `path` column (columns: {list(df.columns)[:8]})")
    return df


def _csv(path: Path, sep: str) -> pd.DataFrame:
    """pyarrow's CSV reader (multi-threaded, ~3x pandas'); pandas' (bytes that are not UTF-8 replaced,
    so those rows become issue rows) when pyarrow refuses the file."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        opts = pcsv.ConvertOptions(column_types={"path": pa.string()}, strings_can_be_null=False)
        return pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=sep), convert_options=opts).to_pandas()
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return pd.read_csv(path, sep=sep, dtype={"path": str}, keep_default_na=False, encoding_errors="replace")


def _int_column(df: pd.DataFrame, col: str, scale: float = 1) -> np.ndarray:
    """An optional number column as int64, -1 where absent or not a number."""
    if col not in df.columns:
        return np.full(len(df), -1, dtype=np.int64)
    v = pd.to_numeric(df[col], errors="coerce") * scale
    return v.round().fillna(-1).astype(np.int64).to_numpy()


def read_manifest(manifest: str | os.PathLike, exts: Iterable[str]) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """The manifest's videos -> (DataFrame name, path, size, mtime_ns (-1 = not given), issues
    [(name, path, reason)]). Vectorised (no per-row Python), and no file-system access beyond reading
    the manifest itself. Rows that are not videos by data.extensions, hidden files, names that are not
    UTF-8 and repeated ids are issue rows (as for scanned folders), not errors."""
    import pyarrow as pa
    import pyarrow.compute as pc

    manifest = Path(manifest)
    df = _table(manifest)
    # pyarrow.compute (C++) for the string work: pandas' str accessors fall back to Python per row
    col = pa.array(df["path"].astype(str).array)
    paths = (col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col).cast(pa.string())
    # file name = the text after the last "/" (the last item of a split); stem = it less the extension,
    # which must be one of data.extensions (case-insensitive), as for scanned folders
    split = pc.split_pattern(paths, "/")
    file = split.values.take(pa.array(split.offsets.to_numpy()[1:] - 1))
    name, video = pa.nulls(len(file), pa.string()), np.zeros(len(file), bool)
    for e in sorted({e.lower() for e in exts}, key=len, reverse=True):
        hit = np.asarray(pc.ends_with(file, e, ignore_case=True)) & ~video
        if hit.any():
            stem = pc.utf8_slice_codeunits(file, 0, -len(e))
            name = stem if hit.all() else pc.if_else(hit, stem, name)
            video |= hit
    base = str(manifest.parent)
    relative = ~np.asarray(pc.starts_with(paths, "/"))
    if base != "." and relative.any():  # relative to the manifest's folder
        rel = paths.filter(relative)
        if pc.any(pc.starts_with(rel, "./")).as_py():
            rel = pc.replace_substring_regex(rel, r"^\./", "")
        joined = pc.binary_join_element_wise(base, rel, "/")
        paths = joined if relative.all() else pa.concat_arrays([paths.filter(~relative), joined]).take(
            pa.array(np.argsort(np.r_[np.flatnonzero(~relative), np.flatnonzero(relative)], kind="stable")))
    out = pd.DataFrame({"name": pc.fill_null(name, "").to_pandas(), "path": paths.to_pandas(),  # zero-copy
                        "size": _int_column(df, "size"),
                        "mtime_ns": _int_column(df, "mtime_ns") if "mtime_ns" in df.columns else _int_column(df, "mtime", 1e9)})
    file, ext = file.to_pandas(), pd.Series(video)
    issues: list[tuple[str, str, str]] = []

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal out, ext, file
        if not mask.any():  # the usual case: no copy of a million rows
            return
        bad = out[mask]
        issues.extend(zip(bad["name"], bad["path"], [reason] * len(bad)))
        out, ext, file = out[~mask], ext[~mask], file[~mask]

    drop(~ext | (out["name"] == ""),
         f"not a video by data.extensions: skipped (listed in {KEY})")
    drop(out["path"].str.contains("\ufffd", regex=False),
         f"file name not UTF-8 in {KEY}: skipped (write the manifest as UTF-8; rename the file, e.g. convmv)")
    drop(file.str.startswith("."), "hidden file: skipped")
    names = pa.array(out["name"].array)
    names = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names
    ascending = len(names) < 2 or pc.all(pc.less(names[:-1], names[1:])).as_py()  # sorted, no repeats: no hashing
    if not ascending and len(pc.unique(names)) < len(out):  # both far cheaper than duplicated() when none is
        dup = out["name"].duplicated()
        kept = out.loc[dup, "name"].map(out[~dup].set_index("name")["path"])
        other = ~same_file(out.loc[dup, "path"], kept)  # the same file listed twice is no duplicate of itself
        issues.extend(zip(out.loc[dup, "name"][other], out.loc[dup, "path"][other],
                          ("duplicate id: kept " + kept.astype(str))[other]))
        out = out[~dup]
    return out.reset_index(drop=True)[COLUMNS], issues


def same_file(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Per row: do paths a and b name one file (after resolving "..", "." and symlinks)? Called on the
    rows of repeated ids only, so a manifest's other rows are never touched at parse time."""
    return np.array([os.path.realpath(x) == os.path.realpath(y) for x, y in zip(a, b)], bool)


def with_manifest(found, manifest: str | os.PathLike, exts: Iterable[str]):
    """`found` (an ingest.Scan of the data.videos folders) with the manifest's videos added: an id that
    both hold keeps the scanned path (an issue row). Returns `found`, its videos and issues extended."""
    rows, issues = read_manifest(manifest, exts)
    both = rows["name"].isin(found.videos["name"])
    kept = rows.loc[both, "name"].map(found.videos.drop_duplicates("name").set_index("name")["path"])
    # a row listing the very file a folder scan found is that video, not a duplicate of it: no issue row
    # (resolved only for the ids both hold, so parse time still never touches the manifest's other rows)
    other = ~same_file(rows.loc[both, "path"], kept)
    issues += list(zip(rows.loc[both, "name"][other], rows.loc[both, "path"][other], ("duplicate id: kept " + kept.astype(str))[other]))
    found.videos = pd.concat([found.videos, rows[~both]], ignore_index=True) if len(found.videos) else rows
    found.issues = [*found.issues, *issues]
    return found

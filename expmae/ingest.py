"""Register videos into append-only shards.

Shards, not videos, are the unit of work: one Snakemake job per shard and stage, so
the DAG stays O(shards) at 100k videos.

Sharding scheme (the registry, `results/ingest/registry.parquet`):
- Every video id (file stem) gets a shard id once, the first time it is seen, and keeps
  it forever. Newly found ids (sorted by name) are packed into NEW shards of at most
  `ingest.shard_size`; existing shards are never refilled, even when partly empty, so a
  shard's membership never changes and its outputs stay fresh.
- The registry also stores each file's size and mtime. A shard's fingerprint (hash of its
  members' name, path, size, mtime) is a Snakemake param of its ingest rule: replacing a
  video's bytes reruns that one shard only.
- Each shard's manifest also records each file's content hash (sha256), so byte copies and
  symlinks of one video are found (QC rows, expmae.labels), whatever their names.
- data.predict folders (expmae/predict): their videos get shards of their own, numbered apart
  (`p00000`, ...; registry column `role` = predict, else train), so they never join a training shard.
  An id found both there and in data.videos is kept as train (an issue row).
- Ids that disappear from disk stay registered (their QC rows then say "file missing");
  a duplicate id (same stem in two folders, or a.mp4 + a.avi) keeps the first path in
  folder order and is reported in `results/ingest/issues.tsv`.
- Files that are not regular (FIFO, device, socket, a symlink into /proc) are registered with size and
  mtime 0 and never read (ingest issue row `not a regular file`): they cannot hang a job or rerun a shard.
- On disk the registry is verified on every read and kept with a second copy; a corrupt or lost one stops
  the run naming the recovery command (expmae/registry.py), never a silent reassignment.
The main Snakemake process plans the registry in memory at every parse (a dry run shows the
jobs a real run will execute, and writes nothing); a real run persists it when it starts
(onstart). Remote/cluster job processes only read the persisted one.
"""
from __future__ import annotations

import argparse
import codecs
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from expmae import registry as _registry
from expmae.io import NotRegularFile, config_hash, file_sha256, kernel_path, write_table, write_text
from expmae.manifest import with_manifest
from expmae.registry import COLUMNS, ROLES, RegistryError  # ROLES: role -> shard id prefix (data.predict)

DEFAULT_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv")
NOT_REGULAR = "not a regular file: skipped (a FIFO, device, socket or /proc file; never read)"


def shard_id(i: int, prefix: str = "s") -> str:
    return f"{prefix}{i:05d}"


@dataclass
class Scan:
    videos: pd.DataFrame  # name, path, size, mtime_ns (first occurrence of each id)
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (name, path, reason)


def _utf8(s: str) -> bool:
    """False for a name holding non-UTF-8 bytes (os gives them as surrogates: Latin-1/GBK names from zips)."""
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def shown(s: str) -> str:
    """A name safe to write and print: non-UTF-8 bytes as \\xNN escapes."""
    return os.fsencode(s).decode("utf-8", "backslashreplace")


def scan(dirs: Sequence[str | os.PathLike], exts: Iterable[str] = DEFAULT_EXTS) -> Scan:
    """List video files under `dirs` (recursive). os.scandir keeps 100k files well under a second.
    Each real folder is walked once (a symlink loop or a second link to a folder is an issue row, not
    40 levels of copies); hidden files and names that are not UTF-8 are skipped with an issue row."""
    exts = {e.lower() for e in exts}
    rows: list[tuple[str, str, int, int]] = []
    seen: dict[str, str] = {}
    issues: list[tuple[str, str, str]] = []
    walked: dict[str, str] = {}  # real folder -> the path it was first walked as
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            issues.append(("", str(d), "video folder missing"))
            continue
        stack = [d]

        def rel(path: str, root: Path = d) -> str:  # QC rows never carry absolute paths
            return shown(os.path.relpath(path, root.parent))

        found: list[tuple[str, os.DirEntry]] = []
        while stack:
            cur = stack.pop()
            real = os.path.realpath(cur)
            if real in walked:
                issues.append(("", shown(str(cur)), f"folder scanned twice: already as {walked[real]} (symlink), skipped"))
                continue
            walked[real] = rel(str(cur))
            try:
                with os.scandir(cur) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=True):
                            stack.append(Path(e.path))
                        elif os.path.splitext(e.name)[1].lower() in exts:
                            found.append((e.path, e))
            except OSError as err:
                issues.append(("", shown(str(cur)), f"unreadable folder: {err.strerror or type(err).__name__}"))
        for path, e in sorted(found, key=lambda t: t[0]):
            name = os.path.splitext(e.name)[0]
            if not _utf8(path):
                issues.append((shown(name), shown(path), "file name not UTF-8: skipped (rename it, e.g. convmv)"))
                continue
            if e.name.startswith("."):
                issues.append((name, path, "hidden file: skipped"))
                continue
            if name in seen:
                issues.append((name, path, f"duplicate id: kept {seen[name]}"))
                continue
            try:
                st = e.stat(follow_symlinks=True)
            except OSError as err:
                issues.append((name, path, f"cannot stat: {err.strerror or type(err).__name__}"))
                continue
            seen[name] = rel(path)
            if not stat.S_ISREG(st.st_mode) or (e.is_symlink() and kernel_path(path)):
                # FIFO, device, socket, /proc file: never read (it can block or never end), and registered with
                # fixed size/mtime so its shard's fingerprint is stable (/proc/self/mem has a new mtime per reader)
                issues.append((name, path, NOT_REGULAR))
                rows.append((name, path, 0, 0))
                continue
            rows.append((name, path, st.st_size, st.st_mtime_ns))
    df = pd.DataFrame(rows, columns=["name", "path", "size", "mtime_ns"])
    return Scan(df.astype({"size": "int64", "mtime_ns": "int64"}), issues)


def check_data(data: dict) -> list[str]:
    """Errors in the config's data: section, each naming its key (empty = fine). A configured folder or
    file that does not exist is an error, not a silent skip; unset optional files ("") are fine."""
    if (root := str(data.get("root") or "")) and not Path(root).expanduser().is_dir():  # one line, not one per path
        return [f"config key data.root: {root} does not exist: set it to the folder that holds the data (the preset"
                " names its folders and files relative to it)"]
    errors = []
    if not data.get("videos") and not data.get("manifest"):
        errors.append("config key data.videos is not set: list your video folders, or set data.manifest "
                      "(or pass --configfile workflow/presets/demo.yaml for the demo data)")
    for key in ("videos", "predict"):
        for d in data.get(key) or []:
            if not Path(d).is_dir():
                errors.append(f"config key data.{key}: folder {d!r} does not exist")
    if data.get("manifest") and not Path(data["manifest"]).is_file():  # its rows are never stat'ed at parse time
        errors.append(f"config key data.manifest: file {data['manifest']!r} does not exist")
    if not data.get("labels"):
        errors.append("config key data.labels is not set: the label CSV (name,discrete[,valence])")
    if data.get("encoding"):
        try:
            codecs.lookup(data["encoding"])
        except LookupError:
            errors.append(f"config key data.encoding: unknown encoding {data['encoding']!r} (e.g. cp1252, latin-1, big5)")
    for key in ("labels", "transcripts", "test", "test_labels"):
        if data.get(key) and not Path(data[key]).is_file():
            there = Path(data[key]).exists()  # a FIFO or device would block or never end when read
            errors.append(f"config key data.{key}: file {data[key]!r} " + ("is not a regular file" if there else "does not exist"))
    rel = [str(v) for v in [*(data.get("videos") or []), *(data.get(k) for k in ("labels", "transcripts", "test",
           "test_labels"))] if v and not Path(v).expanduser().is_absolute() and not Path(v).exists()]
    if not root and len(rel) >= 2 and len(rel) == sum(e.endswith("does not exist") for e in errors):  # a preset
        return [f"config key data.root is not set, and the relative data paths ({', '.join(map(repr, rel[:3]))}) do not "
                f"exist in {Path.cwd()}: a preset needs data.root: put `data: {{root: /path/to/release}}` in a my.yaml "
                "(expmae init writes one) and pass it after the preset; or run from the folder they are relative to"]
    return errors


def assign(registry: pd.DataFrame, found: pd.DataFrame, shard_size: int, role: str = "train") -> pd.DataFrame:
    """Return the new registry: known ids keep their shard (path/size/mtime refreshed),
    unknown ids go to new shards of `role` numbered after the highest existing one of that role."""
    if shard_size < 1:
        raise ValueError("config key ingest.shard_size must be >= 1")
    registry = registry if "role" in registry or not len(registry) else registry.assign(role="train")  # older registries
    reg = registry.set_index("name") if len(registry) else pd.DataFrame(columns=COLUMNS).set_index("name")
    fnd = found.set_index("name")
    pos = fnd.index.get_indexer(reg.index)  # one hash join (a million rows: .loc by labels is ~10x slower)
    seen = pos >= 0
    for col in ("path", "size", "mtime_ns"):  # known ids: path / size / mtime refreshed
        if seen.any():
            reg[col] = np.where(seen, fnd[col].to_numpy()[np.where(seen, pos, 0)], reg[col].to_numpy())
    is_new = np.ones(len(fnd), bool)
    is_new[pos[seen]] = False
    new = fnd[is_new].sort_index()
    own = reg.loc[reg["role"] == role, "shard"] if len(reg) else reg["shard"]
    next_id = 0 if own.empty else int(pd.Series(own.unique()).str[1:].astype(int).max()) + 1
    if len(new):
        new = new.copy()
        ids = pd.Series(next_id + np.arange(len(new)) // shard_size).astype(str).str.zfill(5)  # = shard_id, vectorised
        new["shard"] = (ROLES[role] + ids).to_numpy()
        new["role"] = role
        reg = pd.concat([reg, new[reg.columns.tolist()]])
    out = reg.reset_index()[COLUMNS]
    out = out.astype({"name": str, "path": str, "shard": str, "size": "int64", "mtime_ns": "int64", "role": str})
    # a saved registry is sorted already (this sort made it): nothing new, nothing to sort (1.1M rows: seconds)
    return out.sort_values(["shard", "name"], ignore_index=True) if len(new) or not len(registry) else out


def role_changes(old: pd.DataFrame, train: pd.DataFrame, predict: pd.DataFrame | None) -> list[tuple[str, str, str]]:
    """Issue rows for ids that moved between data.videos and data.predict since they were registered: a shard's
    membership never changes (append-only), so such a video keeps its first role; said, never silent."""
    from expmae.shard_hash import is_in

    rows = []
    for found, was, why in ((train, "predict", "registered from data.predict: stays a predict video, never trains"),
                            (predict, "train", "registered from data.videos: stays a training video, not predicted")):
        prev = old.loc[old["role"].eq(was).to_numpy(), "name"] if len(old) else ()
        if found is None or not len(found) or not len(prev):  # without data.predict: nothing to look up
            continue
        hit = found[is_in(found["name"], prev)]
        rows += [(n, p, f"{why} (rename the file to register it anew)")
                 for n, p in hit[["name", "path"]].itertuples(index=False)]
    return rows


def plan_registry(results: str | os.PathLike, dirs: Sequence[str], exts: Iterable[str],
                  shard_size: int, predict: Sequence[str] = (), manifest: str = "") -> tuple[pd.DataFrame, str]:
    """Scan and assign in memory -> (registry, issues.tsv text). Writes nothing: a dry run,
    `--lint` or `--report` reads the workflow without changing results/ (save_registry persists).
    `predict`: the data.predict folders, registered with role predict (their own p-shards).
    `manifest`: data.manifest (expmae/manifest.py), read beside the scanned folders, never stat'ed."""
    exts = list(exts)
    s = scan(dirs, exts)
    if manifest:  # its rows join the scanned ones (an id found by both keeps the scanned path)
        s = with_manifest(s, manifest, exts)
    old = read_registry(results)
    new = assign(old, s.videos, shard_size)
    ps = scan(predict, exts) if predict else None
    if ps is not None:  # data.predict: an id also in data.videos stays a training video
        both = ps.videos["name"].isin(s.videos["name"])
        s.issues += [i for i in ps.issues if i not in s.issues]
        s.issues += [(n, p, "duplicate id: in data.videos and data.predict, kept as train")
                     for n, p in ps.videos.loc[both, ["name", "path"]].itertuples(index=False)]
        ps.videos = ps.videos[~both]
        new = assign(new, ps.videos, shard_size, role="predict")
    s.issues += role_changes(old, s.videos, ps.videos if ps is not None else None)
    issues = pd.DataFrame(s.issues, columns=["name", "path", "reason"]).to_csv(sep="\t", index=False)
    return new, issues


def read_registry(results: str | os.PathLike) -> pd.DataFrame:
    """The persisted registry, verified (page CRCs, content digest, invariants: expmae/registry.py); empty
    when nothing was ever registered. RegistryError (a ValueError) names the file and the recovery command."""
    return _registry.read(results)


def save_registry(results: str | os.PathLike, registry: pd.DataFrame, issues: str) -> None:
    """Persist a planned registry and its issues list, each only when it changed. The workflow calls
    this when a real run starts (onstart), so the assignment a dry run shows is the one that is kept."""
    old = read_registry(results)
    if len(old) != len(registry) or not old.astype(str).reset_index(drop=True).equals(registry.astype(str)) \
            or not _registry.paths(results)[1].exists():  # the copy recovery falls back on
        _registry.write(results, registry)
    issues_path = Path(results) / "ingest" / "issues.tsv"
    if not issues_path.exists() or issues_path.read_text(encoding="utf-8") != issues:
        write_text(issues_path, issues)


def update_registry(results: str | os.PathLike, dirs: Sequence[str], exts: Iterable[str],
                    shard_size: int) -> pd.DataFrame:
    """plan_registry + save_registry: scan, assign and persist at once."""
    registry, issues = plan_registry(results, dirs, exts, shard_size)
    save_registry(results, registry, issues)
    return registry


def fingerprints(registry: pd.DataFrame) -> dict[str, str]:
    """shard -> hash of its members; a Snakemake param, so a changed member reruns the shard.
    The same hashes as one config_hash per groupby group (members in registry order), vectorised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from expmae.shard_hash import by_shard, hash_json_rows, json_strings, shard_slices

    reg = by_shard(registry)
    name, path = json_strings(reg["name"].astype(str)), json_strings(reg["path"].astype(str))
    if name is None or path is None:  # a name or path json.dumps escapes: let it
        rows = reg[["name", "path", "size", "mtime_ns"]].values.tolist()
        return {shard: config_hash(rows[a:b]) for shard, a, b in shard_slices(reg["shard"])}
    num = [pc.cast(pa.array(reg[c].to_numpy(np.int64)), pa.string()) for c in ("size", "mtime_ns")]
    return hash_json_rows(reg["shard"], pc.binary_join_element_wise("[", name, ", ", path, ", ", num[0], ", ", num[1], "]", ""))


def _stat(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file, (-1, -1) when it is gone or unreadable, (0, 0) when it is not a regular
    file (a data.manifest row naming a FIFO or /proc file: as scan registers it)."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    if not stat.S_ISREG(st.st_mode) or kernel_path(path):
        return 0, 0
    return st.st_size, st.st_mtime_ns


def content_hash(path: str) -> str:
    """sha256 of the file's bytes ("" when unreadable or not a regular file: the stages give that video its
    own QC row). io.file_sha256 never opens a FIFO or device and reads no more than the file's size."""
    try:
        return file_sha256(path)
    except NotRegularFile:
        print(f"{shown(path)}: {NOT_REGULAR}")
        return ""
    except OSError:
        return ""


def write_shard(registry_path: str | os.PathLike, shard: str, out: str | os.PathLike,
                hash_content: bool = True) -> pd.DataFrame:
    """The shard's manifest: name, path, size, mtime_ns, sha256 (content hash: a byte copy or a
    symlink of a video registered twice is found by the inputs check; "" with hash_content=False)."""
    try:
        reg = _registry.load(Path(registry_path))
    except RegistryError as err:
        raise SystemExit(f"{registry_path} is corrupt ({err}): {_registry.recover_hint(Path(registry_path).parent.parent)}")
    members = reg[reg["shard"] == shard].sort_values("name", ignore_index=True)
    if members.empty:
        raise SystemExit(f"shard {shard} is not in {registry_path}")
    unknown = members["size"] < 0  # data.manifest rows without size / mtime: the job stats them, parse time never does
    if unknown.any():
        st = [_stat(p) for p in members.loc[unknown, "path"]]
        members.loc[unknown, "size"] = [t[0] for t in st]
        members.loc[unknown, "mtime_ns"] = [t[1] for t in st]
    for name in members.loc[members["size"] < 0, "name"]:  # gone: the face / audio stages make its QC row
        print(f"{shard}: {name}: file missing")
    members["sha256"] = [content_hash(p) if hash_content else "" for p in members["path"]]
    write_table(out, members[["name", "path", "size", "mtime_ns", "sha256"]], meta={"shard": shard})
    return members


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write one shard's manifest from the registry.")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--shard", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-hash", action="store_true", help="skip content hashing (no duplicate-content check)")
    a = ap.parse_args(argv)
    m = write_shard(a.registry, a.shard, a.out, hash_content=not a.no_hash)
    print(f"{a.shard}: {len(m)} videos -> {a.out}")


if __name__ == "__main__":
    main()

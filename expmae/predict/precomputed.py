"""Feature sets computed elsewhere (the `folder` extractor, expmae.features.folder) in a bundle and at predict time.

A folder holds the vectors of the videos it was made for, so a bundle cannot compute such a set for other videos.
The bundle records every set as computable or not and, for one that is not, where its vectors came from
(`source`): the folder (or table), the vector size, the number of files and one hash over every file the training
tables read (their metadata's files_sha256, the union over the shards; for one shard it equals the shard's
files_list_sha256).

`expmae predict` reads the new videos' vectors of such a set from a folder the user names
(`--features-folder SET=PATH`), with the same reader and the bundle's key / name column / size limit, and refuses
a folder whose vectors have another size than the bundle's. Without the flag it stops before any work with one
line naming the set, the folder its vectors came from and the flag. It never falls back to the other sets: the
final model was selected with this set among its inputs, and a prediction without it would be another model's.
A new video without a vector in the folder is a QC row (`features:<set>: why`) and is predicted from the
modalities it has, as the workflow's predict job does.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

FLAG = "--features-folder"


def computable(params: dict[str, Any]) -> bool:
    """False for an extractor that reads vectors computed elsewhere instead of computing them from the video."""
    import expmae.features  # noqa: F401 — registers every extractor
    from expmae.features.registry import spec

    cls, _ = spec(str(params["extractor"]))
    return not getattr(cls, "precomputed", False)


def entry_computable(entry: dict[str, Any]) -> bool:
    """A bundle.json features entry: its record, or (a bundle written before the record existed) its extractor."""
    return bool(entry["computable"]) if "computable" in entry else computable(entry["params"])


def source_record(fs: str, tables: Sequence[str]) -> dict[str, Any]:
    """The provenance of a set computed elsewhere, from the metadata of the tables it was trained on."""
    from expmae.features.folder import files_list_sha256
    from expmae.io import read_meta

    if not tables:
        raise SystemExit(f"feature set {fs} was computed elsewhere (extractor folder): give its feature tables "
                         f"(--tables {fs}=shard.parquet,...) so the bundle records where its vectors came from")
    metas = [read_meta(t) for t in tables]
    sources = sorted({str(m.get("source", "")) for m in metas})
    dims = sorted({int(m.get("dim", 0)) for m in metas})
    if len(sources) != 1 or len(dims) != 1 or not sources[0]:
        raise SystemExit(f"feature set {fs}: its tables {list(tables)[:3]}... read {sources} with vector sizes {dims} "
                         "(one folder, one size expected): rerun the set's extract jobs")
    files: dict[str, str] = {}
    for m in metas:
        files.update(m.get("files_sha256") or {})
    return {"path": sources[0], "dims": dims[0], "n_files": len(files), "files_list_sha256": files_list_sha256(files)}


def parse_folders(items: Sequence[str]) -> dict[str, str]:
    """['SET=PATH', ...] -> {SET: PATH}."""
    out: dict[str, str] = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{FLAG} {it!r}: expected SET=FOLDER (a feature set of the bundle computed elsewhere "
                             "and the folder, or Parquet/CSV table, of the new videos' vectors)")
        out[name] = path
    return out


def folders_for(info: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """Set -> folder for every set of the bundle computed elsewhere; one line for a set left without one or a flag
    naming a set the bundle computes itself (or does not read)."""
    feats = info["features"]
    elsewhere = [fs for fs, e in feats.items() if not entry_computable(e)]
    for fs, path in given.items():
        if fs not in feats:
            raise SystemExit(f"{FLAG} {fs}={path}: the bundle reads no feature set {fs} (it reads {list(feats)})")
        if fs not in elsewhere:
            raise SystemExit(f"{FLAG} {fs}={path}: the bundle computes {fs} from the videos itself; the flag is for "
                             f"sets computed elsewhere ({', '.join(elsewhere) or 'this bundle has none'})")
    for fs in elsewhere:
        if fs not in given:
            src = feats[fs].get("source") or {}
            where = src.get("path") or feats[fs]["params"].get("path") or "a folder"
            raise SystemExit(f"feature set {fs} of this bundle was computed elsewhere (its vectors were read from "
                             f"{where}), so it cannot be computed for new videos: give the folder of their {fs} "
                             f"vectors with {FLAG} {fs}=FOLDER")
    return {fs: given[fs] for fs in elsewhere}


def read_set(fs: str, entry: dict[str, Any], folder: str, names: list[str], out: Path, qc_out: Path) -> int:
    """The vectors of `names` from the user's folder -> a feature table at `out` and its QC table at `qc_out`, as
    the folder extractor writes them. A folder whose vectors have another size than the bundle's is refused.
    -> how many videos have a vector."""
    from expmae.features.registry import create
    from expmae.io import write_features, write_table

    src = entry.get("source") or {}
    want = int(src.get("dims") or entry["params"].get("dims") or 0)
    params = {k: v for k, v in entry["params"].items() if k not in ("extractor", "device", "column")}
    ext = create("folder", {**params, "path": folder, "dims": want}, f"features.{fs}")
    ext.label = f"{FLAG} {fs}={folder}"
    ext.load()
    vecs, why, files = ext.collect(names)
    sizes = Counter(len(v) for v in vecs.values())
    if want and sizes and sizes.most_common(1)[0][0] != want:
        got, n = sizes.most_common(1)[0]
        raise SystemExit(f"{FLAG} {fs}={folder}: its vectors are {got} wide ({n} of {len(vecs)} read), the bundle's "
                         f"{fs} was trained on {want}-wide vectors (from {src.get('path', 'its folder')}): name a "
                         "folder of the same features")
    X, mask, qc, meta = ext.table(names, vecs, why, files, want or (sizes.most_common(1)[0][0] if sizes else 0))
    meta.update(extractor=fs, registry_name="folder", model_id=ext.model_id, params=entry["params"], bundle_source=src)
    write_features(out, names, X, mask, meta)
    write_table(qc_out, qc)
    if not mask.any() and names:
        print(f"[predict] {fs}: none of the {len(names)} videos has a vector in {folder} (QC rows say why)",
              file=sys.stderr, flush=True)
    return int(mask.sum())


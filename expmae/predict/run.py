"""Standalone prediction with a bundle: videos in, one CSV out, no results/ folder and no Snakemake.

The same stages as the workflow's per-shard jobs, run in this process over all the given videos as ONE
shard: the face stage (expmae.faces.extract_shard, the bundle's face settings), ASR where a text set
needs it and the transcript CSV has no row, every feature set the model reads (expmae.features.run.extract
with the bundle's job params and expMAE encoder: each model loaded once, items batched as in the
workflow), then the model (expmae.predict.model). A set computed elsewhere is read from the folder the
user names for it (--features-folder SET=PATH; expmae.predict.precomputed), and without one nothing runs.
Bad input never stops it: a video that cannot be decoded, has no face, no audio, no text or no vector in
such a folder is predicted from what it has (or the class prior) and its `qc` column says why. Work files
go to a temporary folder (or --work DIR, kept).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from expmae.predict.bundle import model_refs, verify, weights_sha256, _package_dir


def log(msg: str) -> None:
    print(f"[predict] {msg}", file=sys.stderr, flush=True)


def check_models(info: dict, with_asr: bool) -> None:
    """Refuse at once when a model the bundle's extractors name is not on this machine (naming it and its
    config key), or is a different file than the one the bundle was trained with (sha256 recorded)."""
    feats = {fs: e["params"] for fs, e in info["features"].items() if not e.get("encoder")}
    for r in model_refs(feats, info.get("asr") if with_asr else None):
        if not r.present:
            raise SystemExit(f"model {r.ref!r} (config key {r.key}) is not on this machine: {r.hint}")
        fs = r.key.split(".")[1]
        want = info["features"].get(fs, {}).get("weights_sha256") if r.key.startswith("features.") else None
        if want and weights_sha256(_package_dir(r.where)) != want:
            raise SystemExit(f"model {r.ref!r} (config key {r.key}) at {r.where} is not the one the bundle was "
                             "trained with (sha256 of its weights differ)")


def collect(inputs: list[str], exts: list[str]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Video files and folders (scanned recursively, expmae.ingest.scan) -> manifest rows (name, path) and
    QC rows (name, reason) for inputs that are no video (missing path, duplicate id)."""
    from expmae.ingest import DEFAULT_EXTS, scan

    exts = [e.lower() for e in (exts or DEFAULT_EXTS)]
    rows, issues, seen = [], [], set()
    folders = [p for p in inputs if Path(p).is_dir()]
    s = scan(folders, exts) if folders else None
    found = list(zip(s.videos["name"], s.videos["path"])) if s is not None else []
    issues += [(n or Path(p).name, f"ingest: {r}") for n, p, r in (s.issues if s is not None else [])]
    for p in inputs:
        if Path(p).is_dir():
            continue
        name = Path(p).stem
        found.append((name, str(p)))
        if not Path(p).exists():
            issues.append((name, "faces: file missing"))
    for name, path in found:
        if name in seen:
            issues.append((name, f"ingest: duplicate id: kept the first, not {Path(path).name}"))
            continue
        seen.add(name)
        rows.append((name, os.path.abspath(path)))
    return pd.DataFrame(rows, columns=["name", "path"]), issues


def transcripts_for(info: dict, manifest_path: str, transcripts: str, work: Path) -> list[str]:
    """ASR parquet(s) for the videos without a transcript CSV row (bundle's asr settings), [] when none."""
    from expmae.features import media
    from expmae.features.asr import needs_asr

    asr = info.get("asr") or {}
    csv, _ = media.read_transcripts(transcripts or None, info["transcript_column"], info.get("encoding", ""))
    names = pd.read_parquet(manifest_path)["name"].astype(str).tolist()
    if not needs_asr(asr.get("enabled", "auto"), names, csv):
        return []
    from expmae.features.asr import run

    out = str(work / "asr.parquet")
    t0 = time.time()
    run(manifest_path, transcripts or "", info["transcript_column"], out, asr)
    log(f"asr: {time.time() - t0:.1f} s")
    return [out]


def predict_videos(bundle: str, inputs: list[str], out: str | None = None, transcripts: str = "",
                   work: str | None = None, threads: int = 2, model_sha256: str = "",
                   features_folders: dict[str, str] | None = None) -> pd.DataFrame:
    """The bundle's final model on these videos -> the prediction table (expmae.predict.table), written to `out`.
    `model_sha256`: refuse the bundle unless its model identity is this one (bundle.verify). `features_folders`:
    set -> the folder of the videos' vectors, for every set of the bundle computed elsewhere."""
    from expmae.predict.precomputed import folders_for
    from expmae.predict.table import predict_all, qc_reasons

    t_start = time.time()
    info = verify(bundle, model_sha256)
    log(f"bundle {bundle}: model_sha256 {info['model_sha256']}")
    needs_text = bool(info.get("text_sets"))
    check_models(info, needs_text)
    folders = folders_for(info, features_folders or {})  # before any work: a set nobody can compute stops here
    manifest, issues = collect(inputs, info.get("extensions") or [])
    log(f"{len(manifest)} videos, bundle {info['final']['model']} ({info['final']['head']}), "
        f"feature sets {list(info['features'])}")
    if manifest.empty:  # nothing to predict: an empty table with the columns, not an error
        cols = ["name", "label", *(f"prob_{c}" for c in info["classes"]), "valence", "missing", "qc"]
        table = pd.DataFrame([(n, "", *[float("nan")] * (len(cols) - 4), "", r) for n, r in issues], columns=cols)
        if out:
            from expmae.io import write_text

            write_text(out, table.to_csv(index=False))
        log(f"no videos found in {inputs}")
        return table
    tmp = None if work else tempfile.TemporaryDirectory(prefix="expmae-predict-")
    wd = Path(work or tmp.name)
    try:
        table = _run(bundle, info, manifest, transcripts, wd, threads, predict_all, qc_reasons, folders)
    finally:
        if tmp is not None:
            tmp.cleanup()
    extra = dict(issues)
    table["qc"] = ["; ".join(x for x in (extra.get(n, ""), q) if x) for n, q in zip(table["name"], table["qc"])]
    if out:
        from expmae.io import write_text

        write_text(out, table.to_csv(index=False))
    log(f"{len(table)} videos in {time.time() - t_start:.1f} s -> {out or '(not written)'}")
    return table


def _run(bundle, info, manifest, transcripts, wd, threads, predict_all, qc_reasons, folders) -> pd.DataFrame:
    from expmae.faces import extract_shard
    from expmae.features.run import extract
    from expmae.io import write_table
    from expmae.predict.model import Features
    from expmae.predict.precomputed import read_set

    wd.mkdir(parents=True, exist_ok=True)
    mpath = str(wd / "manifest.parquet")
    write_table(mpath, manifest.assign(size=0, mtime_ns=0, sha256=""))
    faces = wd / "faces"
    t0 = time.time()
    visual = [fs for fs in info["features"] if fs not in info["text_sets"] + info["audio_sets"] and fs not in folders]
    if visual and len(manifest):
        extract_shard(manifest, faces, info["faces"], threads=threads)
        log(f"faces: {time.time() - t0:.1f} s")
    asr = transcripts_for(info, mpath, transcripts, wd) if info["text_sets"] and len(manifest) else []
    paths, audio_qc, folder_qc = {}, [], []
    for i, (fs, e) in enumerate(info["features"].items()):
        t1 = time.time()
        dst = wd / "features" / f"{fs}.parquet"
        if fs in folders:  # computed elsewhere: the user's folder, never the bundle's extractor
            qc_path = wd / "features" / fs / "videos.qc.parquet"  # <set>/: the workflow's layout, its stage name
            qc_path.parent.mkdir(parents=True, exist_ok=True)
            n = read_set(fs, e, folders[fs], manifest["name"].astype(str).tolist(), dst, qc_path)
            paths[fs] = [str(dst)]
            folder_qc.append(str(qc_path))
            log(f"feature {i + 1}/{len(info['features'])} {fs}: {n}/{len(manifest)} vectors from {folders[fs]}")
            continue
        enc = str(Path(bundle) / e["encoder"]) if e.get("encoder") else None
        extract(fs, dict(e["params"]), mpath, str(dst), faces=str(faces) if fs in visual else None,
                transcripts=transcripts or None, asr=asr, encoding=info.get("encoding", ""),
                qc_out=str(wd / "features" / f"{fs}.qc.parquet"), encoder=enc, rebuild_encoder=False)
        paths[fs] = [str(dst)]
        if fs in info["audio_sets"] and not audio_qc:
            audio_qc = [str(wd / "features" / f"{fs}.qc.parquet")]
        log(f"feature {i + 1}/{len(info['features'])} {fs}: {time.time() - t1:.1f} s")
    feats = Features.read(paths)
    text = [str(wd / "features" / f"{fs}.parquet") for fs in info["text_sets"][:1]]
    qc = qc_reasons([str(faces / "qc.parquet")] if visual and len(manifest) else [], audio_qc, text, asr, folder_qc)
    return predict_all(bundle, info, feats, qc)

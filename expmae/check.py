"""Preflight: read the config and the data, run nothing, print one table of what a run would meet.

    python -m expmae check --configfile workflow/presets/mer2023.yaml my.yaml      (make check: the demo)

Videos per folder and split, labels per class and per feature set (whether classify.folds fits), fold groups
(data.groups, identical bytes), label, test and track (data.tracks) names without a video, transcript coverage
and encoding, duplicate ids, misspelt extractors and feature sets, models present or missing (with the config
key), the GPU, Snakemake's job count per rule with a rough time. Exit code 1 when anything would make the run
wrong (an `error` row) or the config does not load (a line per key); `warn` rows are worth reading, a run goes on.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from expmae import ingest, tracks
from expmae.cli.preflight import feature_set_rows  # labeled videos per class per feature set, as training counts
from expmae.features.registry import name_problems

# Per-video cost of the per-video stages (faces + features), core-seconds, measured on the demo's small
# clips by benchmarks/bench_incremental.py (67.3 s for 340 videos on 2 cores). Real 720p-1080p clips cost
# several times more (benchmarks/bench_faces.py measures them): the estimate is a floor, not a promise.
DEMO_CORE_S_PER_VIDEO = 0.4


@dataclass
class Row:
    level: str   # ok | warn | error | info
    item: str
    value: str


def _read(path: str, key: str, rows: list[Row], need: tuple[str, ...], encoding: str = "") -> pd.DataFrame | None:
    """A CSV of the data: section, its encoding and columns checked; None when unusable."""
    from expmae.labels import read_csv

    if not Path(path).is_file():  # ingest.check_data has a row for it already
        return None
    df, issues = read_csv(path, encoding, key)
    used, exact = df.attrs.get("encoding", ""), not any("bytes replaced" in i["reason"] for i in issues)
    if not exact:
        rows.append(Row("error", key, f"{path}: no encoding tried decodes it (bytes would be replaced); "
                        "save it as UTF-8 or set data.encoding"))
    elif used and used not in ("utf-8", "utf-8-sig"):
        rows.append(Row("info", key, f"{Path(path).name}: decoded as {used}"))
    for i in issues:
        if "bytes replaced" not in i["reason"]:
            rows.append(Row("error", key, i["reason"]))
    if not len(df.columns):
        return None
    missing = [c for c in need if c not in df.columns]
    if missing:
        rows.append(Row("error", key, f"{path}: no column {missing} ({_header(df)})"))
        return None
    return df


def _header(df: pd.DataFrame) -> str:
    """The columns a CSV was read with, shown only when they look like a header: the first line of a file
    that is not a CSV (a config key pointed at /proc/self/environ, a key file) is never echoed."""
    cols = [str(c) for c in df.columns]
    if len(cols) >= 2 and all(re.fullmatch(r"[A-Za-z_][\w .-]{0,39}", c) for c in cols):
        return f"columns: {cols[:8]}"
    return f"its first line is not a CSV header naming them ({len(cols)} field(s); not shown)"


def _regular(path: str) -> bool:
    """False for a FIFO, device, socket or /proc file (a path that is gone is counted elsewhere)."""
    from expmae.io import kernel_path

    return not os.path.exists(path) or (os.path.isfile(path) and not kernel_path(path))


def check_videos(data: dict[str, Any], rows: list[Row]) -> pd.DataFrame:
    dirs = [d for d in data.get("videos") or [] if Path(d).is_dir()]
    exts = data.get("extensions") or ingest.DEFAULT_EXTS
    found = ingest.scan(dirs, exts) if dirs else None
    if data.get("manifest") and Path(data["manifest"]).is_file():  # data.manifest: read as the workflow does
        from expmae.manifest import ManifestError, with_manifest

        try:
            found = with_manifest(found or ingest.scan([], exts), data["manifest"], exts)
            sample = found.videos["path"].tail(1000)  # the manifest's rows come last; a sample, never a million stats
            gone = [p for p in sample if not Path(p).exists()]
            special = [p for p in sample if not _regular(p)]
            if special:
                rows.append(Row("warn", "not a regular file", f"{len(special)} of the last {len(sample)} paths of "
                                f"{data['manifest']} (first: {special[0]}): never read, a QC row"))
            rows.append(Row("warn" if gone else "ok", "data.manifest",
                            f"{data['manifest']}: {len(found.videos)} videos in all"
                            + (f"; {len(gone)} of the last {len(sample)} paths do not exist "
                               f"(first: {gone[0]}): 'file missing' QC rows" if gone else "")))
        except ManifestError as err:
            rows.append(Row("error", "data.manifest", str(err)))
    df = found.videos if found is not None else pd.DataFrame(columns=["name", "path"])
    for d in data.get("videos") or []:
        if not Path(d).is_dir():
            continue
        prefix = os.path.join(str(d), "")
        n = int(df["path"].astype(str).str.startswith(prefix).sum()) if len(df) else 0
        rows.append(Row("ok" if n else "warn", "data.videos", f"{d}: {n} videos"))
    issues = [" ".join(map(str, i)) for i in (found.issues if found is not None else [])]  # (name, path, reason)
    dup = [i for i in issues if "duplicate" in i.lower()]
    if dup:
        rows.append(Row("warn", "duplicate ids", f"{len(dup)} (first: {dup[0][:150]}); the first path wins"))
    special = [f"{n} ({p})" for n, p, why in (found.issues if found is not None else []) if why == ingest.NOT_REGULAR]
    if special:
        rows.append(Row("warn", "not a regular file", f"{len(special)} (first: {special[0][:150]}): FIFO, device, "
                        "socket or /proc file; never read, a QC row"))
    other = [i for i in issues if i not in dup and ingest.NOT_REGULAR not in i]
    if other:
        rows.append(Row("warn", "ingest", f"{len(other)} other file issues (first: {other[0][:150]})"))
    return df


def check_predict(data: dict[str, Any], train: set[str], rows: list[Row]) -> None:
    """data.predict folders (expmae/predict): videos found, and ids that are training videos too."""
    for d in data.get("predict") or []:
        if not Path(d).is_dir():  # ingest.check_data has an error row for it
            continue
        found = ingest.scan([d], data.get("extensions") or ingest.DEFAULT_EXTS)
        names = set(found.videos["name"].astype(str))
        both = sorted(names & train)
        rows.append(Row("warn" if both or not names else "ok", "data.predict",
                        f"{d}: {len(names)} videos to predict" + (f"; {len(both)} also in data.videos "
                        f"(first: {both[0]}): they stay training videos, not predicted" if both else "")))


def check_labels(cfg: dict[str, Any], names: set[str], rows: list[Row]) -> set[str]:
    data, classes, folds = cfg["data"], list(cfg["classes"]), int(cfg["classify"]["folds"])
    enc = str(data.get("encoding") or "")
    lab = _read(data["labels"], "data.labels", rows, ("name", "discrete"), enc) if data.get("labels") else None
    if lab is None:
        return set()
    lab = lab.drop_duplicates("name")
    unknown = lab[~lab["discrete"].isin(classes)]
    if len(unknown):
        rows.append(Row("warn", "data.labels", f"{len(unknown)} rows with a label not in classes "
                        f"({sorted(unknown['discrete'].unique())[:5]}): left out"))
    lab = lab[lab["discrete"].isin(classes)]
    no_video = lab[~lab["name"].isin(names)]
    if len(no_video):
        rows.append(Row("warn" if len(no_video) < len(lab) else "error", "labels without a video",
                        f"{len(no_video)} of {len(lab)} (first: {', '.join(no_video['name'].head(3))})"))
    used = lab[lab["name"].isin(names)]
    counts = used["discrete"].value_counts().reindex(classes, fill_value=0)
    rows.append(Row("info", "labels per class", ", ".join(f"{c} {n}" for c, n in counts.items())))
    if (empty := [c for c, n in counts.items() if n == 0]) and len(empty) < len(classes):
        rows.append(Row("warn", "labels per class", f"no labeled video of {', '.join(empty)}: never predicted "
                        "(the classifiers learn the other classes); label some, or drop it from classes"))
    if "valence" not in lab.columns:
        rows.append(Row("warn", "data.labels", "no valence column: valence is not learned, and the submission's "
                        "valence column is 0 for every video"))
    present = counts[counts > 0]
    if len(present) < 2:
        rows.append(Row("error", "classify.folds", "fewer than 2 classes have labeled videos: nothing to train"))
    elif int(present.min()) < folds:
        rows.append(Row("error", "classify.folds", f"{folds} folds need >= {folds} labeled videos per class; "
                        f"smallest: {present.idxmin()} {int(present.min())}. Lower classify.folds or add labels"))
    else:  # per feature set: feature_set_rows (a clip without audio has no audio data)
        rows.append(Row("ok", "classify.folds", f"{folds} folds fit (smallest class: {int(present.min())})"))
    return set(used["name"])


def check_test(data: dict[str, Any], names: set[str], rows: list[Row]) -> set[str]:
    if not data.get("test"):
        rows.append(Row("info", "data.test", "no test split configured"))
        return set()
    enc = str(data.get("encoding") or "")
    test = _read(data["test"], "data.test", rows, ("name",), enc)
    if test is None:
        return set()
    tnames = set(test["name"])
    missing = sorted(tnames - names)
    rows.append(Row("warn" if missing else "ok", "test names without a video",
                    f"{len(missing)} of {len(tnames)}" + (f" (first: {', '.join(missing[:3])}); "
                                                          "they get flagged submission rows" if missing else "")))
    if data.get("test_labels"):
        _read(data["test_labels"], "data.test_labels", rows, ("name", "discrete"), enc)
    return tnames & names


def check_groups(cfg: dict[str, Any], names: set[str], labeled: set[str], test: set[str], rows: list[Row]) -> None:
    """Fold groups (expmae.train.folds): labeled videos tied by data.groups, the label CSV's group column or
    identical bytes (the ingest manifests of an earlier run; none before ingest) share a fold. Says how many
    groups, the largest, whether classify.folds still fits each class, labeled copies of test clips, and the
    QC rows of data.groups (by kind)."""
    from expmae.labels import read_labels
    from expmae.train import folds as fg

    data, classes, k = cfg["data"], list(cfg["classes"]), int(cfg["classify"]["folds"])
    enc, groups_csv = str(data.get("encoding") or ""), str(data.get("groups") or "")
    if groups_csv and not Path(groups_csv).is_file():
        rows.append(Row("error", "data.groups", f"file {groups_csv!r} does not exist"))
        return
    if not labeled:
        return
    lab = read_labels(data["labels"], classes, enc)[0]
    lab = lab[lab["name"].isin(labeled)].sort_values("name", ignore_index=True)
    manifests = sorted(str(p) for p in (Path(cfg.get("results") or "results") / "ingest").glob("s[0-9]*.parquet"))
    everyone = sorted(names)
    gid, issues = fg.fold_groups(everyone, lab, groups_csv, manifests, enc)
    groups = pd.Series(dict(zip(everyone, gid)))[lab["name"]].to_numpy()
    kinds: dict[str, list[str]] = {}
    for i in issues:
        kinds.setdefault(i["reason"].split(":")[0], []).append(i["name"])
    for kind, who in kinds.items():
        rows.append(Row("warn", "data.groups", f"{len(who)} QC row(s) '{kind}' (first: {', '.join(who[:3])})"))
    sizes = pd.Series(groups).value_counts()
    sources = ([f"data.groups ({Path(groups_csv).name})"] if groups_csv else []) + \
        (["the label CSV's group column"] if "group" in lab else []) + \
        ([f"identical bytes ({len(manifests)} ingest manifests)"] if manifests else
         ["identical bytes: not known before ingest hashes the videos"])
    rows.append(Row("info", "fold groups", f"{len(lab)} labeled videos in {len(sizes)} groups kept within one fold "
                    f"each; largest: {int(sizes.iloc[0])} videos (group of {sizes.index[0]}); "
                    f"from {', '.join(sources)}"))
    if len(sizes) < len(lab) and len(sizes) < k:
        rows.append(Row("error", "fold groups", f"classify.folds = {k} but the labeled videos form {len(sizes)} "
                        "groups: lower classify.folds or revise data.groups"))
    elif len(sizes) < len(lab):
        y = lab["y"].to_numpy()
        for c, n in fg.short_classes(y, groups, classes, k).items():
            rows.append(Row("warn", "fold groups", f"{c}: its {int((y == classes.index(c)).sum())} labeled videos form "
                            f"{n} group(s) < classify.folds = {k}: some folds hold none of it (data.groups, "
                            "identical bytes); lower classify.folds or revise data.groups"))
    copies = fg.test_copies(manifests, {n: "labeled" for n in labeled} | {n: "test" for n in test}) \
        if manifests and test else set()
    if copies:
        first = ", ".join(sorted(copies)[:3])
        rows.append(Row("warn", "labeled copies of test clips", f"{len(copies)} (first: {first}): {fg.TEST_COPY}"))


def check_transcripts(data: dict[str, Any], splits: dict[str, set[str]], rows: list[Row], asr: dict[str, Any]) -> None:
    if not data.get("transcripts"):
        if str(asr.get("enabled", "auto")).lower() == "false":
            rows.append(Row("warn", "data.transcripts", "none, and asr.enabled is false: no text at all (every "
                            "text feature is a missing modality); set data.transcripts or asr.enabled: auto"))
        else:
            rows.append(Row("info", "data.transcripts", "none: text features come from ASR (asr.enabled) only"))
        return
    col = data["transcript_column"]
    tr = _read(data["transcripts"], "data.transcripts", rows, ("name",), str(data.get("encoding") or ""))
    if tr is None:
        return
    if col not in tr.columns:
        rows.append(Row("error", "data.transcript_column", f"{col!r} is not a column of {data['transcripts']} "
                        f"({_header(tr)})"))
        return
    have = set(tr.loc[tr[col].astype(str).str.strip() != "", "name"])
    parts = [f"{k} {len(v & have)}/{len(v)}" for k, v in splits.items() if v]
    rows.append(Row("ok", "transcript coverage", ", ".join(parts) + " (the rest: ASR, or no text)"))


def check_models(cfg: dict[str, Any], rows: list[Row]) -> None:
    from expmae.models import references

    try:
        refs = list(references(cfg))
    except SystemExit:  # an unknown extractor: a config row names it (name_problems)
        return
    for r in refs:
        rows.append(Row("ok" if r.present else "error", r.key, f"{r.ref}: " + (r.kind if r.present else
                        f"MISSING ({r.hint})")))


def check_gpu(cfg: dict[str, Any], rows: list[Row]) -> None:
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    want = str(cfg.get("device", "auto"))
    rows.append(Row("error" if want.startswith("cuda") and not n else "info", "GPU", f"{n} visible" + (f" ({torch.cuda.get_device_name(0)})" if n else
                                                    f"; device {want}: every stage on the CPU" if want == "auto" else "")))


def check_jobs(configfiles: list[str], n_videos: int, rows: list[Row]) -> None:
    """Snakemake's own dry run (it writes nothing: see workflow/rules/common.smk) -> jobs per rule."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1"]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        last = [ln for ln in out.strip().splitlines() if ln.strip()][-3:]
        rows.append(Row("error", "snakemake -n", " / ".join(last)[:300]))
        return
    jobs: dict[str, int] = {}
    for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out, re.M):  # Snakemake prints its job table twice
        jobs.setdefault(rule, int(n))
    total = jobs.pop("total", sum(jobs.values()))
    rows.append(Row("info", "jobs", ", ".join(f"{r} {n}" for r, n in jobs.items()) or "nothing to do"))
    core_s = n_videos * DEMO_CORE_S_PER_VIDEO
    rough = f"{core_s / 3600:.1f} core-hours" if core_s >= 3600 else f"{core_s / 60:.1f} core-minutes"
    rows.append(Row("info", "rough time", f"{total} jobs; per-video stages >= {rough} at demo-clip cost "
                    "(real clips cost more: benchmarks/bench_faces.py; training steps extra)"))


def run_checks(cfg: dict[str, Any], configfiles: list[str], dag: bool = True) -> list[Row]:
    rows = [Row("error", "config", e) for e in ingest.check_data(cfg["data"]) + name_problems(cfg)]
    vids = check_videos(cfg["data"], rows)
    names = set(vids["name"].astype(str))
    check_predict(cfg["data"], names, rows)
    labeled = check_labels(cfg, names, rows)
    feature_set_rows(cfg, labeled, lambda *row: rows.append(Row(*row)))
    test = check_test(cfg["data"], names, rows) | tracks.check_rows(cfg["data"], names, lambda *r: rows.append(Row(*r)))
    check_groups(cfg, names, labeled, test, rows)
    unlabeled = names - labeled - test
    rows.append(Row("info", "splits", f"{len(names)} videos: {len(labeled)} labeled, {len(test)} test, "
                    f"{len(unlabeled)} unlabeled (MAE pretraining + pseudo-label pool)"))
    check_transcripts(cfg["data"], {"labeled": labeled, "test": test, "unlabeled": unlabeled}, rows, cfg.get("asr") or {})
    check_models(cfg, rows)
    check_gpu(cfg, rows)
    if dag and not any(r.level == "error" for r in rows):
        check_jobs(configfiles, len(names), rows)
    return rows


def render(rows: list[Row]) -> str:
    w = max(len(r.item) for r in rows)
    return "\n".join(f"{r.level:<5}  {r.item:<{w}}  {r.value}" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", nargs="*", default=[], help="config overlays, as given to snakemake")
    ap.add_argument("--no-dag", action="store_true", help="skip Snakemake's dry run (jobs per rule)")
    args = ap.parse_args(argv)
    from expmae.config import load

    try:
        cfg = load(args.configfile)
    except (ValueError, FileNotFoundError) as err:  # a line per problem, each naming its key or file
        print("\n".join(f"error  config  {line}" for line in str(err).splitlines()))
        return 1
    rows = run_checks(cfg, args.configfile, dag=not args.no_dag)
    print(render(rows))
    n_err, n_warn = sum(r.level == "error" for r in rows), sum(r.level == "warn" for r in rows)
    print(f"\n{n_err} error(s), {n_warn} warning(s)" + (": fix the errors before running" if n_err else ""))
    return 1 if n_err else 0


if __name__ == "__main__":
    sys.exit(main())

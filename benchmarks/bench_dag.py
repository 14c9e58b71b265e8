"""DAG-building cost: `snakemake -n` wall time for corpora of 1k to 1.1M videos listed in a data.manifest.

Each size gets a manifest (CSV: path,size,mtime; the files do not exist: a dry run from a manifest never
touches them) and the registry a previous run would have saved, so this is the every-start case: read
the manifest and the registry, plan, hash per shard, build the DAG. The seconds are split between the
project's parse-time work (workflow/rules/common.smk, printed by it under EXPMAE_PARSE_TIMING: registry,
fingerprints, transcripts, ASR plan, per-shard file lists) and Snakemake's (start-up, rule parsing, DAG,
the dry-run listing). Peak RSS: of the parse (at the end of common.smk) and of the whole dry run.
Also the scan path: data.videos over real empty files (default 100k), for comparison; and, at the
largest size, a cluster job process (`--mode remote`, one ingest_shard job, as the SLURM executor starts
each job): its own parse, which reads the saved registry and hashes only its shard (shard_hash.LazyShards).
--transcripts F: a transcript CSV for that share of the videos (MER releases have one for every clip;
VoxCeleb2 none), so the transcript hashes and the ASR plan work on real rows.
Goals: 1.1M videos under 15 s, 100k under 5 s.

    .venv/bin/python -m benchmarks.bench_dag [--quick] [--sizes ...] [--shard-sizes 500 5000] [--scan 100000] [--transcripts F]

Every size runs at every shard size up to it (jobs grow with shards, not videos: Snakemake's share is
per job). --quick: 1k / 10k / 100k and the scan at 100k (1-2 min on 2 cores); full adds 1.1M.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import Report, copy_workflow, peak_rss_child, peak_rss_mb, progress
from expmae import ingest


def setup(wd: Path, n: int, shard_size: int, scan: bool = False, transcripts: float = 0.0) -> None:
    """A workflow copy over n videos (a manifest, or with scan=True n empty files in videos/), labels for
    5%, transcripts for the share `transcripts` of them, and the registry its last run saved."""
    copy_workflow(wd)
    names = pd.Series([f"v{i:07d}" for i in range(n)])
    paths = "videos/" + names + ".mp4"
    if scan:
        (wd / "videos").mkdir()
        for p in paths:
            (wd / p).touch()
        source = "  videos: [videos]\n"
    else:
        pd.DataFrame({"path": paths, "size": 1_000_000, "mtime": 1.7e9 + np.arange(n)}).to_csv(wd / "videos.csv", index=False)
        source = "  videos: []\n  manifest: videos.csv\n"
    pd.DataFrame({"name": names[: max(12, n // 20)], "discrete": "happy", "valence": ""}).to_csv(wd / "labels.csv", index=False)
    if transcripts:
        step = max(1, round(1 / transcripts))
        pd.DataFrame({"name": names[::step], "sentence": "a short transcript of the clip"}).to_csv(wd / "tr.csv", index=False)
    tr = "tr.csv" if transcripts else "''"
    (wd / "bench.yaml").write_text(f"data:\n{source}  labels: labels.csv\n  transcripts: {tr}\n  test: ''\n"
                                   f"  test_labels: ''\ningest:\n  shard_size: {shard_size}\n")
    cwd = os.getcwd()
    os.chdir(wd)  # paths as the dry run (cwd = wd) finds them
    try:
        reg, issues = ingest.plan_registry("results", ["videos"] if scan else [], [".mp4"], shard_size,
                                           manifest="" if scan else "videos.csv")
        ingest.save_registry("results", reg, issues)
    finally:
        os.chdir(cwd)


def dry_run(wd: Path, job: str = "") -> dict:
    """`snakemake -n` as the main process; job="rule:wildcards": as a cluster job process of that job."""
    env = {**os.environ, "EXPMAE_PARSE_TIMING": "1"}
    remote = ["--mode", "remote", "--target-jobs", job, "--allowed-rules", job.split(":")[0]] if job else []
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", peak_rss_child("snakemake"), "-n", "--cores", "2", "--configfile",
                        "bench.yaml", "--quiet", "rules", *remote], cwd=wd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"snakemake -n failed in {wd}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    total = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("total")]
    parse = re.search(r"EXPMAE_PARSE_TIMING common.smk ([\d.]+) s, peak rss (\d+) MB", p.stderr)
    return {"secs": secs, "jobs": int(total[0].split()[1]) if total else -1,
            "parse": float(parse.group(1)) if parse else float("nan"), "parse_mb": int(parse.group(2)) if parse else -1,
            "peak_mb": peak_rss_mb(p.stderr)}


def inputs_qc_peak(wd: Path) -> tuple[float, int]:
    """The inputs_qc job (expmae.labels over every shard manifest: the global job that needs no features)
    on the registry's shards, its manifests written straight from the registry (no content hash):
    (seconds, peak RSS MB)."""
    reg = ingest.read_registry(wd / "results")
    out = wd / "results" / "ingest"
    paths = []
    for shard, g in reg.groupby("shard", sort=True):
        paths.append(str(out / f"{shard}.parquet"))
        g[["name", "path", "size", "mtime_ns"]].assign(sha256="").to_parquet(paths[-1], index=False)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", peak_rss_child("expmae.labels"), "--manifests", *paths, "--classes",
                        "happy,sad", "--labels", "labels.csv", "--out", "inputs.tsv"], cwd=wd, capture_output=True,
                       text=True)
    secs = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return secs, peak_rss_mb(p.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k / 10k / 100k + the 100k scan (no 1.1M)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--shard-sizes", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--scan", type=int, default=100_000, help="videos for the scan-path row (0 = none)")
    ap.add_argument("--no-global", action="store_true", help="skip the inputs_qc job at the largest size")
    ap.add_argument("--transcripts", type=float, default=0.0, help="share of the videos with a transcript row")
    a = ap.parse_args(argv)
    sizes = a.sizes or ([1000, 10_000, 100_000] if a.quick else [1000, 10_000, 100_000, 1_100_000])
    runs = [("manifest", n, s) for n in sizes for s in a.shard_sizes if s <= max(n, min(a.shard_sizes))]
    runs += [("scan", a.scan, a.shard_sizes[0])] if a.scan else []
    with Report("DAG building: snakemake -n", f"transcripts for {a.transcripts:.0%} of the videos; project s = "
                "common.smk (manifest, registry, hashes, file lists), snakemake s = the rest (start-up, rules, DAG, "
                "listing)") as rep:
        rows = []
        for kind, n, size in runs:
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                setup(Path(d), n, size, scan=kind == "scan", transcripts=a.transcripts)
                build = time.perf_counter() - t0
                r = dry_run(Path(d))
                if kind == "manifest" and n == max(sizes) and size == min(a.shard_sizes):
                    r["job"] = dry_run(Path(d), job="ingest_shard:shard=s00001")
                    if not a.no_global:
                        r["qc_s"], r["qc_mb"] = inputs_qc_peak(Path(d))
            rows.append({"kind": kind, "videos": n, "shard_size": size, "shards": -(-n // size), **r})
            progress(f"{kind} {n} at {size}: {r['secs']:.1f} s (setup {build:.1f} s)")
        rep.table([{"source": r["kind"], "videos": r["videos"], "shard size": r["shard_size"], "shards": r["shards"],
                    "jobs": r["jobs"], "dry run s": r["secs"], "project s": r["parse"],
                    "snakemake s": r["secs"] - r["parse"],
                    "ms/job": 1000 * (r["secs"] - r["parse"]) / max(r["jobs"], 1), "parse MB": r["parse_mb"],
                    "peak MB": r["peak_mb"]} for r in rows])
        for r in [r for r in rows if "qc_mb" in r]:
            rep.note(f"\nlargest global job at {r['videos']} videos ({r['shards']} shards): inputs_qc (expmae.labels "
                     f"over every shard manifest) {r['qc_s']:.1f} s, peak RSS {r['qc_mb']} MB")
        for r in [r for r in rows if "job" in r]:
            j = r["job"]
            rep.note(f"a cluster job process at {r['videos']} videos (one ingest_shard job, --mode remote): "
                     f"{j['secs']:.1f} s, project's parse {j['parse']:.2f} s (main process: {r['parse']:.2f} s), "
                     f"peak RSS {j['peak_mb']} MB")
        for r in rows:
            if r["kind"] == "manifest" and r["videos"] in (100_000, 1_100_000):
                goal = 5 if r["videos"] == 100_000 else 15
                rep.note(f"{r['videos']} at shard size {r['shard_size']}: {r['secs']:.1f} s vs goal {goal} s: "
                         f"{'met' if r['secs'] < goal else 'NOT met'}")


if __name__ == "__main__":
    main()

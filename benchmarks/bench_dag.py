"""DAG-building cost: `snakemake -n` wall time for registries of 1k, 10k and 100k videos.

Synthetic registry rows stand in for videos (the dry run never opens them), so this measures
parse + registry + DAG construction only. Printed side by side, with time per 1k videos, so
linear growth is visible. Goal: 100k videos under 20 s.

    python benchmarks/bench_dag.py [--sizes 1000 10000 100000] [--shard-size 200]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def setup(wd: Path, n: int, shard_size: int) -> None:
    for item in ("Snakefile", "config.yaml", "workflow", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / item)
    (wd / "videos").mkdir()
    names = [f"v{i:07d}" for i in range(n)]
    reg = pd.DataFrame({"name": names, "path": [f"videos/{x}.mp4" for x in names],
                        "shard": [f"s{i // shard_size:05d}" for i in range(n)],
                        "size": 1000, "mtime_ns": 0})
    (wd / "results" / "ingest").mkdir(parents=True)
    reg.to_parquet(wd / "results" / "ingest" / "registry.parquet", index=False)
    pd.DataFrame({"name": names[: n // 20], "discrete": "happy", "valence": ""}).to_csv(wd / "labels.csv", index=False)
    (wd / "bench.yaml").write_text(
        f"data:\n  videos: [videos]\n  labels: labels.csv\n  transcripts: ''\n  test: ''\n  test_labels: ''\n"
        f"ingest:\n  shard_size: {shard_size}\n")


def dry_run_seconds(wd: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile", "bench.yaml",
                        "--quiet", "rules"], cwd=wd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    total = [l for l in p.stdout.splitlines() if l.strip().startswith("total")]
    return dt, int(total[0].split()[1]) if total else -1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--shard-size", type=int, default=200)
    a = ap.parse_args()
    rows = []
    for n in a.sizes:
        with tempfile.TemporaryDirectory() as d:
            wd = Path(d)
            setup(wd, n, a.shard_size)
            secs, jobs = dry_run_seconds(wd)
            rows.append((n, jobs, secs))
    print(f"{'videos':>8} {'jobs':>6} {'dry-run s':>10} {'s per 1k videos':>16}")
    for n, jobs, secs in rows:
        print(f"{n:>8} {jobs:>6} {secs:>10.2f} {secs / (n / 1000):>16.3f}")
    if len(rows) > 1:
        (n0, _, s0), (n1, _, s1) = rows[0], rows[-1]
        print(f"growth {n1 // n0}x videos -> {s1 / s0:.1f}x time; 100k goal < 20 s")


if __name__ == "__main__":
    main()

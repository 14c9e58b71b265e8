"""Cost of a new batch: full run of the demo data vs adding ~1% new unlabeled videos.

Both runs happen here, one after the other, on the same machine. Per-video stage time is
the sum of Snakemake's own `benchmark:` seconds of the per-shard jobs (faces, feature
extractors incl. expMAE, asr); the global training steps (classifiers, fusion, pseudo-labels) are reported
separately, as is the count of files written per video. Goal: per-video stages of the
increment under 5% of the full run's.

    python benchmarks/bench_incremental.py [--preset default] [--add-frac 0.01]
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

from expmae import demo

ROOT = Path(__file__).resolve().parents[1]
# benchmark folders under results/benchmarks/ (features/ holds one folder per extractor instance)
PER_SHARD = ("faces", "features", "asr")
GLOBAL = ("classify", "fuse", "mae_pretrain", "mae_video_pretrain", "mae_probe", "mae_video_probe")


def run(wd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "workflow/presets/demo.yaml"],
                       cwd=wd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-4000:])
    return time.perf_counter() - t0


def bench_seconds(wd: Path, rules, since: float) -> tuple[float, int]:
    """Sum of benchmark seconds of jobs of `rules` whose benchmark file was written after `since`."""
    total, n = 0.0, 0
    for r in rules:
        bench = wd / "results" / "benchmarks"
        for f in [*bench.glob(f"{r}.tsv"), *(bench / r).rglob("*.tsv")]:
            if f.stat().st_mtime >= since:
                total += float(pd.read_csv(f, sep="\t")["s"].sum())
                n += 1
    return total, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="default")
    ap.add_argument("--add-frac", type=float, default=0.01)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        wd = Path(d)
        for item in ("Snakefile", "config.yaml", "workflow", "envs"):
            src = ROOT / item
            (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / item)
        demo.make_dataset(wd / "data" / "demo", preset=a.preset, seed=0)
        n_videos = len(list((wd / "data" / "demo" / "videos").iterdir()))
        t_full0 = time.time()
        wall_full = run(wd)
        full_ps, full_jobs = bench_seconds(wd, PER_SHARD, t_full0)
        full_gl, _ = bench_seconds(wd, GLOBAL, t_full0)
        files_full = sum(1 for _ in (wd / "results" / "features").rglob("*") if _.is_file())
        n_add = max(1, round(n_videos * a.add_frac))
        demo.add_unlabeled(wd / "data" / "demo", n_add, seed=11)
        t_inc0 = time.time()
        wall_inc = run(wd)
        inc_ps, inc_jobs = bench_seconds(wd, PER_SHARD, t_inc0)
        inc_gl, _ = bench_seconds(wd, GLOBAL, t_inc0)
        files_inc = sum(1 for _ in (wd / "results" / "features").rglob("*") if _.is_file())
    print(f"{'':28}{'full':>10}{'+' + str(n_add) + ' videos':>14}{'ratio':>8}")
    print(f"{'videos processed':28}{n_videos:>10}{n_add:>14}{n_add / n_videos:>8.1%}")
    print(f"{'per-shard jobs':28}{full_jobs:>10}{inc_jobs:>14}")
    print(f"{'per-video stages, s':28}{full_ps:>10.1f}{inc_ps:>14.1f}{inc_ps / full_ps:>8.1%}")
    print(f"{'global training steps, s':28}{full_gl:>10.1f}{inc_gl:>14.1f}")
    print(f"{'wall time, s':28}{wall_full:>10.1f}{wall_inc:>14.1f}{wall_inc / wall_full:>8.1%}")
    print(f"{'feature files per video':28}{files_full / n_videos:>10.3f}{(files_inc - files_full) / n_add:>14.3f}")


if __name__ == "__main__":
    main()

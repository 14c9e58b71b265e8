"""Cost of a new batch: a full run of the demo data vs adding ~1% new unlabeled videos.

Both runs happen here, one after the other, on the same machine. Per-video stage time is the sum of
Snakemake's own `benchmark:` seconds of the per-shard jobs (faces, feature extractors incl. expMAE, asr,
harness.rule_seconds); the global training steps (classifiers, fusion, MAE pretraining and probe) are
reported separately, as is the count of feature files written per video. Goal: per-video stages of the
increment under 5% of the full run's.

    .venv/bin/python -m benchmarks.bench_incremental [--preset default] [--add-frac 0.01]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Report, copy_workflow, progress, rule_seconds, snakemake, stage_of
from expmae import demo

PER_SHARD = ("faces", "features", "asr")
GLOBAL = ("classify", "fuse", "mae_pretrain", "mae_video_pretrain", "mae_probe", "mae_video_probe")
CONFIG = "workflow/presets/demo.yaml"


def seconds(wd: Path, since: float, stages: tuple[str, ...]) -> tuple[float, int]:
    """Summed wall seconds and jobs of the stages' jobs that ran after `since`."""
    t = rule_seconds(wd / "results", since)
    t = t[[stage_of(r) in stages for r in t.index]]
    return float(t["s"].sum()), int(t["jobs"].sum())


def feature_files(wd: Path) -> int:
    return sum(1 for p in (wd / "results" / "features").rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--add-frac", type=float, default=0.01)
    a = ap.parse_args(argv)
    with Report("incremental batch: full run vs +1% videos", f"demo preset {a.preset}") as rep, \
            tempfile.TemporaryDirectory() as d:
        wd = copy_workflow(Path(d))
        demo.make_dataset(wd / "data" / "demo", preset=a.preset, seed=0)
        n_videos = len(list((wd / "data" / "demo" / "videos").iterdir()))
        t0 = time.time()
        wall_full = snakemake(wd, CONFIG)
        progress(f"full run {wall_full:.0f} s")
        (full_ps, full_jobs), (full_gl, _) = seconds(wd, t0, PER_SHARD), seconds(wd, t0, GLOBAL)
        files_full = feature_files(wd)
        n_add = max(1, round(n_videos * a.add_frac))
        demo.add_unlabeled(wd / "data" / "demo", n_add, seed=11)
        t1 = time.time()
        wall_inc = snakemake(wd, CONFIG)
        (inc_ps, inc_jobs), (inc_gl, _) = seconds(wd, t1, PER_SHARD), seconds(wd, t1, GLOBAL)
        files_inc = feature_files(wd) - files_full
        rep.table([
            {"": "videos processed", "full": n_videos, f"+{n_add} videos": n_add, "ratio": f"{n_add / n_videos:.1%}"},
            {"": "per-shard jobs", "full": full_jobs, f"+{n_add} videos": inc_jobs, "ratio": ""},
            {"": "per-video stages, s", "full": full_ps, f"+{n_add} videos": inc_ps, "ratio": f"{inc_ps / full_ps:.1%}"},
            {"": "global training steps, s", "full": full_gl, f"+{n_add} videos": inc_gl, "ratio": ""},
            {"": "wall time, s", "full": wall_full, f"+{n_add} videos": wall_inc,
             "ratio": f"{wall_inc / wall_full:.1%}"},
            {"": "feature files per video", "full": files_full / n_videos, f"+{n_add} videos": files_inc / n_add,
             "ratio": ""}], digits=1)
        share = inc_ps / full_ps
        rep.note(f"goal: per-video stages of the increment < 5% of the full run's: {share:.1%}, "
                 f"{'met' if share < 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()

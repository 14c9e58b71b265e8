"""Whole-workflow cost at 1x and Kx the demo's size, then +1% videos at Kx (the incremental cost).

The demo generator (expmae/demo) writes both corpora with the same proportions (labeled / unlabeled /
test times K, plus its few bad inputs) and the same reduced config, for both sizes (tests/config_tiny.yaml's
micro MAE and face settings, seeds: 1, no video MAE, one probe repeat, no pseudo-label round, FBP + late
fusion only; feature sets expmae, egemaps, minilm; config_tiny's ingest.shard_size 24 unless --shard-size). Per-video stages (faces, each feature set, asr) are timed by
Snakemake's own `benchmark:` files, summed per stage and divided by the videos; the global steps (MAE
pretraining + probe, classifiers, fusion) are reported as totals, with their growth from 1x to Kx.
Then 1% new unlabeled videos are added to the Kx corpus and the workflow rerun: its per-video stage
seconds against the full Kx run's (goal < 5%), and the global steps it reran.
Goals: per-video cost at Kx within 1.1x of 1x for every per-video stage; increment < 5%.

    python benchmarks/bench_scale.py [--scale 10] [--quick] [--add-frac 0.01] [--shard-size N]

--quick: the tiny demo preset (24 / 24 / 12 videos) at scale 3 (a few minutes on 2 cores); the full run
(default preset, 340 vs 3,400 videos) takes hours on a 2-core box. Per job, Snakemake's benchmark files
record wall seconds (`s`) and CPU seconds (`cpu_time`); the goals use CPU seconds, since with two jobs
at a time on two cores a job's wall time depends on what ran beside it (wall is printed too). The
load average is printed: a loaded machine inflates both sizes.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from expmae.demo.dataset import add_unlabeled, make_dataset  # noqa: E402
from expmae.demo.spec import PRESETS  # noqa: E402

PER_VIDEO = ("faces", "features", "asr")  # results/benchmarks/<stage>/ (features: one folder per set)
GLOBAL = ("mae_pretrain", "mae_probe", "classify", "fuse")
REDUCED = """seeds: 1
mae: {probe_repeats: 1}
mae_video: {enabled: false}
classify: {feature_sets: [expmae, egemaps, minilm]}
pseudolabel: {rounds: 0}
fuse: {heads: [fbp, late]}
"""


def workdir(wd: Path, preset: str, scale: int, shard_size: int | None) -> int:
    """A workflow copy over the demo corpus at `scale`; returns the number of videos."""
    for item in ("Snakefile", "config.yaml", "workflow", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / item)
    shutil.copy(ROOT / "tests" / "config_tiny.yaml", wd / "config_tiny.yaml")
    lab, unl, test = PRESETS[preset]
    make_dataset(wd / "data" / "tiny", preset, seed=0, n_labeled=lab * scale, n_unlabeled=unl * scale,
                 n_test=test * scale, workers=2)
    extra = f"ingest: {{shard_size: {shard_size}}}\n" if shard_size else ""
    (wd / "bench.yaml").write_text(REDUCED + extra)
    return sum(1 for p in (wd / "data" / "tiny" / "videos").iterdir() if p.is_file())


def run(wd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config_tiny.yaml", "bench.yaml"],
                       cwd=wd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stdout[-2000:] + p.stderr[-4000:])
    return time.perf_counter() - t0


def stage_seconds(wd: Path, since: float, column: str = "cpu_time") -> dict[str, tuple[float, int]]:
    """stage -> (summed benchmark seconds, jobs) of the jobs whose benchmark file was written after `since`;
    column: cpu_time (CPU seconds) or s (wall). Per-video stages are split per feature set (features/<set>)."""
    bench, out = wd / "results" / "benchmarks", {}
    for f in bench.rglob("*.tsv"):
        if f.stat().st_mtime < since:
            continue
        rel = f.relative_to(bench).parts
        stage = "/".join(rel[:2]) if rel[0] == "features" else rel[0].removesuffix(".tsv")
        secs, n = out.get(stage, (0.0, 0))
        out[stage] = (secs + float(pd.read_csv(f, sep="\t")[column].sum()), n + 1)
    return out


def is_per_video(stage: str) -> bool:
    return stage.split("/")[0] in PER_VIDEO


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=None, help="the larger corpus, times the demo (default 10; quick 3)")
    ap.add_argument("--quick", action="store_true", help="tiny preset at scale 3")
    ap.add_argument("--add-frac", type=float, default=0.01)
    ap.add_argument("--shard-size", type=int, default=None, help="ingest.shard_size for both (default: config_tiny's)")
    a = ap.parse_args()
    preset, scale = ("tiny", a.scale or 3) if a.quick else ("default", a.scale or 10)
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for k in (1, scale):
            wd = Path(d) / f"x{k}"
            wd.mkdir()
            n = workdir(wd, preset, k, a.shard_size)
            t0 = time.time()
            wall = run(wd)
            res[k] = {"videos": n, "wall": wall, "stages": stage_seconds(wd, t0), "walls": stage_seconds(wd, t0, "s")}
            print(f"  {k}x: {n} videos, {wall:.0f} s", file=sys.stderr, flush=True)
        n_add = max(1, math.ceil(res[scale]["videos"] * a.add_frac))
        add_unlabeled(wd / "data" / "tiny", n_add, seed=11)
        t0 = time.time()
        inc_wall = run(wd)
        inc = stage_seconds(wd, t0)
    one, big = res[1], res[scale]
    print(f"preset {preset}, scale {scale}; load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (2 cores)")
    print(f"{'stage (CPU s per video)':24}{'1x':>10}{f'{scale}x':>10}{'ratio':>8}{'wall ratio':>11}{'jobs 1x':>9}"
          f"{f'jobs {scale}x':>9}")
    stages = sorted(set(one["stages"]) | set(big["stages"]))
    worst = 0.0
    for s in [s for s in stages if is_per_video(s)]:
        (s1, j1), (sk, jk) = one["stages"].get(s, (0.0, 0)), big["stages"].get(s, (0.0, 0))
        w1, wk = one["walls"].get(s, (0.0, 0))[0] / one["videos"], big["walls"].get(s, (0.0, 0))[0] / big["videos"]
        r1, rk = s1 / one["videos"], sk / big["videos"]
        ratio = rk / r1 if r1 else float("nan")
        worst = max(worst, ratio) if j1 > 1 else worst  # asr: one job at both sizes (a few videos), no per-video cost
        print(f"{s:24}{r1:>10.4f}{rk:>10.4f}{ratio:>8.2f}{wk / w1 if w1 else float('nan'):>11.2f}{j1:>9}{jk:>9}")
    print(f"worst per-video CPU ratio {worst:.2f} (goal <= 1.1: {'met' if worst <= 1.1 else 'NOT met'}; stages with "
          "more than one job)")
    print(f"{'global step (CPU s)':24}{'1x':>10}{f'{scale}x':>10}{'growth':>8}")
    for s in [s for s in stages if not is_per_video(s)]:
        s1, sk = one["stages"].get(s, (0.0, 0))[0], big["stages"].get(s, (0.0, 0))[0]
        print(f"{s:24}{s1:>10.1f}{sk:>10.1f}{sk / s1 if s1 else float('nan'):>8.2f}")
    pv = lambda st: sum(v[0] for s, v in st.items() if is_per_video(s))  # noqa: E731
    gl = lambda st: sum(v[0] for s, v in st.items() if not is_per_video(s))  # noqa: E731
    print(f"{'videos':24}{one['videos']:>10}{big['videos']:>10}{big['videos'] / one['videos']:>8.1f}")
    print(f"{'workflow wall s':24}{one['wall']:>10.1f}{big['wall']:>10.1f}{big['wall'] / one['wall']:>8.2f}")
    share = pv(inc) / pv(big["stages"])
    print(f"\n+{n_add} videos ({n_add / big['videos']:.1%}) at {scale}x: per-video stages {pv(inc):.1f} CPU s vs full "
          f"{pv(big['stages']):.1f} s = {share:.1%} (goal < 5%: {'met' if share < 0.05 else 'NOT met'}); "
          f"global steps rerun {gl(inc):.1f} s (full {gl(big['stages']):.1f} s); wall {inc_wall:.0f} s vs {big['wall']:.0f} s")


if __name__ == "__main__":
    main()

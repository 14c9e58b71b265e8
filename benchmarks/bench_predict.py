"""Predicting new videos: `python -m expmae.predict` (standalone, the bundle) vs the workflow (data.predict:
the new videos' per-shard jobs + the predict job), on the same demo clips, side by side; and the start-up cost.

Both paths run from scratch on the same videos: the demo's test-split clips copied under new names (so both
transcribe them with the bundle's ASR, as new videos would be). The workflow's time is the Snakemake call
that runs their jobs (faces, every extractor, ASR, predict), with its per-stage seconds from the jobs'
benchmark TSVs; the standalone time is one CLI process over all of them. Start-up = the CLI on 1 video
minus one video's share of the N-video run (imports, model loads, bundle check).

    python benchmarks/bench_predict.py --quick            # tiny demo (12 clips), reduced training; < 3 min
    python benchmarks/bench_predict.py                    # demo preset (48 clips)
    python benchmarks/bench_predict.py --quick --workdir DIR --configfile config_tiny.yaml   # reuse a finished run

Writes only under a temporary folder (or --workdir). Prints os.getloadavg(): figures on a loaded machine are
loaded-machine figures.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# reduced training for the quick mode: what is timed is prediction, not training
QUICK = "mae_video: {enabled: false}\nseeds: 1\npseudolabel: {rounds: 0}\nclassify: {folds: 3, epochs: 20}\n"
PER_VIDEO_RULES = ("faces", "extract_audio", "extract_text", "extract_visual", "asr", "predict")


def smk(wd: Path, *configs: str) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", *configs]
    p = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"snakemake failed in {wd}:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def prepare(wd: Path, quick: bool, cfgs: list[str] | None) -> list[str]:
    """A finished run in wd (made when absent) -> the config files it used."""
    from expmae import demo
    from fixtures.workflow import copy_workflow

    cfgs = cfgs or (["config_tiny.yaml", "quick.yaml"] if quick else ["workflow/presets/demo.yaml"])
    if not (wd / "results" / "bundle" / "manifest.json").exists():
        copy_workflow(wd)
        (wd / "quick.yaml").write_text(QUICK)
        data = wd / "data" / ("tiny" if quick else "demo")
        if not data.exists():
            demo.make_dataset(data, preset="tiny" if quick else "demo", seed=0)
        print(f"training run in {wd} ...", file=sys.stderr, flush=True)
        print(f"  {smk(wd, *cfgs):.0f} s", file=sys.stderr)
    return cfgs


def new_videos(wd: Path, data: Path) -> list[Path]:
    """The test-split clips under new names, in wd/data/new (the data.predict folder)."""
    names = pd.read_csv(data / "test.csv", dtype=str)["name"]
    files = {p.stem: p for p in (data / "videos").iterdir()}
    new = wd / "data" / "new"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    for n in names:
        if n in files:
            shutil.copy(files[n], new / f"new_{n}{files[n].suffix}")
    return sorted(new.iterdir())


def cli(wd: Path, videos: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "expmae.predict", "--bundle", str(wd / "results" / "bundle"), *map(str, videos),
           "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"expmae.predict failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def stage_seconds(wd: Path, since: float) -> dict[str, float]:
    """Per rule: the summed seconds of the data.predict shards' jobs that ran after `since` (benchmark TSVs)."""
    bench = wd / "results" / "benchmarks"
    out = {}
    for tsv in [*bench.rglob("p0*.tsv"), bench / "predict.tsv"]:
        if tsv.exists() and tsv.stat().st_mtime >= since:
            rule = str(tsv.relative_to(bench).parent) if tsv.name != "predict.tsv" else "predict"
            out[rule] = out.get(rule, 0.0) + float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny demo data and reduced training (< 3 min)")
    ap.add_argument("--workdir", default=None, help="a folder holding (or to hold) the finished run")
    ap.add_argument("--configfile", nargs="*", default=None, help="the run's config files (with --workdir: what it ran with)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of both paths (default: 1 quick, 3 full)")
    a = ap.parse_args(argv)
    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="bench_predict-")
    wd = Path(a.workdir or tmp.name).resolve()
    print(f"load average before: {os.getloadavg()}")
    cfgs = prepare(wd, a.quick, a.configfile)
    data = wd / "data" / ("tiny" if a.quick else "demo")
    (wd / "predict.yaml").write_text("data: {predict: [data/new]}\n")
    t_wf, t_cli, t_one, stages = [], [], [], {}
    for _ in range(a.repeats or (1 if a.quick else 3)):
        videos = new_videos(wd, data)  # fresh copies: new mtimes rerun the predict shard's jobs
        n = len(videos)
        since = time.time()
        t_wf.append(smk(wd, *cfgs, "predict.yaml"))
        for rule, sec in stage_seconds(wd, since).items():
            stages.setdefault(rule, []).append(sec)
        out = wd / "standalone.csv"
        t_cli.append(cli(wd, videos, out))
        t_one.append(cli(wd, videos[:1], wd / "one.csv"))
    startup = [one - c / n for one, c in zip(t_one, t_cli)]
    got = pd.read_csv(out)
    same = got.set_index("name")["label"].equals(
        pd.read_csv(wd / "results" / "predict" / "final.csv").set_index("name").loc[got["name"], "label"])
    ms = lambda v: f"{np.mean(v):.1f} +- {np.std(v, ddof=1):.1f}" if len(v) > 1 else f"{v[0]:.1f}"  # noqa: E731
    print(f"\n{n} new videos ({'tiny' if a.quick else 'demo'} demo test clips), 2 cores, {len(t_wf)} repeat(s): mean +- std")
    print(f"{'path':<52}{'wall s':>16}{'videos/s':>10}{'s/video':>9}")
    for label, t in (("workflow (data.predict: per-shard jobs + predict)", t_wf), ("standalone python -m expmae.predict", t_cli)):
        print(f"{label:<52}{ms(t):>16}{n / np.mean(t):>10.2f}{np.mean(t) / n:>9.2f}")
    print(f"ratio workflow / standalone: {np.mean(t_wf) / np.mean(t_cli):.2f}x; same labels: {same}")
    print(f"standalone start-up (1 video: {ms(t_one)} s, minus one video's share of the {n}-video run): {ms(startup)} s")
    print("workflow jobs' own seconds (benchmark TSVs; the rest of its wall time is Snakemake and job start-up):")
    for rule, v in sorted(stages.items()):
        print(f"  {rule:<32}{ms(v):>14} s  {np.mean(v) / n:>6.2f} s/video")
    print(f"load average after: {os.getloadavg()}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

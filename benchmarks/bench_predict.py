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


def stage_seconds(wd: Path) -> dict[str, float]:
    """Per rule: the summed seconds of the data.predict shards' jobs (Snakemake benchmark TSVs)."""
    bench = wd / "results" / "benchmarks"
    out = {}
    for tsv in [*bench.rglob("p0*.tsv"), bench / "predict.tsv"]:
        if tsv.exists():
            rule = str(tsv.relative_to(bench).parent) if tsv.name != "predict.tsv" else "predict"
            out[rule] = out.get(rule, 0.0) + float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny demo data and reduced training (< 3 min)")
    ap.add_argument("--workdir", default=None, help="a folder holding (or to hold) the finished run")
    ap.add_argument("--configfile", nargs="*", default=None, help="the run's config files (with --workdir: what it ran with)")
    a = ap.parse_args(argv)
    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="bench_predict-")
    wd = Path(a.workdir or tmp.name).resolve()
    print(f"load average before: {os.getloadavg()}")
    cfgs = prepare(wd, a.quick, a.configfile)
    data = wd / "data" / ("tiny" if a.quick else "demo")
    videos = new_videos(wd, data)
    n = len(videos)
    shutil.rmtree(wd / "results" / "predict", ignore_errors=True)
    (wd / "predict.yaml").write_text("data: {predict: [data/new]}\n")
    t_wf = smk(wd, *cfgs, "predict.yaml")
    stages = stage_seconds(wd)
    out = wd / "standalone.csv"
    t_cli = cli(wd, videos, out)
    t_one = cli(wd, videos[:1], wd / "one.csv")
    startup = t_one - t_cli / n
    same = pd.read_csv(out).set_index("name")["label"].equals(
        pd.read_csv(wd / "results" / "predict" / "final.csv").set_index("name").loc[
            pd.read_csv(out)["name"], "label"])
    print(f"\n{n} new videos ({'tiny' if a.quick else 'demo'} demo test clips), 2 cores")
    print(f"{'path':<44}{'wall s':>9}{'videos/s':>10}{'s/video':>9}")
    print(f"{'workflow (data.predict: per-shard jobs + predict)':<44}{t_wf:>9.1f}{n / t_wf:>10.2f}{t_wf / n:>9.2f}")
    print(f"{'standalone python -m expmae.predict':<44}{t_cli:>9.1f}{n / t_cli:>10.2f}{t_cli / n:>9.2f}")
    print(f"ratio workflow / standalone: {t_wf / t_cli:.2f}x; same labels: {same}")
    print(f"standalone start-up (1 video: {t_one:.1f} s, minus one video's share of the {n}-video run): {startup:.1f} s")
    print("workflow jobs' own seconds (benchmark TSVs; the rest of its wall time is Snakemake and job start-up):")
    for rule, s in sorted(stages.items()):
        print(f"  {rule:<32}{s:>8.1f} s  {s / n:>6.2f} s/video")
    print(f"load average after: {os.getloadavg()}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

"""Predicting new videos: `python -m expmae.predict` (standalone, the bundle) vs the workflow (data.predict:
the new videos' per-shard jobs + the predict job), on the same demo clips, side by side; and the start-up cost.

Both paths run from scratch on the same videos: the demo's test-split clips copied under new names (so both
transcribe them with the bundle's ASR, as new videos would be). The workflow's time is the Snakemake call
that runs their jobs (faces, every extractor, ASR, predict), with its per-stage seconds from the jobs'
benchmark TSVs; the standalone time is one CLI process over all of them. Start-up = the CLI on 1 video
minus one video's share of the N-video run (imports, model loads, bundle check).

    .venv/bin/python -m benchmarks.bench_predict --quick   # tiny demo (12 clips), reduced training; < 3 min
    .venv/bin/python -m benchmarks.bench_predict           # demo preset (48 clips)
    .venv/bin/python -m benchmarks.bench_predict --quick --workdir DIR --configfile config_tiny.yaml  # reuse a run

The two paths run in paired rounds (harness.paired), fresh copies of the videos before each round.
Writes only under a temporary folder (or --workdir).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import Report, copy_workflow, paired, progress, rule_seconds, snakemake, spread

# reduced training for the quick mode: what is timed is prediction, not training
QUICK = "mae_video: {enabled: false}\nseeds: 1\npseudolabel: {rounds: 0}\nclassify: {folds: 3, epochs: 20}\n"


def prepare(wd: Path, quick: bool, cfgs: list[str] | None) -> list[str]:
    """A finished run in wd (made when absent) -> the config files it used."""
    from expmae import demo

    cfgs = cfgs or (["config_tiny.yaml", "quick.yaml"] if quick else ["workflow/presets/demo.yaml"])
    if not (wd / "results" / "bundle" / "manifest.json").exists():
        copy_workflow(wd, tiny_config=True)
        (wd / "quick.yaml").write_text(QUICK)
        data = wd / "data" / ("tiny" if quick else "demo")
        if not data.exists():
            demo.make_dataset(data, preset="tiny" if quick else "demo", seed=0)
        progress(f"training run in {wd} ...")
        progress(f"{snakemake(wd, *cfgs):.0f} s")
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


def cli(wd: Path, videos: list[Path], out: Path) -> None:
    cmd = [sys.executable, "-m", "expmae.predict", "--bundle", str(wd / "results" / "bundle"), *map(str, videos),
           "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"expmae.predict failed:\n{p.stderr[-3000:]}")


def stage_seconds(wd: Path, since: float) -> dict[str, float]:
    """Per rule: the summed seconds of the data.predict shards' jobs (p0*) and the predict job that ran after
    `since` (benchmark TSVs)."""
    t = pd.concat([rule_seconds(wd / "results", since, "p0*.tsv"), rule_seconds(wd / "results", since, "predict.tsv")])
    return {str(rule): float(v["s"]) for rule, v in t.iterrows()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny demo data and reduced training (< 3 min)")
    ap.add_argument("--workdir", default=None, help="a folder holding (or to hold) the finished run")
    ap.add_argument("--configfile", nargs="*", default=None, help="the run's config files (with --workdir: what it ran with)")
    ap.add_argument("--rounds", type=int, default=None, help="paired rounds of both paths (default: 1 quick, 3 full)")
    a = ap.parse_args(argv)
    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="bench_predict-")
    wd = Path(a.workdir or tmp.name).resolve()
    with Report("predicting new videos: workflow vs standalone", "tiny demo, quick" if a.quick else "demo") as rep:
        cfgs = prepare(wd, a.quick, a.configfile)
        data = wd / "data" / ("tiny" if a.quick else "demo")
        (wd / "predict.yaml").write_text("data: {predict: [data/new]}\n")
        videos: list[Path] = []
        stages: dict[str, list[float]] = {}

        def fresh() -> None:  # fresh copies before each round: new mtimes rerun the predict shard's jobs
            videos[:] = new_videos(wd, data)

        def workflow() -> None:
            since = time.time()
            snakemake(wd, *cfgs, "predict.yaml")
            for rule, sec in stage_seconds(wd, since).items():
                stages.setdefault(rule, []).append(sec)

        t = paired({"workflow (data.predict: per-shard jobs + predict)": workflow,
                    "standalone python -m expmae.predict": lambda: cli(wd, videos, wd / "standalone.csv"),
                    "standalone, 1 video": lambda: cli(wd, videos[:1], wd / "one.csv")},
                   a.rounds or (1 if a.quick else 3), between=fresh)
        report(rep, wd, t, stages, len(videos))
    if tmp is not None:
        tmp.cleanup()


def report(rep: Report, wd: Path, t: dict[str, list[float]], stages: dict[str, list[float]], n: int) -> None:
    wf, alone, one = (t[k] for k in list(t)[:3])
    got = pd.read_csv(wd / "standalone.csv")
    same = got.set_index("name")["label"].equals(
        pd.read_csv(wd / "results" / "predict" / "final.csv").set_index("name").loc[got["name"], "label"])
    rep.table([{"path": k, "wall s": spread(v, 1), "videos/s": n / np.median(v), "s/video": np.median(v) / n}
               for k, v in list(t.items())[:2]], caption=f"{n} new videos, {len(wf)} round(s): median [min, max]")
    startup = [o - c / n for o, c in zip(one, alone)]
    rep.note(f"ratio workflow / standalone per round: {spread([w / c for w, c in zip(wf, alone)])}x; same labels: {same}")
    rep.note(f"standalone start-up (1 video: {spread(one, 1)} s, minus one video's share of the {n}-video run): "
             f"{spread(startup, 1)} s")
    rep.table([{"workflow job": rule, "s": spread(v, 1), "s/video": np.median(v) / n} for rule, v in sorted(stages.items())],
              caption="workflow jobs' own seconds (benchmark TSVs; the rest of its wall time is Snakemake and job "
                      "start-up):")


if __name__ == "__main__":
    main()

"""What every benchmark shares: the context of a figure (commit, date, machine, load average before and
after), paired rounds, CPU seconds, a markdown result table, and the workflow helpers (a scratch copy of
the workflow, a Snakemake call, the per-rule seconds of Snakemake's benchmark files).

A figure measured on a shared box means little without the load beside it, so `Report` prints the
context first and the load again at the end; README.md copies both with the table. Paired rounds run
the variants of one comparison back to back inside each round, in an order that alternates between
rounds, so a load change slows both sides alike and cancels in their per-round ratio.

Run the scripts from the repository root as modules: `.venv/bin/python -m benchmarks.bench_x`.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# ----------------------------------------------------------------------------- context of a figure
def commit() -> str:
    """Short hash of HEAD, '+ changes' when the tracked code differs from it (a figure of a dirty tree)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "expmae", "workflow",
                                "benchmarks", "Snakefile", "config.yaml"], cwd=ROOT, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + changes" if dirty.stdout.strip() else "")


def machine() -> str:
    """CPU model and the cores this process may use (a GPU's name is the benchmark's to add)."""
    model = platform.processor() or platform.machine()
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def load() -> str:
    """1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Report:
    """Prints a benchmark's context (commit, date, machine, load before) on entry, tables while it runs,
    and the load after on exit: everything README.md needs to quote a figure."""

    def __init__(self, title: str, settings: str = "") -> None:
        self.title, self.settings = title, settings

    def __enter__(self) -> "Report":
        self.load_before = load()
        print(f"## {self.title}\n")
        print(f"commit {commit()}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
              f"load average before {self.load_before}" + (f"; {self.settings}" if self.settings else ""))
        sys.stdout.flush()
        return self

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, caption: str = "",
              digits: int = 2) -> None:
        print(("\n" + caption if caption else "") + "\n" + markdown(rows, columns, digits), flush=True)

    def note(self, text: str) -> None:
        print(text, flush=True)

    def __exit__(self, *exc: object) -> None:
        print(f"\nload average after {load()}", flush=True)


def progress(text: str) -> None:
    """A line on stderr while a long benchmark runs (stdout holds only the report)."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- tables
def cell(v: Any, digits: int = 2) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:,.{digits}f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 2) -> str:
    """Rows (dicts) -> a markdown table; columns default to the keys of the first row, in order."""
    cols = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, ""), digits) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def spread(values: Sequence[float], digits: int = 2) -> str:
    """median [min, max] of several rounds, the value alone for one."""
    v = sorted(values)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    med = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    return f"{med:.{digits}f} [{v[0]:.{digits}f}, {v[-1]:.{digits}f}]"


def verdict(values: Sequence[float], ok: Callable[[float], bool]) -> str:
    """A goal is met or missed only when every round is on one side of it."""
    hits = [ok(v) for v in values]
    return "met" if all(hits) else "NOT met" if not any(hits) else "in the spread"


# ----------------------------------------------------------------------------- timing
def cpu_seconds() -> float:
    """CPU seconds (user + sys) of this process and of its reaped children (workers, subprocesses)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """-> (wall s, CPU s, fn's result)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def paired(variants: dict[str, Callable[[], Any]], rounds: int, between: Callable[[], Any] | None = None,
           cpu: bool = False) -> dict[str, list[float]]:
    """Wall seconds of every variant in each of `rounds` rounds, the variants back to back within a round
    and in reversed order every other round (A B, B A, ...). `between` runs before each round (e.g. the
    reference rate under that round's load); its seconds are returned under the key 'between'. cpu: also
    the CPU seconds (this process and its reaped children) of each variant, under 'cpu <name>'."""
    out: dict[str, list[float]] = {k: [] for k in variants}
    if between is not None:
        out["between"] = []
    names = list(variants)
    for r in range(rounds):
        if between is not None:
            out["between"].append(timed(between)[0])
        for k in names if r % 2 == 0 else names[::-1]:
            wall, secs, _ = timed(variants[k])
            out[k].append(wall)
            if cpu:
                out.setdefault(f"cpu {k}", []).append(secs)
    return out


def repeat(fn: Callable[[], Any], rounds: int) -> list[float]:
    """Wall seconds of `rounds` calls of one thing."""
    return [timed(fn)[0] for _ in range(rounds)]


# ----------------------------------------------------------------------------- the workflow
def copy_workflow(dst: Path, tiny_config: bool = False) -> Path:
    """A scratch copy of the workflow (Snakefile, config, rules, envs); tiny_config adds tests/config_tiny.yaml
    (the micro MAE and face settings the reduced runs use)."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "config.yaml", "workflow", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / item)
    if tiny_config:
        shutil.copy(ROOT / "tests" / "config_tiny.yaml", dst / "config_tiny.yaml")
    return dst


def workflow_config(configfiles: Sequence[str] = ()) -> dict[str, Any]:
    """The run's config as the workflow resolves it: schema defaults < config.yaml < these files."""
    from expmae import config

    return config.load(list(configfiles), base=ROOT / "config.yaml")


def snakemake(wd: Path, *configs: str, cores: int = 2) -> float:
    """Run the workflow in wd with these config files -> wall seconds; a failure stops the benchmark."""
    t0 = time.perf_counter()
    p = subprocess.run([*SNAKEMAKE, "--cores", str(cores), "--configfile", *configs], cwd=wd, capture_output=True,
                       text=True)
    if p.returncode:
        raise SystemExit(f"snakemake failed in {wd}:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return time.perf_counter() - t0


# Snakemake's benchmark thread samples a job's CPU time every 0.5 s for its first 30 samples, then every 30 s
# (snakemake/benchmark.py): a job that ends between two samples keeps the CPU of the last one, so the
# `cpu_time` of a job longer than ~15 s can be half its real CPU (a 31 s demo fusion job: 15 s recorded, 29 s
# used). Wall seconds are exact.
CPU_SAMPLED_S = 15.0


def rule_seconds(results: str | Path, since: float | None = None, pattern: str = "*.tsv"):
    """Snakemake's benchmark files under <results>/benchmarks -> DataFrame indexed by rule with jobs, s (wall),
    cpu (CPU seconds), summed over the rule's jobs, and long (its jobs over CPU_SAMPLED_S wall, whose cpu is
    a lower bound). A rule is the file's folder under benchmarks/ (classify, features/<set>) or a top-level
    file's stem (mae_pretrain). since: only files written after that time (the jobs of the latest call);
    pattern: only these file names (p0*.tsv: the predict shards)."""
    import pandas as pd

    root = Path(results) / "benchmarks"
    rows = []
    for f in sorted(root.rglob(pattern)) if root.is_dir() else []:
        if since is not None and f.stat().st_mtime < since:
            continue
        rel = f.parent.relative_to(root)
        t = pd.read_csv(f, sep="\t")
        s = float(t["s"].iloc[-1])
        rows.append({"rule": f.stem if rel == Path(".") else str(rel), "s": s, "cpu": float(t["cpu_time"].iloc[-1]),
                     "long": int(s > CPU_SAMPLED_S)})
    df = pd.DataFrame(rows, columns=["rule", "s", "cpu", "long"])
    return df.groupby("rule").agg(jobs=("s", "size"), s=("s", "sum"), cpu=("cpu", "sum"), long=("long", "sum"))


def stage_of(rule: str) -> str:
    """The top folder of a rule's benchmark path: faces, features, asr, classify, ..."""
    return rule.split("/")[0]


# A child process that reports its peak RSS (VmHWM) on exit: ru_maxrss would carry the parent's peak across
# fork + exec. Run it as [sys.executable, "-c", peak_rss_child("snakemake"), *args]; parse with peak_rss_mb.
def peak_rss_child(module: str) -> str:
    return ("import atexit, runpy, sys; atexit.register(lambda: print('PEAK_RSS_MB', [int(l.split()[1]) // 1024 "
            "for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr)); "
            f"sys.argv = [{module!r}, *sys.argv[1:]]; runpy.run_module({module!r}, run_name='__main__')")


def peak_rss_mb(stderr: str) -> int:
    import re

    m = re.search(r"PEAK_RSS_MB (\d+)", stderr)
    return int(m.group(1)) if m else -1

"""Snakemake's console output, read line by line: one line per finished job, notes once, a failure summary.

Snakemake prints a block of 6-10 lines per job start, the shell command, and a second block per failure;
on a 31-job run that is ~560 lines, the reason for a failure hundreds of lines above the end. `Console`
keeps what a user acts on: `[done/total] rule (wildcards)  elapsed, ETA`, each distinct `note:` /
warning line once, and at the end every failed job with its log and the lines of that log that say why.
Snakemake's full output stays in its own log file (.snakemake/log/), which the summary names.

The ETA weighs the jobs still to run by the mean seconds of their rule in earlier benchmark records
(<results>/benchmarks/, written by every rule's `benchmark:`), scaled by how long the finished jobs took
against the same records (which absorbs the number of cores and a slower or faster machine). Without
records, every job counts the same.
"""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, median
from typing import TextIO

RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
STEPS = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done")
ERROR = re.compile(r"^Error in rule (\w+):$")
FIELD = re.compile(r"^\s+(jobid|wildcards|log|message): (.*)$")
STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")
CONFIG_KEY = re.compile(r"config key ([A-Za-z_][\w.\[\]]*)")
COMPLETE_LOG = re.compile(r"^Complete log\(s\): (.*)$")
ONCE = re.compile(r"^(note|warning|Warning|\S+Warning):|^\S+\.py:\d+: \w*Warning:")
NOISE = re.compile(r"^\s*(File \"|Traceback|\^+$|~+$|warnings\.warn|_warnings\.warn)")


def bench_key(rule: str) -> str:
    """The benchmark records' name of a rule: the extractors share results/benchmarks/features/."""
    return "features" if rule.startswith("extract_") else rule


def benchmark_means(results: Path) -> dict[str, float]:
    """Mean wall seconds per rule (bench_key) of the records under <results>/benchmarks; {} when none."""
    import pandas as pd

    root = results / "benchmarks"
    times: dict[str, list[float]] = {}
    for f in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rel = f.relative_to(root).parts
        key = rel[0].removesuffix(".tsv")
        if key == "fuse" and f.stem.endswith("_late"):
            key = "fuse_late"
        try:
            s = float(pd.read_csv(f, sep="\t")["s"].mean())
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            continue  # a half-written or foreign file: no record
        if s == s:
            times.setdefault(key, []).append(s)
    return {k: mean(v) for k, v in times.items()}


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def meaningful_tail(log: Path, n: int = 6) -> list[str]:
    """The lines of a job's log that say why it failed: from a Python traceback its last line (the
    exception) and what follows; otherwise the last n non-blank lines, file/caret frames left out."""
    try:
        lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return [f"(log {log} not readable)"]
    tb = max((i for i, ln in enumerate(lines) if ln.startswith("Traceback")), default=-1)
    if tb >= 0:
        body = [ln for ln in lines[tb + 1:] if not NOISE.match(ln) and not ln.startswith("    ")]
        return body[-n:] or lines[-n:]
    return [ln for ln in lines if not NOISE.match(ln)][-n:]


@dataclass
class Failure:
    rule: str
    jobid: str = ""
    wildcards: str = ""
    logs: list[str] = field(default_factory=list)
    message: str = ""

    def render(self, workdir: Path) -> list[str]:
        head = f"  {self.rule}" + (f" ({self.wildcards})" if self.wildcards else "")
        out = [head]
        tail: list[str] = []
        for lg in self.logs:
            out.append(f"    log: {lg}")
            tail += meaningful_tail(workdir / lg)
        if self.message and self.message != "None":
            tail.append(self.message)
        out += [f"    | {ln}" for ln in tail]
        keys = sorted({k.rstrip(".") for ln in tail for k in CONFIG_KEY.findall(ln)})
        if keys:
            out.append(f"    config key: {', '.join(keys)}")
        return out


class Console:
    """Feed it Snakemake's output lines (`feed`); `verbose` passes them all through unchanged,
    `quiet` prints no progress lines (notes, warnings and the summary still)."""

    def __init__(self, out: TextIO = sys.stdout, quiet: bool = False, verbose: bool = False,
                 means: dict[str, float] | None = None, cores: int = 1) -> None:
        self.out, self.quiet, self.verbose = out, quiet, verbose
        self.means = means or {}
        self.start = time.monotonic()
        self.counts: dict[str, int] = {}   # jobs per rule, from Snakemake's job stats table
        self.in_stats = False
        self.jobs: dict[str, tuple[str, str]] = {}  # jobid -> (rule, wildcards)
        self.current: tuple[str, str] | None = None  # (rule, jobid) of the block being read
        self.done_rules: list[str] = []
        self.last_done = ""  # jobid of the last finished job
        self.failures: list[Failure] = []
        self.failing: Failure | None = None
        self.seen: set[str] = set()
        self.lines: list[str] = []  # the last lines (for errors that are not a job's: parse time)
        self.snakemake_log = ""

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _expected(self, rule: str) -> float:
        known = list(self.means.values())
        return self.means.get(bench_key(rule), median(known) if known else 1.0)

    def eta(self) -> float | None:
        """Seconds still to go, None before the first finished job."""
        if not self.done_rules:
            return None
        done = sum(self._expected(r) for r in self.done_rules)
        left = sum(self._expected(r) * n for r, n in self.counts.items()) - done
        return max(0.0, (time.monotonic() - self.start) * left / done) if done > 0 else None

    def feed(self, raw: str) -> None:
        line = raw.rstrip("\n")
        self.lines = (self.lines + [line])[-40:]
        if self.verbose:
            self.say(line)
        if m := COMPLETE_LOG.match(line):
            self.snakemake_log = m.group(1)
        self._stats(line)
        if m := RULE.match(line):
            self.current, self.failing = (m.group(1), ""), None
            return
        if m := ERROR.match(line):
            self.failing = Failure(m.group(1))
            self.failures.append(self.failing)
            self.current = None
            return
        if m := FIELD.match(line):
            self._field(m.group(1), m.group(2).strip())
            return
        if m := FINISHED.match(line):
            self.done_rules.append(m.group(2))
            self.last_done, self.current = m.group(1), None
            return
        if m := STEPS.match(line):
            self._progress(int(m.group(1)), int(m.group(2)))
            return
        if ONCE.match(line) and not self.verbose:
            if line not in self.seen:
                self.seen.add(line)
                self.say(line)

    def _stats(self, line: str) -> None:
        """Snakemake's `Job stats:` table (rule, count): the jobs of this run per rule."""
        if line.startswith("Job stats:"):
            self.in_stats, self.counts = True, {}
        elif self.in_stats:
            m = STATS_ROW.match(line.strip())
            if m and m.group(1) != "total":
                self.counts[m.group(1)] = int(m.group(2))
            elif not (line.startswith(("job ", "---")) or m):
                self.in_stats = False

    def _field(self, key: str, value: str) -> None:
        if self.failing is not None:
            if key == "jobid":
                self.failing.jobid = value
                self.failing.wildcards = self.jobs.get(value, ("", ""))[1]
            elif key == "log":
                self.failing.logs += [p.strip() for p in value.split(" (check log")[0].split(",") if p.strip()]
            elif key == "message":
                self.failing.message = value
            elif key == "wildcards":
                self.failing.wildcards = value
        elif self.current is not None:
            rule, jobid = self.current
            if key == "jobid":
                self.current = (rule, value)
                self.jobs[value] = (rule, self.jobs.get(value, ("", ""))[1])
            elif key == "wildcards" and jobid:
                self.jobs[jobid] = (rule, value)

    def _progress(self, done: int, total: int) -> None:
        if self.quiet or self.verbose:
            return
        rule = self.done_rules[-1] if self.done_rules else "?"
        wc = self.jobs.get(self.last_done, ("", ""))[1]
        eta = self.eta()
        width = len(str(total))
        self.say(f"[{done:>{width}}/{total}] {rule}" + (f" ({wc})" if wc else "")
                 + f"  {_clock(time.monotonic() - self.start)} elapsed"
                 + (f", ETA {_clock(eta)}" if eta is not None and done < total else ""))

    def summary(self, workdir: Path) -> list[str]:
        """What failed and why, one block per failed job (or Snakemake's own error when no job ran)."""
        out: list[str] = []
        # a job retried (--retries, the slurm profile) fails once per attempt: its last attempt stands for it
        failed = list({(f.rule, f.wildcards): f for f in self.failures}.values())
        if failed:
            out.append(f"{len(failed)} job(s) failed:")
            for f in failed:
                out += f.render(workdir)
        else:
            out += parse_error(self.lines)
        if self.snakemake_log:
            out.append(f"Snakemake's full output: {self.snakemake_log}")
        return out


def parse_error(lines: list[str], n: int = 8) -> list[str]:
    """Snakemake's error when no job ran (config, input or parse errors): from the last line naming an
    error to the end, without the closing boilerplate."""
    skip = ("Complete log", "Shutting down", "Exiting because", "Elapsed time", "WorkflowError:",
            "At least one job did not complete")
    start = max((i for i, ln in enumerate(lines) if re.search(r"(Error|Exception)\b", ln)
                 and not ln.startswith(skip)), default=max(0, len(lines) - n))
    body = [ln for ln in lines[start:] if ln.strip() and not ln.startswith(skip)][:n]
    keys = sorted({k.rstrip(".") for ln in body for k in CONFIG_KEY.findall(ln)})
    return ["Snakemake stopped before running a job:"] + [f"  | {ln}" for ln in body] + (
        [f"  config key: {', '.join(keys)}"] if keys else [])

"""`expmae report`: Snakemake's HTML report of the last run of any config, over what that run made.

`snakemake --report` stops at the first file marked for the report that does not exist (a run without
the video MAE has no results/mae_video/probe.json). This command asks Snakemake for the final targets
(the inputs of rule `all`), keeps those that exist, and builds the report over them; a target whose job
marks a missing file for the report is left out and named, and the rest of the report is still written.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

MISSING = re.compile(r"File (.+) marked for report but does not exist")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="expmae report", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                 epilog="Exit code: 0 when the report was written, 1 when there is nothing to "
                                 "report (no run yet) or Snakemake failed, 2 on a usage error.")
    ap.add_argument("--configfile", nargs="+", default=[], metavar="YAML", help="the run's config overlays")
    ap.add_argument("--out", default="", help="HTML file (default <results>/report.html)")
    return ap


def snakemake(args: list[str], configfiles: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    if configfiles:
        cmd += ["--configfile", *configfiles]
    return subprocess.run(cmd, capture_output=True, text=True)


def final_targets(configfiles: list[str]) -> list[str]:
    """The inputs of rule `all`, read from a forced dry run's listing (its `input:` line)."""
    p = snakemake(["-n", "--forceall", "all"], configfiles)
    text = p.stdout + p.stderr
    block = re.search(r"^(?:local)?rule all:\n((?:\s+.*\n)+)", text, re.M)
    if p.returncode != 0 or not block:
        raise RuntimeError(_last_error(text))
    line = re.search(r"^\s+input: (.*)$", block.group(1), re.M)
    return [t.strip() for t in line.group(1).split(", ")] if line else []


def _last_error(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    hit = [ln for ln in lines if re.search(r"Error|error|not exist|missing", ln)]
    return (hit or lines or ["snakemake failed"])[-1][:400]


def build(targets: list[str], out: str, configfiles: list[str], tries: int = 10) -> tuple[int, list[str]]:
    """-> (Snakemake's exit code, targets left out because their job marks a missing file)."""
    left_out: list[str] = []
    for _ in range(tries):
        p = snakemake(["--report", out, *targets], configfiles)
        m = MISSING.search(p.stdout + p.stderr)
        if p.returncode == 0 or not m:
            if p.returncode != 0:
                print(f"expmae report: snakemake --report failed: {_last_error(p.stdout + p.stderr)}", file=sys.stderr)
            return p.returncode, left_out
        folder = str(Path(m.group(1)).parent)
        drop = [t for t in targets if t == m.group(1) or str(Path(t).parent) == folder]
        if not drop:
            print(f"expmae report: {m.group(1)} is marked for the report but does not exist, and no final "
                  "target can be left out for it: run the workflow (expmae run) first", file=sys.stderr)
            return 1, left_out
        left_out += drop
        targets = [t for t in targets if t not in drop]
    return 1, left_out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from expmae.cli.run import read_config

    if not Path("Snakefile").is_file():
        print(f"expmae report: no Snakefile in {Path.cwd()}: run it from the repository root", file=sys.stderr)
        return 1
    results, problem = read_config(args.configfile)
    if problem:
        print(f"expmae report: {problem}", file=sys.stderr)
        return 1
    out = args.out or str(results / "report.html")
    try:
        targets = final_targets(args.configfile)
    except RuntimeError as err:
        print(f"expmae report: Snakemake cannot list the run's targets: {err}", file=sys.stderr)
        return 1
    there = [t for t in targets if Path(t).exists()]
    if not there:
        print(f"expmae report: none of the run's outputs exist under {results}/: run `expmae run` first",
              file=sys.stderr)
        return 1
    for t in targets:
        if t not in there:
            print(f"note: {t} does not exist, left out of the report")
    rc, left_out = build(there, out, args.configfile)
    for t in left_out:
        print(f"note: {t} left out of the report (its job marks a file for the report that does not exist)")
    if rc == 0:
        print(f"report: {out}")
        headline = results / "report" / "headline.txt"
        if headline.is_file():
            print(headline.read_text().rstrip())
    return 0 if rc == 0 else 1

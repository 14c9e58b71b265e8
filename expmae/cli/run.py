"""`expmae run`: Snakemake with the project's profile, one console line per finished job, the headline at the end.

Every option `expmae run` does not know goes to Snakemake unchanged (`--cores 16`, `-n`, `--forcerun faces`,
targets); so does everything after `--`. `snakemake --profile workflow/profiles/default ...` runs the same
workflow with Snakemake's own console.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from expmae.cli.progress import Console, benchmark_means

DEFAULT_PROFILE = "workflow/profiles/default"
NO_SLURM = ("no SLURM here: `sbatch` is not on PATH, so the slurm profile cannot submit a job. Run on the "
            "cluster's login node, or on this machine with --profile workflow/profiles/default")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="expmae run", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        epilog="Every other option goes to Snakemake as given: --configfile PRESET.yaml my.yaml (config overlays over "
        "config.yaml, later ones win; targets go before it or after --), --cores N, -n, targets. Exit code: "
        "0 when the run finished, 1 when a job failed or the config or data stopped it (a summary says which "
        "job, its log and the config key), 2 on a usage error.")
    ap.add_argument("--profile", default=DEFAULT_PROFILE,
                    help=f"Snakemake profile folder (default {DEFAULT_PROFILE}; workflow/profiles/slurm on a cluster)")
    quiet = ap.add_mutually_exclusive_group()
    quiet.add_argument("--quiet", action="store_true", help="no line per job: notes, the headline or the failures")
    quiet.add_argument("--verbose", action="store_true", help="Snakemake's whole output, unchanged")
    return ap


def profile_executor(profile: str, forwarded: list[str]) -> str:
    """The executor a run would use: --executor on the command line, else the profile's `executor:`."""
    if "--executor" in forwarded[:-1]:
        return forwarded[forwarded.index("--executor") + 1]
    for a in forwarded:
        if a.startswith("--executor="):
            return a.split("=", 1)[1]
    import yaml

    f = Path(profile) / "config.yaml"
    try:
        return str((yaml.safe_load(f.read_text()) or {}).get("executor") or "local")
    except (OSError, yaml.YAMLError):
        return "local"


def configfiles_of(args: list[str]) -> list[str]:
    """The config files among Snakemake's options: the words after --configfile up to the next option."""
    out: list[str] = []
    for i, a in enumerate(args):
        if a in ("--configfile", "--configfiles"):
            out += itertools.takewhile(lambda w: not w.startswith("-"), args[i + 1:])
        elif a.startswith(("--configfile=", "--configfiles=")):
            out.append(a.split("=", 1)[1])
    return out


def read_config(configfiles: list[str]) -> tuple[Path, str]:
    """-> (the config's `results:` folder, why the config does not load: one line naming the file or key, or
    ""). Read before Snakemake starts: its own message for a config error is a dump of the schema."""
    from expmae.config import load
    from expmae.features.registry import name_problems

    try:
        cfg = load(configfiles)
    except (OSError, ValueError) as err:
        return Path("results"), str(err)
    return Path(str(cfg.get("results") or "results")), "\n".join(name_problems(cfg))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, forwarded = parser().parse_known_args(argv[:cut])
    forwarded += argv[cut:]  # Snakemake reads `--` as the end of the options (targets follow)
    configfiles = configfiles_of(forwarded)
    if not Path("Snakefile").is_file():
        print(f"expmae run: no Snakefile in {Path.cwd()}: run it from the repository root", file=sys.stderr)
        return 1
    if not Path(args.profile, "config.yaml").is_file():
        print(f"expmae run: --profile {args.profile}: no config.yaml in that folder", file=sys.stderr)
        return 1
    if profile_executor(args.profile, forwarded) == "slurm" and not shutil.which("sbatch"):
        print(f"expmae run: {NO_SLURM}", file=sys.stderr)
        return 1
    results, problem = read_config(configfiles)
    overrides = any(a == "--config" or a.startswith("--config=") for a in forwarded)  # may fix what the files lack
    if problem and not overrides:  # a line per problem, each naming its key
        print("\n".join(f"expmae run: {line}" for line in problem.splitlines()), file=sys.stderr)
        return 1
    cmd = [sys.executable, "-m", "snakemake", "--profile", args.profile, *forwarded]
    console = Console(quiet=args.quiet, verbose=args.verbose, means=benchmark_means(results))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                          env=env) as proc:
        try:
            for line in proc.stdout or []:
                console.feed(line)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            print("expmae run: interrupted; `expmae run` again resumes (incomplete outputs are redone)",
                  file=sys.stderr)
            return 130
    dry = any(a in ("-n", "--dry-run", "--dryrun") for a in forwarded)
    if proc.returncode != 0:
        print("\n".join(console.summary(Path.cwd())), file=sys.stderr)
        return 1
    headline = results / "report" / "headline.txt"
    if dry:
        total = sum(console.counts.values())
        print(f"dry run: {total} job(s) would run" + (
            ": " + ", ".join(f"{r} {n}" for r, n in console.counts.items()) if total else " (nothing is stale)"))
    elif headline.is_file():
        print(f"\nmetrics: {results}/metrics.json  submission: {results}/submission/final.csv  QC: {results}/qc/")
        print(headline.read_text().rstrip())
    return 0

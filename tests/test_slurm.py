"""Real SLURM integration test: Snakemake's `--executor slurm` against a live one-node cluster.

Runs only under `make test-slurm`, which starts munged/slurmctld/slurmd with
tests/slurm/setup_slurm.sh, sets EXPMAE_SLURM=1 and SLURM_CONF, and stops the daemons after.
Elsewhere (no `sinfo` on PATH or EXPMAE_SLURM unset) every test here is skipped.

Accounting is off on that cluster, so job status comes from squeue
(`--slurm-status-command squeue`; setup_slurm.sh sets MinJobAge=300 so squeue still sees
finished jobs). The sbatch job ids are printed so they land in the CI log (run pytest with -s).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE_SNAKEFILE = REPO / "tests" / "slurm" / "Snakefile.smoke"

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        shutil.which("sinfo") is None or os.environ.get("EXPMAE_SLURM") != "1",
        reason="needs a live SLURM cluster: run `make test-slurm` (sets EXPMAE_SLURM=1)",
    ),
]

# What snakemake-executor-plugin-slurm 2.8 logs for every sbatch it makes.
SUBMITTED_RE = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
# What each smoke job writes (see Snakefile.smoke).
PROBE_RE = re.compile(r"rule=(\w+) name=(\w+) host=(\S+) job=(\S+)")

# Flags every SLURM run here shares. The status poll starts after 5 s instead of the
# plugin's 40 s so the test takes seconds, which stays valid because MinJobAge (300 s)
# >= 3 x 5 s; otherwise the plugin would fall back to sacct, which fails without accounting.
SLURM_FLAGS = [
    "--executor", "slurm",
    "--slurm-no-account",
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "5",
    "--slurm-keep-successful-logs",
    "--latency-wait", "15",
]


def snakemake_cmd() -> list[str]:
    """The snakemake of the interpreter running pytest (the project's .venv)."""
    return [sys.executable, "-m", "snakemake"]


def run_on_slurm(args: list[str], workdir: Path, timeout_s: int = 600) -> tuple[str, dict[int, str]]:
    """Run snakemake with `args` + SLURM_FLAGS in `workdir`; fail with its log on error.

    Returns (combined stdout/stderr, {snakemake job number: SLURM job id}).
    """
    cmd = [*snakemake_cmd(), *args, *SLURM_FLAGS, "--directory", str(workdir)]
    print("\n$ " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
    )
    log = proc.stdout
    # The run's own log file says the same; read it too in case stdout was cut short.
    for f in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log")):
        log += "\n" + f.read_text(errors="replace")
    assert proc.returncode == 0, (
        f"snakemake on SLURM exited {proc.returncode} after {time.monotonic() - t0:.0f}s;"
        f" last output:\n{proc.stdout[-6000:]}\n{slurm_job_logs(workdir)}"
    )
    submitted = {int(j): s for j, s in SUBMITTED_RE.findall(log)}
    print(f"snakemake on SLURM finished in {time.monotonic() - t0:.1f}s", flush=True)
    return log, submitted


def slurm_job_logs(workdir: Path, max_chars: int = 4000) -> str:
    """Tail of every SLURM job log under workdir (kept for failed jobs), for assertion messages."""
    parts = []
    for f in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")):
        parts.append(f"---- {f.relative_to(workdir)}\n{f.read_text(errors='replace')[-max_chars:]}")
    return "\n".join(parts) or "(no SLURM job logs)"


def squeue_states(job_ids: list[str]) -> dict[str, str]:
    """Final states as slurmctld reports them (squeue keeps finished jobs for MinJobAge)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T", "--jobs", ",".join(job_ids)],
        check=True, capture_output=True, text=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.split())


def test_smoke_workflow_runs_through_sbatch(tmp_path: Path) -> None:
    log, submitted = run_on_slurm(
        [
            "-s", str(SMOKE_SNAKEFILE),
            "--jobs", "2",
            "--default-resources", "slurm_partition=debug", "runtime=5", "mem_mb=500",
        ],
        tmp_path,
    )

    # Two probes + one gather, each its own sbatch with its own id.
    slurm_ids = sorted(submitted.values(), key=int)
    print(f"SLURM sbatch job ids (smoke): {' '.join(slurm_ids)}", flush=True)
    assert len(submitted) == 3 and len(set(slurm_ids)) == 3, f"expected 3 sbatch submissions:\n{log[-4000:]}"

    rows = [PROBE_RE.fullmatch(line) for line in (tmp_path / "gathered.tsv").read_text().splitlines()]
    assert all(rows), f"unexpected gathered.tsv:\n{(tmp_path / 'gathered.tsv').read_text()}"
    ran_under = {m.group(2): m.group(4) for m in rows}  # probe name / "all" -> $SLURM_JOB_ID
    print(f"jobs wrote SLURM_JOB_ID: {ran_under}", flush=True)
    assert set(ran_under) == {"a", "b", "all"}
    for name, job in ran_under.items():
        # A job run locally would say job=none; the id must be one sbatch handed back.
        assert job.isdigit(), f"{name} did not run under SLURM (job={job})"
        assert job in slurm_ids, f"{name} ran as SLURM job {job}, not one of the logged sbatch ids {slurm_ids}"
    assert len(set(ran_under.values())) == 3

    # slurmctld agrees: every submitted job completed.
    states = squeue_states(slurm_ids)
    print(f"squeue states: {states}", flush=True)
    assert all(states.get(j) == "COMPLETED" for j in slurm_ids), states


def test_tiny_expmae_pipeline_on_slurm(tmp_path: Path) -> None:
    """The real tiny expmae DAG, every non-local rule submitted with sbatch."""
    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.workflow import copy_workflow

    from expmae import demo

    wd = copy_workflow(tmp_path / "wf")
    demo.make_dataset(wd / "data" / "tiny", preset="tiny", seed=0)
    # The test node: 2 CPUs, no GPU. The MAE jobs take their GPU count from the config (mae.gpus,
    # mae_video.gpus: 0 = a CPU job, as a CPU-only cluster sets it); the extractors from the rule,
    # overridden below. A command-line --set-resources replaces the profile's list.
    (wd / "slurm_test.yaml").write_text(
        "pseudolabel:\n  rounds: 0\nmae:\n  gpus: 0\nmae_video:\n  gpus: 0\n"
    )
    log, submitted = run_on_slurm(
        ["-s", str(wd / "Snakefile"),
         "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
         "--configfile", str(wd / "config_tiny.yaml"), str(wd / "slurm_test.yaml"),
         "--jobs", "2", "--retries", "0",
         "--default-resources", "mem_mb=1000", "runtime=20",
         "--set-resources", "extract_visual:gpu=0", "extract_text:gpu=0",
         # every rule with threads > 2 (mae_video_pretrain inherits mae_pretrain's 8): sbatch would
         # otherwise queue it forever (PartitionConfig) on this 2-CPU node
         "--set-threads", "mae_pretrain=2", "mae_video_pretrain=2"],
        wd, timeout_s=1500,
    )
    ids = sorted(submitted.values(), key=int)
    print(f"SLURM sbatch job ids (pipeline): {' '.join(ids)}", flush=True)
    rules = set(re.findall(r"rule (\w+):", log))
    assert {"faces", "extract_audio", "extract_text", "mae_pretrain", "extract_visual", "classify", "fuse", "fuse_late",
            "report"} <= rules
    assert len(ids) >= 10 and len(set(ids)) == len(ids)
    assert (wd / "results" / "metrics.json").exists() and (wd / "results" / "submission" / "final.csv").exists()
    states = squeue_states(ids)
    assert all(states.get(j) == "COMPLETED" for j in ids), states

"""Launching MAE pretraining on one process, one DDP process per GPU, or several nodes.

The pretraining rules' shell starts with prefix(resources) (torch-free: the Snakefile imports it):

    gpu <= 1, one node   python -m expmae.mae.pretrain ...
    gpu = G, one node    torchrun --standalone --nproc_per_node=G -m expmae.mae.pretrain ...
    nodes = N > 1        python -m expmae.mae.launch --nnodes N --nproc-per-node G -- -m expmae.mae.pretrain ...

The last one runs inside the SLURM allocation (on its batch host) and, only there, knows the
allocation: it execs

    srun --nodes=N --ntasks=N --ntasks-per-node=1 [--cpus-per-task=C] --kill-on-bad-exit=1 \\
        python -m torch.distributed.run --nnodes=N --nproc-per-node=G --rdzv-backend=c10d \\
        --rdzv-endpoint=<first host of SLURM_JOB_NODELIST>:<port> --rdzv-id=<SLURM_JOB_ID> -m expmae.mae.pretrain ...

i.e. one torchrun agent per node, which starts G workers there; the agents meet at the c10d
rendezvous on the first node (torchrun's multi-node recipe). The slurm profile gives such a
job `mpi` (so the executor's job step runs the shell as is instead of wrapping it in `srun -n1`),
`tasks` = nodes and `gres: gpu:G` per node (see workflow/profiles/slurm/config.yaml).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from typing import Any, Mapping, Sequence

RDZV_PORT = 29400  # torchrun's default c10d rendezvous port


def job_resources(section: Mapping[str, Any]) -> dict[str, Any]:
    """Snakemake resources of a pretraining job from its config section's gpus (per node) and
    nodes. Several nodes: what the slurm executor needs for one torchrun per node: gres per node,
    one task per node (tasks_per_gpu 0: no --ntasks-per-gpu), and `mpi`, so that its job step runs
    the shell itself instead of inside `srun -n1`."""
    gpus, nodes = int(section.get("gpus", 1)), int(section.get("nodes", 1))
    if nodes <= 1:
        return {"gpu": gpus}
    return {"nodes": nodes, "gres": f"gpu:{gpus}", "tasks": nodes, "tasks_per_gpu": 0, "mpi": "srun"}


def gpus_per_node(resources: Mapping[str, Any]) -> int:
    """GPUs per node: the count in gres (gpu:8, gpu:a100:8), else gpu (a job total) / nodes."""
    nodes = max(1, int(resources.get("nodes", 1) or 1))
    gres = str(resources.get("gres", "") or "")
    m = re.match(r"^gpu(?::[A-Za-z0-9_.]+)?:(\d+)$", gres)
    if m:
        return int(m.group(1))
    return int(resources.get("gpu", 0) or 0) // nodes


def prefix(resources: Mapping[str, Any]) -> str:
    """The start of the pretraining shell command for a job with these Snakemake resources."""
    nodes = int(resources.get("nodes", 1) or 1)
    gpus = gpus_per_node(resources)
    if nodes > 1:
        return f"python -m expmae.mae.launch --nnodes {nodes} --nproc-per-node {max(1, gpus)} --"
    return f"torchrun --standalone --nproc_per_node={gpus}" if gpus > 1 else "python"


def first_host(nodelist: str) -> str:
    """First host of a SLURM hostlist: "gpu[003-005,9],cpu1" -> "gpu003", "r[1-2]-n[07-08]" -> "r1-n07"."""
    head = re.split(r",(?![^\[]*\])", nodelist.strip())[0]  # the first entry (commas outside brackets)
    host = re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], head)
    if not host:
        raise ValueError(f"SLURM_JOB_NODELIST {nodelist!r} names no host")
    return host


def command(nnodes: int, nproc: int, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """argv: the python arguments (e.g. -m expmae.mae.pretrain ...) -> the command to exec."""
    if nnodes <= 1:
        if nproc <= 1:
            return [sys.executable, *argv]
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *argv]
    if not env.get("SLURM_JOB_NODELIST"):
        raise SystemExit(f"error: pretraining on {nnodes} nodes (resources nodes={nnodes}) needs a SLURM allocation: "
                         "SLURM_JOB_NODELIST is not set (run it with --profile workflow/profiles/slurm)")
    host = first_host(env["SLURM_JOB_NODELIST"])
    port = env.get("EXPMAE_RDZV_PORT", str(RDZV_PORT))
    srun = ["srun", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if env.get("SLURM_CPUS_PER_TASK"):  # srun no longer inherits sbatch's --cpus-per-task (Slurm >= 22.05)
        srun.insert(4, f"--cpus-per-task={env['SLURM_CPUS_PER_TASK']}")
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc-per-node={nproc}",
                "--rdzv-backend=c10d", f"--rdzv-endpoint={host}:{port}",
                f"--rdzv-id={env.get('SLURM_JOB_ID', 'expmae')}"]
    return [*srun, *torchrun, *argv]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run python arguments on N nodes x G processes (srun + torchrun).")
    ap.add_argument("--nnodes", type=int, required=True)
    ap.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) per node")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then the python arguments (-m module ...)")
    a = ap.parse_args(argv)
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    if not args:
        ap.error("nothing to launch: give the python arguments after --")
    cmd = command(a.nnodes, a.nproc_per_node, args, os.environ)
    print("launch:", shlex.join(cmd), file=sys.stderr, flush=True)
    os.execvp(cmd[0], cmd)  # the job's process becomes srun/torchrun: signals and exit status pass through


if __name__ == "__main__":
    main()

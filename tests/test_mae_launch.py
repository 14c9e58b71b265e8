"""expmae.mae.launch: the srun + torchrun command for a SLURM allocation, and two gloo processes
through the multi-node launcher."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from expmae.mae import launch
from fixtures.mae_shards import TINY_RUN as TINY, two_shards

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return two_shards(tmp_path_factory.mktemp("faces"))


def test_launch_command_for_a_slurm_allocation() -> None:
    assert launch.first_host("gpu[003-005,9],cpu1") == "gpu003"
    assert launch.first_host("r[1-2]-n[07-08]") == "r1-n07" and launch.first_host("node7") == "node7"
    env = {"SLURM_JOB_NODELIST": "gpu[003-004]", "SLURM_JOB_ID": "4242", "SLURM_CPUS_PER_TASK": "16"}
    cmd = launch.command(2, 8, ["-m", "expmae.mae.pretrain", "--out", "o"], env)
    srun, torchrun = cmd[: cmd.index(sys.executable)], cmd[cmd.index(sys.executable):]
    assert srun == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=16",
                    "--kill-on-bad-exit=1"]
    assert torchrun == [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=8",
                        "--rdzv-backend=c10d", "--rdzv-endpoint=gpu003:29400", "--rdzv-id=4242",
                        "-m", "expmae.mae.pretrain", "--out", "o"]
    with pytest.raises(SystemExit, match="SLURM_JOB_NODELIST"):
        launch.command(2, 8, ["-m", "x"], {})
    assert launch.prefix({"gpu": 1}) == "python"
    assert launch.prefix({"gpu": 4}) == "torchrun --standalone --nproc_per_node=4"
    assert launch.prefix({"nodes": 2, "gres": "gpu:a100:8"}) == \
        "python -m expmae.mae.launch --nnodes 2 --nproc-per-node 8 --"


FAKE_SRUN = """#!{python}
# Stand-in for srun on a machine without SLURM: start the command once per task, here, with the
# SLURM task variables set, and exit with the first failure (as --kill-on-bad-exit).
import os, subprocess, sys
args = sys.argv[1:]
n = int(next(a for a in args if a.startswith("--ntasks=")).split("=")[1])
cmd = args[next(i for i, a in enumerate(args) if not a.startswith("--")):]
procs = [subprocess.Popen(cmd, env={{**os.environ, "SLURM_PROCID": str(i), "SLURM_NODEID": str(i)}}) for i in range(n)]
sys.exit(max(p.wait() for p in procs))
"""


@pytest.mark.slow
def test_two_gloo_processes_through_the_multi_node_launcher(shards, tmp_path) -> None:
    """Two 'nodes' x 1 process: the launcher's srun + torchrun command, c10d rendezvous on
    localhost, DDP over gloo; rank 0 writes the encoder and records world size 2."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN.format(python=sys.executable))
    (bin_dir / "srun").chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "localhost",
           "SLURM_JOB_ID": "1", "EXPMAE_RDZV_PORT": str(port), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    params = json.dumps({**TINY, "epochs": 1, "tensorboard": False})
    cmd = [sys.executable, "-m", "expmae.mae.launch", "--nnodes", "2", "--nproc-per-node", "1", "--",
           "-m", "expmae.mae.pretrain", "--faces", *map(str, shards), "--out", str(tmp_path / "out"),
           "--params", params]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "launch: srun --nodes=2" in p.stderr and "--rdzv-endpoint=localhost:" in p.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["world_size"] == 2 and (tmp_path / "out" / "encoder.safetensors").exists()
    torch.testing.assert_close(torch.tensor(meta["step_losses"]).isfinite().all(), torch.tensor(True))

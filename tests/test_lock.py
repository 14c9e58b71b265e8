"""One run per results/ folder (expmae/lock.py), whatever the workdir."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from expmae import lock
from fixtures.workflow import placeholder_workflow, smk


@pytest.fixture
def holder():
    """A live process of this host that is not us: a run holding the lock."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield p.pid
    p.kill()
    p.wait()


def test_acquire_release_and_refusal(tmp_path, holder):
    res = tmp_path / "results"
    p = lock.acquire(res, pid=holder)
    info = json.loads(p.read_text())
    assert info["pid"] == holder and info["host"] == socket.gethostname() and info["started"]
    with pytest.raises(lock.Locked, match=rf"{p}: results folder in use by another run \(pid {holder} .*remove {p}"):
        lock.acquire(res)
    assert lock.release(res) is False and p.exists()  # never removes another run's lock
    assert lock.release(res, pid=holder) and not p.exists()
    assert lock.acquire(res) == p and lock.acquire(res) == p  # ours: taking it twice is fine
    assert lock.release(res) and not p.exists()


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    res = tmp_path / "results"
    res.mkdir()
    lock.path(res).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "x"}))
    assert lock.stale(lock.holder(res))
    lock.acquire(res)
    assert json.loads(lock.path(res).read_text())["pid"] == os.getpid()
    assert "stale lock" in capsys.readouterr().err
    lock.release(res)


def test_other_host_or_unreadable_lock_is_refused_naming_the_file(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    lock.path(res).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(lock.Locked, match="pid 1 on elsewhere"):
        lock.acquire(res)
    lock.path(res).write_text("{not json")
    with pytest.raises(lock.Locked, match="unreadable holder.*remove"):
        lock.acquire(res)


@pytest.mark.e2e
def test_two_workdirs_on_one_results_folder(tmp_path, holder):
    """Real Snakemake runs in two workdirs sharing results/: while another run holds it, a real run is
    refused before it writes anything, a dry run is not (and takes nothing); once the holder is gone its
    stale lock is taken over and released at the end."""
    shared = tmp_path / "shared_results"
    wds = [placeholder_workflow(tmp_path / f"wd{i}") for i in (1, 2)]
    for wd in wds:
        cfg = yaml.safe_load((wd / "config_tiny.yaml").read_text())
        cfg["results"] = str(shared)
        (wd / "config_tiny.yaml").write_text(yaml.safe_dump(cfg))
    target = str(shared / "ingest" / "s00000.parquet")
    lock.acquire(shared, pid=holder)
    refused = smk(wds[1], "-p", target, check=False)
    assert refused.returncode != 0
    assert f"{lock.path(shared)}: results folder in use by another run (pid {holder}" in refused.stderr
    assert not (shared / "ingest").exists()  # the registry was not written under the holder
    dry = smk(wds[1], "-n", target)
    assert dry.returncode == 0 and json.loads(lock.path(shared).read_text())["pid"] == holder
    os.kill(holder, 9)
    os.waitpid(holder, 0)
    done = smk(wds[0], "-p", target)
    assert "stale lock" in done.stderr and Path(target).exists() and not lock.path(shared).exists()

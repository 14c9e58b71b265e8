"""One run per results/ folder, whatever the workdir: a lock file inside it (`<results>/.lock`).

Snakemake's own lock lives in each workdir's .snakemake/, so two workdirs configured with one
`results:` folder would both run and rewrite the registry under each other. The workflow takes this
lock when a real run starts (Snakefile `onstart`, before the registry is saved) and releases it on
exit (`onsuccess` / `onerror`); dry runs, --lint and --report never reach those hooks, so they
neither take it nor write anything.

The file holds the holder's pid, host and start time as JSON, created with O_EXCL (atomic on local
file systems and NFSv3+). A lock whose pid is not running on this host is stale (the run was killed
with SIGKILL or the machine rebooted): it is taken over with a warning. A lock held by another host
cannot be checked from here: the message names the file, its holder and how to clear it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
from pathlib import Path

NAME = ".lock"


class Locked(RuntimeError):
    """Another run holds the results folder: the message names the lock file, its holder and the fix."""


def path(results: str | os.PathLike) -> Path:
    return Path(results) / NAME


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True


def holder(results: str | os.PathLike) -> dict | None:
    """The lock's content (pid, host, started), {} when unreadable, None when there is no lock."""
    try:
        text = path(results).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def stale(info: dict) -> bool:
    """True when the holder is known to be gone: its pid is not running on this host."""
    try:
        pid = int(info.get("pid", 0))
    except (TypeError, ValueError):
        return False
    return info.get("host") == socket.gethostname() and pid > 0 and not _alive(pid)


def _describe(info: dict) -> str:
    if not info:
        return "unreadable holder"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"


def acquire(results: str | os.PathLike, pid: int | None = None) -> Path:
    """Take the lock for `pid` (default: this process) or raise Locked. A stale lock on this host is
    replaced (with a warning on stderr)."""
    pid = os.getpid() if pid is None else pid
    p = path(results)
    p.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": socket.gethostname(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            old = holder(results)
            if old is None:  # released in between
                continue
            if old.get("pid") == pid and old.get("host") == info["host"]:
                return p  # already ours (a hook called twice)
            if stale(old):
                print(f"warning: {p}: stale lock of a run that is gone ({_describe(old)}): taken over",
                      file=sys.stderr)
                p.unlink(missing_ok=True)
                continue
            raise Locked(f"{p}: results folder in use by another run ({_describe(old)}); wait for it to end, "
                         f"or, if it is gone, remove {p}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
        return p
    raise Locked(f"{p}: could not take the lock (removed and recreated by another run meanwhile); retry")


def release(results: str | os.PathLike, pid: int | None = None) -> bool:
    """Remove the lock if `pid` (default: this process) on this host holds it; True when removed.
    Never removes another run's lock (a run refused by acquire still ends through onerror)."""
    pid = os.getpid() if pid is None else pid
    info = holder(results)
    if not info or info.get("pid") != pid or info.get("host") != socket.gethostname():
        return False
    path(results).unlink(missing_ok=True)
    return True

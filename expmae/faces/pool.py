"""A small process pool that survives its workers dying.

Video decoders (decord, FFmpeg) can segfault, abort or hang on hostile files. Each
worker is a spawned process that loads its state once (the detector) and then handles
one item at a time, so the parent always knows which item a dead or stuck worker was
on: that item becomes a Failure, the worker is replaced, and the rest goes on.
multiprocessing.Pool / ProcessPoolExecutor cannot do this (a dead worker breaks the
whole pool).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator, Sequence

MAX_INIT_DEATHS = 3  # a worker that keeps dying before it is ready is a bug, not a bad file


@dataclass
class Failure:
    message: str


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    ready: bool = False
    task: int | None = None
    started: float = 0.0
    dead: bool = field(default=False)


def _worker_main(conn: Connection, init: Callable, init_args: tuple, work: Callable) -> None:
    # One process per core: keep native libraries from starting their own thread pools.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        state = init(*init_args)
        # numpy's OpenBLAS was loaded (when the pickled `init` was imported) before the
        # variables above were set; cap every pool now loaded. Spin-waiting native pools cost
        # up to 80x per call on a loaded box (tests/test_faces.py, _one_native_thread).
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except BaseException:
        conn.send(("init_error", None, traceback.format_exc()))
        return
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg is None:
            return
        i, item = msg
        try:
            result = ("ok", i, work(state, item))
        except Exception as e:  # a Python error on one item; the worker itself is fine
            result = ("err", i, f"{type(e).__name__}: {e}"[:300])
        conn.send(result)


def _death_reason(proc: Any) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            return f"worker crashed ({signal.Signals(-code).name})"
        except ValueError:
            return f"worker crashed (signal {-code})"
    return f"worker exited (code {code})"


def run_guarded(items: Sequence[Any], init: Callable, init_args: tuple, work: Callable[[Any, Any], Any],
                n_workers: int, timeout_s: float = 600.0) -> Iterator[tuple[int, Any]]:
    """Yield (index, work(state, items[index]) or Failure) in completion order.

    init/work must be module-level functions (they are pickled into spawned processes).
    n_workers == 0 runs in this process (no crash isolation; for debugging/profiling).
    An exception raised by init is re-raised here (e.g. a missing model)."""
    if n_workers <= 0:
        state = init(*init_args)
        for i, item in enumerate(items):
            try:
                yield i, work(state, item)
            except Exception as e:
                yield i, Failure(f"{type(e).__name__}: {e}"[:300])
        return

    ctx = mp.get_context("spawn")  # fork would copy the parent's threads and locks
    pending = list(range(len(items)))[::-1]  # pop() from the end = manifest order
    workers: list[_Worker] = []
    init_deaths = 0

    def start() -> _Worker:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child, init, init_args, work), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def stop(w: _Worker, grace_s: float = 1.0) -> None:
        w.dead = True
        w.proc.join(grace_s)  # let a crashing worker finish dying, so its exit code is the real one
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(5)
        w.conn.close()

    try:
        workers = [start() for _ in range(min(n_workers, len(items)))]
        while pending or any(w.task is not None for w in workers):
            for w in workers:
                if w.ready and w.task is None and pending:
                    w.task, w.started = pending.pop(), time.monotonic()
                    w.conn.send((w.task, items[w.task]))
            busy = [w for w in workers if w.task is not None]
            wait_s = min((w.started + timeout_s - time.monotonic() for w in busy), default=None)
            ready = wait([w.conn for w in workers] + [w.proc.sentinel for w in workers],
                         timeout=None if wait_s is None else max(wait_s, 0.0))
            replace: list[tuple[_Worker, str | None]] = []
            for w in workers:
                if w.conn in ready:
                    try:
                        kind, i, payload = w.conn.recv()
                    except (EOFError, OSError):
                        replace.append((w, None))
                        continue
                    if kind == "init_error":
                        raise RuntimeError(f"face worker failed to start:\n{payload}")
                    if kind == "ready":
                        w.ready = True
                        continue
                    w.task = None
                    yield i, (payload if kind == "ok" else Failure(payload))
                elif w.proc.sentinel in ready:
                    replace.append((w, None))
                elif w.task is not None and time.monotonic() - w.started > timeout_s:
                    replace.append((w, f"timed out after {timeout_s:.0f} s"))
            for w, why in replace:
                if w.task is None and why is None and w.proc.is_alive():
                    continue  # spurious wake-up
                task = w.task
                stop(w, grace_s=0.0 if why else 1.0)
                if task is not None:
                    yield task, Failure(why or _death_reason(w.proc))
                elif not w.ready:
                    init_deaths += 1
                    if init_deaths > MAX_INIT_DEATHS:
                        raise RuntimeError(f"face workers keep dying at start-up: {_death_reason(w.proc)}")
                if pending:
                    workers[workers.index(w)] = start()
                else:
                    workers.remove(w)
            if not pending:  # idle workers are no longer needed
                for w in [w for w in workers if w.task is None and w.ready]:
                    w.conn.send(None)
                    stop(w, grace_s=5.0)
                    workers.remove(w)
    finally:
        for w in workers:
            if not w.dead:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
                stop(w, grace_s=0.2)  # normal runs stop idle workers above; this is the error path

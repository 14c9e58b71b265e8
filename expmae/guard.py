"""A small process pool that survives its workers dying: the per-video time limit of every stage
that decodes media (faces: expmae.faces.extract; audio decoding and ASR: expmae.features.media).

Video and audio decoders (decord, FFmpeg) can segfault, abort or hang on hostile files. Each
worker is a spawned process that loads its state once (a detector, a speech model, nothing) and then
handles one item at a time, so the parent always knows which item a dead or stuck worker was
on: that item becomes a Failure ("timed out after N s", "worker crashed (SIGSEGV)"), the worker
is replaced, and the rest goes on.
multiprocessing.Pool / ProcessPoolExecutor cannot do this (a dead worker breaks the
whole pool).

Streaming workers (run_guarded(stream=...)): the parent keeps up to `depth` items in
flight per worker, so the worker can decode the next video while it detects this one
(worker.process_stream). Results still come back in the order sent. When such a worker
dies with several items in flight, the parent cannot tell which one killed it: each of
them is retried alone ("solo", nothing else in flight on that worker), so only the
culprit becomes a Failure. A timeout is charged to the oldest item in flight.
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
    tasks: list[int] = field(default_factory=list)  # in flight, oldest first
    started: float = 0.0  # when tasks[0] became the oldest
    solo: bool = False    # tasks[0] is a retry that runs alone
    dead: bool = field(default=False)


def _received(conn: Connection) -> Iterator[tuple[int, Any]]:
    """(index, item) messages until the parent sends None or goes away."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        yield msg


def _worker_main(conn: Connection, init: Callable, init_args: tuple, work: Callable,
                 stream: Callable | None = None) -> None:
    # One process per core: keep native libraries from starting their own thread pools. A face
    # worker then runs two threads (worker.process_stream: detection here, decoding beside it),
    # each single-threaded natively, so 2 workers on 2 cores never spin-wait for each other.
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
    if stream is not None:  # items are read by the stream's own thread; results sent from here
        for i, res in stream(state, _received(conn)):
            conn.send(("err", i, res.message) if isinstance(res, Failure) else ("ok", i, res))
        return
    for i, item in _received(conn):
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
                n_workers: int, timeout_s: float = 600.0, stream: Callable | None = None,
                depth: int = 2) -> Iterator[tuple[int, Any]]:
    """Yield (index, work(state, items[index]) or Failure) in completion order.

    init/work/stream must be module-level functions (they are pickled into spawned processes).
    stream(state, iterator of (index, item)) -> iterator of (index, result or Failure), in
    order, replaces work's one-at-a-time loop; each worker then holds up to `depth` items.
    n_workers == 0 runs in this process (no crash isolation; for debugging/profiling).
    An exception raised by init is re-raised here (e.g. a missing model)."""
    if n_workers <= 0:
        state = init(*init_args)
        if stream is not None:
            yield from stream(state, enumerate(items))
            return
        for i, item in enumerate(items):
            try:
                yield i, work(state, item)
            except Exception as e:
                yield i, Failure(f"{type(e).__name__}: {e}"[:300])
        return

    ctx = mp.get_context("spawn")  # fork would copy the parent's threads and locks
    pending = list(range(len(items)))[::-1]  # pop() from the end = manifest order
    solo: list[int] = []  # in flight on a worker that died: retried one at a time
    depth = max(1, depth) if stream is not None else 1
    workers: list[_Worker] = []
    init_deaths = 0

    def start() -> _Worker:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child, init, init_args, work, stream), daemon=True)
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

    def send(w: _Worker, task: int, alone: bool = False) -> None:
        if not w.tasks:
            w.started, w.solo = time.monotonic(), alone
        w.tasks.append(task)
        w.conn.send((task, items[task]))

    try:
        workers = [start() for _ in range(min(n_workers, len(items)))]
        while pending or solo or any(w.tasks for w in workers):
            for w in workers:
                if not w.ready or w.solo:
                    continue
                if solo:  # retries first, each alone on an idle worker
                    if not w.tasks:
                        send(w, solo.pop(), alone=True)
                    continue
                while pending and len(w.tasks) < depth:
                    send(w, pending.pop())
            busy = [w for w in workers if w.tasks]
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
                        raise RuntimeError(f"worker failed to start:\n{payload}")
                    if kind == "ready":
                        w.ready = True
                        continue
                    w.tasks.remove(i)
                    w.started, w.solo = time.monotonic(), w.solo and bool(w.tasks)
                    yield i, (payload if kind == "ok" else Failure(payload))
                elif w.proc.sentinel in ready:
                    replace.append((w, None))
                elif w.tasks and time.monotonic() - w.started > timeout_s:
                    replace.append((w, f"timed out after {timeout_s:.0f} s"))
            for w, why in replace:
                if not w.tasks and why is None and w.proc.is_alive():
                    continue  # spurious wake-up
                tasks = list(w.tasks)
                stop(w, grace_s=0.0 if why else 1.0)
                if why and tasks:  # the oldest item overran; the others go back in line
                    yield tasks[0], Failure(why)
                    pending.extend(tasks[:0:-1])
                elif len(tasks) == 1:
                    yield tasks[0], Failure(_death_reason(w.proc))
                elif tasks:  # which of them killed it? each runs alone next
                    solo.extend(tasks[::-1])
                elif not w.ready:
                    init_deaths += 1
                    if init_deaths > MAX_INIT_DEATHS:
                        raise RuntimeError(f"workers keep dying at start-up: {_death_reason(w.proc)}")
                if pending or solo:
                    workers[workers.index(w)] = start()
                else:
                    workers.remove(w)
            if not pending and not solo:  # idle workers are no longer needed
                for w in [w for w in workers if not w.tasks and w.ready]:
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

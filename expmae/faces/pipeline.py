"""A decode thread feeding the detector through a bounded queue (worker.process_stream).

Prefetch runs produce(item) -> events in one background thread, item after item, while the
caller consumes the events of an earlier item: a face worker decodes clip i+1 while it
detects on clip i. PyAV's decoder, cv2 and the detector (detectors/yunet.py calls
libfacedetection through ctypes) drop the GIL, so the two threads really run at once.
The queue holds at most `maxsize` events (a few full-resolution frames), so memory stays
bounded however far decoding runs ahead.

Events of one item arrive in order and together; the caller gets (index, item, events) per
item and may stop reading an item's events early (its detection raised): the rest of that
item is skipped, and the next item follows. Leaving the `with` block (normally, on an
error, or when the consumer is closed) stops the thread and joins it.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_END = object()   # end of one item's events
_DONE = object()  # no more items


class ProducerError(Exception):
    """produce(item) raised: the item fails with this message, the thread goes on."""


class Prefetch:
    def __init__(self, produce: Callable[[Any], Iterable[Any]], items: Iterable[tuple[int, Any]],
                 maxsize: int = 6, name: str = "decode") -> None:
        self._produce, self._items = produce, items
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._finished = False  # the consumer has seen _DONE

    # ------------------------------------------------------------------ producer side
    def _put(self, x: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for i, item in self._items:
                if not self._put((i, item)):
                    return
                try:
                    for ev in self._produce(item):
                        if not self._put(ev):
                            return
                except Exception as e:  # a bug or an unexpected decoder error: this item only
                    if not self._put(ProducerError(f"{type(e).__name__}: {e}"[:300])):
                        return
                if not self._put(_END):
                    return
        except Exception as e:  # the item source itself failed (e.g. a broken pipe): end the stream
            self._put(ProducerError(f"{type(e).__name__}: {e}"[:300]))
        finally:
            self._put(_DONE)

    # ------------------------------------------------------------------ consumer side
    def __enter__(self) -> "Prefetch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __iter__(self) -> Iterator[tuple[int, Any, Iterator[Any]]]:
        while not self._finished:
            head = self._q.get()
            if head is _DONE:
                self._finished = True
                return
            if isinstance(head, ProducerError):  # the item source broke between items
                raise head
            i, item = head
            state = {"open": True}
            yield i, item, self._events(state)
            while state["open"]:  # the consumer stopped early: skip the rest of this item
                ev = self._q.get()
                if ev is _END or ev is _DONE:
                    state["open"] = False
                    self._finished = ev is _DONE

    def _events(self, state: dict) -> Iterator[Any]:
        while state["open"]:
            ev = self._q.get()
            if ev is _END:
                state["open"] = False
                return
            if ev is _DONE:  # the thread was stopped mid-item
                state["open"] = False
                self._finished = True
                raise ProducerError("decode thread stopped")
            if isinstance(ev, ProducerError):
                raise ev
            yield ev

"""The faces stage's guarded pool: expmae.guard (a process pool that survives its workers dying,
with a per-video time limit), shared with audio decoding and ASR. Re-exported here for the faces
modules and their tests."""
from __future__ import annotations

from expmae.guard import Failure, run_guarded

__all__ = ["Failure", "run_guarded"]

"""No audio decode waits forever (#27): expmae.guard's per-video time limit, used by audio decoding
(expmae.features.media.decode_all) and ASR (expmae.features.asr). Real inputs the decoder blocks on or
never finishes: a named pipe nobody writes to, and a sparse WAV whose header promises ~37 hours of audio."""
from __future__ import annotations

import os
import struct
import time
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmae.features import asr, media

pytestmark = pytest.mark.slow  # spawns worker processes


def endless_wav(path: Path, data_bytes: int = 0xFFFFFF00, rate: int = 8000) -> Path:
    """A WAV header claiming ~4 GB of 16-bit PCM, the data a hole (no disk used): decoding reads zeros
    for minutes, a stand-in for a decode that never ends."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    head = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + data_bytes)
    return path


def short_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes())
    return path


def test_a_fifo_is_not_decoded(tmp_path: Path):
    """A named pipe nobody writes to: refused at once as not a regular file (the decoder would block on it)."""
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(media.AudioProblem, match="not a regular file"):
        media.load_audio(str(fifo))
    got = dict(media.decode_all([str(fifo)], timeout_s=5))
    assert got == {0: "not a regular file"} and time.monotonic() - t0 < 20


def test_a_decode_over_the_limit_is_a_qc_row_and_the_rest_goes_on(tmp_path: Path):
    paths = [str(endless_wav(tmp_path / "endless.wav")), str(short_wav(tmp_path / "ok.wav"))]
    t0 = time.monotonic()
    got = dict(media.decode_all(paths, 16000, 0.0, timeout_s=2))
    took = time.monotonic() - t0
    assert got[0] == "decode timed out after 2 s"
    assert isinstance(got[1], np.ndarray) and abs(len(got[1]) - 16000) < 400  # the next video decodes
    assert took < 2 + 15, took  # the limit, plus two worker starts on a loaded box


def test_asr_rows_for_a_stuck_and_a_missing_video(tmp_path: Path):
    """ASR: the endless video is a row `decode timed out after N s` (ok False) and the shard's table is written."""
    manifest = pd.DataFrame({"name": ["endless", "gone"],
                             "path": [str(endless_wav(tmp_path / "endless.wav")), str(tmp_path / "gone.mp4")]})
    t0 = time.monotonic()
    df = asr.transcribe_shard(manifest, ["endless", "gone"], {"max_seconds": 1e6, "timeout_s": 2})
    rows = df.set_index("name")
    assert rows.loc["endless", "reason"] == "decode timed out after 2 s" and not rows.loc["endless", "ok"]
    assert rows.loc["gone", "reason"] == "file missing"
    assert time.monotonic() - t0 < 2 + 20

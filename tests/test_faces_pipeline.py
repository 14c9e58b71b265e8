"""Face stage pipeline: the decode thread (worker.process_stream) against the sequential
path, the recorded output of the stage before the thread existed, detection errors, and
the guarded pool with two videos in flight per worker."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmae.faces import extract_shard, load_faces, resolve_params
from expmae.faces.detectors.yunet import YuNet
from expmae.faces.pipeline import Prefetch
from expmae.faces.pool import Failure, run_guarded
from expmae.faces.video import ProbeError, decode_pyav, probe
from expmae.faces.worker import detector_input, init_worker, process_stream, process_video
from fixtures import faces as syn

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PARAMS = {"fps": 8, "max_frames": 6}

pytestmark = pytest.mark.usefixtures("one_native_thread")


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "decode" and t.is_alive()]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> list[dict]:
    """Good videos with bad ones in the middle: unreadable bytes, cut files (partly decoded;
    beyond both decoders), a still image, a video without a face, a missing file."""
    d = tmp_path_factory.mktemp("pipeline")
    face = syn.face_frames(16, 320, 240)
    files = {"ok_a": syn.write_video(d / "ok_a.mp4", face, audio=True)}
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    files["random"] = d / "random.mp4"
    fast = syn.write_video(d / "fast.mp4", face, faststart=True).read_bytes()
    (d / "cut.mp4").write_bytes(fast[: len(fast) * 9 // 10])  # frames before the damage are kept
    files["cut"] = d / "cut.mp4"
    (d / "cut_more.mp4").write_bytes(_cut_past_the_probe(fast, d / "trial.mp4"))  # PyAV fails, then decord
    files["cut_more"] = d / "cut_more.mp4"
    files["two_faces"] = syn.write_video(d / "two.mp4", syn.face_frames(16, 480, 270, second_face=[True] * 16,
                                                                         seed=3))
    files["still"] = syn.write_video(d / "still.mp4", face[:1])
    files["no_face"] = syn.write_video(d / "no_face.mp4", [np.full((240, 320, 3), 128, np.uint8)] * 8)
    files["missing"] = d / "missing.mp4"
    files["ok_b"] = syn.write_video(d / "ok_b.mp4", syn.face_frames(12, 640, 480, seed=5), audio=True)
    return [{"name": k, "path": str(v)} for k, v in files.items()]


def _cut_past_the_probe(whole: bytes, trial: Path) -> bytes:
    """The longest head of `whole` whose first frame the probe decodes but whose sampled frames
    PyAV cannot: the file that takes the decord fallback. Searched, not a fixed fraction: where
    that window lies depends on the encoder's bytes (x264 version, threads)."""
    for k in range(95, 40, -1):
        head = whole[: len(whole) * k // 100]
        trial.write_bytes(head)
        try:
            pr = probe(str(trial))
        except ProbeError:
            continue
        try:
            next(iter(decode_pyav(str(trial), pr, PARAMS["fps"], PARAMS["max_frames"])), None)
        except Exception:
            trial.unlink()
            return head
    raise AssertionError("no cut of the clip passes the probe and then fails PyAV")


def _same(a: dict, b: dict) -> None:
    qa, qb = dict(a["qc"]), dict(b["qc"])
    qa.pop("seconds"), qb.pop("seconds")
    assert json.dumps(qa, sort_keys=True, default=str) == json.dumps(qb, sort_keys=True, default=str)
    assert a["frames"] == b["frames"]
    assert np.array_equal(a["crops"], b["crops"])


def test_decode_thread_gives_what_the_sequential_path_gives(mixed) -> None:
    state = init_worker(resolve_params(PARAMS))
    tasks = [t for t in mixed if t["name"] != "missing"]  # extract_shard settles missing files itself
    sequential = [process_video(state, t) for t in tasks]
    streamed = list(process_stream(state, enumerate(tasks), queue_frames=2))  # a short queue: the thread waits
    assert [i for i, _ in streamed] == list(range(len(tasks)))
    for seq, (_, got) in zip(sequential, streamed):
        _same(seq, got)
    reasons = {t["name"]: r["qc"]["reason"] for t, r in zip(tasks, sequential)}
    assert reasons["random"].startswith("undecodable") and reasons["still"].startswith("still image")
    assert "DECORDError" in reasons["cut_more"]  # through the decord fallback ("restart" event)
    assert reasons["no_face"] == "no face" and reasons["ok_b"] == "" and reasons["two_faces"] == ""
    assert not _decode_threads()


def test_shard_with_bad_videos_in_the_middle_overlap_on_and_off(mixed, tmp_path) -> None:
    manifest = pd.DataFrame(mixed)
    tables = {}
    for overlap in (True, False):
        out = tmp_path / f"overlap_{overlap}"
        extract_shard(manifest, out, PARAMS, threads=1, verbose=False, overlap=overlap)
        tables[overlap] = load_faces(out, mmap=False)
    (c1, f1, q1), (c0, f0, q0) = tables[True], tables[False]
    assert list(q1["name"]) == [t["name"] for t in mixed]  # every video keeps its QC row, in order
    assert q1.set_index("name").loc["missing", "reason"] == "file missing"
    assert "partly decoded" in q1.set_index("name").loc["cut", "notes"]
    assert q1.set_index("name").loc[["ok_a", "two_faces", "ok_b"], "ok"].all()
    assert np.array_equal(c1, c0) and f1.equals(f0)
    assert q1.drop(columns="seconds").equals(q0.drop(columns="seconds"))


class _FailingDetector:
    """Raises on the frames of one frame size: detection of that video breaks mid-way."""

    def __init__(self, inner, height: int) -> None:
        self.inner, self.height = inner, height

    def detect(self, img):
        if img.shape[0] == self.height:
            raise RuntimeError("detector broke")
        return self.inner.detect(img)


def test_detection_error_fails_one_video_and_the_decode_thread_ends(mixed) -> None:
    p = resolve_params(PARAMS)
    (det, onet), _ = init_worker(p)
    small_h = detector_input(np.zeros((270, 480, 3), np.uint8), p["det_size"])[1][1]  # two_faces' only
    state = ((_FailingDetector(det, small_h), onet), p)
    tasks = [t for t in mixed if t["name"] != "missing"]
    got = dict(process_stream(state, enumerate(tasks), queue_frames=2))
    names = [t["name"] for t in tasks]
    bad = names.index("two_faces")
    assert isinstance(got[bad], Failure) and "RuntimeError: detector broke" in got[bad].message
    assert got[names.index("ok_b")]["qc"]["ok"]  # the video after it still runs
    assert not _decode_threads()

    # a consumer that stops after the first video (its caller raised): the thread is stopped and joined
    stream = process_stream(state, enumerate(tasks * 3), queue_frames=1)
    next(stream)
    assert _decode_threads()
    stream.close()
    assert not _decode_threads()


def test_prefetch_producer_error_is_that_item_only() -> None:
    def produce(x):
        yield x
        if x == 2:
            raise ValueError("decoder bug")
        yield x * 10

    out = []
    with Prefetch(produce, enumerate([1, 2, 3]), maxsize=1) as pf:
        for i, item, events in pf:
            try:
                out.append((i, list(events)))
            except Exception as e:
                out.append((i, str(e)))
    assert out == [(0, [1, 10]), (1, "ValueError: decoder bug"), (2, [3, 30])]
    assert not pf.alive


def test_yunet_through_ctypes_matches_the_binding() -> None:
    """The GIL-free call (ctypes) and yuface's own binding give the same detections."""
    p = resolve_params({})
    free, bound = YuNet(p), YuNet(p, release_gil=False)
    assert free._fn is not None  # the symbol is there: detection runs without the GIL
    frames = syn.face_frames(4, 640, 360, second_face=[False, True, True, False]) + \
        [np.full((180, 320, 3), 90, np.uint8), syn.face_frames(1, 320, 240, angle=20)[0]]
    for f in frames:
        img = detector_input(f, 320)[0]
        a, b = free.detect(img), bound.detect(img)
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.landmarks, b.landmarks)


def test_real_clips_match_the_output_recorded_before_the_decode_thread(tmp_path) -> None:
    """Landmarks (O-Net), boxes, crops and QC rows on real clips, against values recorded with
    the stage before the decode thread and the ctypes detector (tests/fixtures/faces_reference.json)."""
    if not (SHARED / "videos").is_dir():
        pytest.skip("../shared/data not present")
    ref = json.loads((ROOT / "tests" / "fixtures" / "faces_reference.json").read_text())["videos"]
    paths = {p.stem: p for p in (SHARED / "videos").rglob("*.mp4")}
    manifest = pd.DataFrame({"name": list(ref), "path": [str(paths[n]) for n in ref]})
    extract_shard(manifest, tmp_path, {}, threads=2, verbose=False)
    crops, frames, qc = load_faces(tmp_path, mmap=False)
    for name, r in ref.items():
        q = qc.set_index("name").loc[name].to_dict()
        for k, v in r["qc"].items():
            if k == "name":
                continue
            if v is None:
                assert np.isnan(q[k]), (name, k)
            elif isinstance(v, float):
                assert q[k] == pytest.approx(v, abs=1e-6), (name, k)
            else:
                assert q[k] == v, (name, k)
        f = frames[frames["name"] == name]
        assert f["frame_index"].tolist() == r["frame_index"] and f["aligned"].tolist() == r["aligned"]
        assert f["track_id"].tolist() == r["track_id"]
        np.testing.assert_allclose(np.stack(f["landmarks"].to_numpy()), r["landmarks"], atol=2e-3)
        np.testing.assert_allclose(np.stack(f["box"].to_numpy()), r["box"], atol=2e-3)
        np.testing.assert_allclose(f["score"].to_numpy(), r["score"], atol=1e-4)
        c = crops[f["crop_row"].to_numpy()].reshape(len(f), -1)
        np.testing.assert_allclose(c.mean(1), r["crop_mean"], atol=1e-3)
        np.testing.assert_allclose(c.std(1), r["crop_std"], atol=1e-3)


# ----------------------------------------------------------------------------- pool, two in flight

def _init_none() -> None:
    return None


def _produce_crashy(item: str):
    if item == "abort":
        os.abort()  # a decoder crash in the decode thread, with another video in flight
    if item == "hang":
        time.sleep(60)
    yield item


def _stream_crashy(state: None, items):
    with Prefetch(_produce_crashy, items) as pf:
        for i, item, events in pf:
            got = list(events)
            yield i, (Failure("ValueError: bad item") if item == "raise" else got[0].upper())


def test_streaming_pool_blames_only_the_video_that_crashed_or_hung() -> None:
    items = ["a", "abort", "b", "c", "hang", "d", "raise", "e"]
    got = dict(run_guarded(items, _init_none, (), None, n_workers=2, timeout_s=3, stream=_stream_crashy))
    assert sorted(got) == list(range(len(items)))
    for k in (0, 2, 3, 5, 7):
        assert got[k] == items[k].upper(), (k, got[k])
    assert isinstance(got[1], Failure) and "SIGABRT" in got[1].message
    assert isinstance(got[4], Failure) and "timed out" in got[4].message
    assert isinstance(got[6], Failure) and "bad item" in got[6].message

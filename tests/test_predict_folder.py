"""A bundle whose model reads a feature set computed elsewhere (extractor `folder`, issue #30 item 2): the bundle
records the set as not computable with its folder and provenance, and prediction on new videos takes that set's
vectors from a folder the user names (--features-folder SET=FOLDER) or stops with one line that names the set, its
folder and the flag. Real files throughout: vectors as .npy, the feature tables written by the folder extractor
through expmae.features.run.extract, a classifier trained by expmae.train.cv, the bundle by expmae.predict.bundle."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.training import CLASSES, make_ds

from expmae.features.run import extract
from expmae.io import read_features
from expmae.predict.bundle import main as bundle_main, verify
from expmae.predict.run import predict_videos
from expmae.train import cv

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
NEW = [f"v{i}" for i in range(100, 120)]  # the test split of make_ds: never trained on


def _save(folder: Path, names: list[str], X: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, x in zip(names, X):
        np.save(folder / f"{n}.npy", x)
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A run's folder feature set `ext` (two shards read from one folder), its classifier and its bundle."""
    d = tmp_path_factory.mktemp("run")
    paths, _ = make_ds(d)
    names, X, mask, _ = read_features(paths["a"])
    have = [i for i, m in enumerate(mask) if m]  # v003 has no vector: a QC row of the training tables
    folder = _save(d / "a_UTT", [names[i] for i in have], X[have])
    tables = []
    for k, part in enumerate((names[:60], names[60:])):
        man = d / f"manifest{k}.parquet"
        pd.DataFrame({"name": part, "path": [""] * len(part)}).to_parquet(man)
        tables.append(str(d / "features" / "ext" / f"{k:05d}.parquet"))
        extract("ext", {"extractor": "folder", "path": str(folder)}, str(man), tables[-1])
    out = d / "classify" / "ext"
    cv.main(["--labels", str(d / "labels.csv"), "--test", str(d / "test.csv"), "--classes", ",".join(CLASSES),
             "--out", str(out), "--features", "ext=" + ",".join(tables),
             "--params", json.dumps({"folds": 2, "seeds": 1, "epochs": 5, "early_stop": 0.0})])
    m = json.loads((out / "metrics.json").read_text())
    final = {"model": m["name"], "dir": str(out), "round": 1, "kind": "single", "combo": None, "head": m["head"],
             "seeds": [0]}
    (d / "metrics.json").write_text(json.dumps({"final": final}))
    params = {"classes": CLASSES, "faces": {}, "audio_sets": ["ext"], "text_sets": [],
              "features": {"ext": {"extractor": "folder", "path": str(folder), "dims": 0, "key": "",
                                   "name_column": "name", "max_mb": 256}}}
    # the rule's command line (workflow/rules/predict.smk): the set's training tables give its provenance
    bundle_main(["--metrics", str(d / "metrics.json"), "--params", json.dumps(params), "--out", str(d / "bundle"),
                 "--tables", "ext=" + ",".join(tables)])
    bundle = d / "bundle"
    clips = d / "clips"
    clips.mkdir()
    for n in NEW:  # the set computed elsewhere is the model's only input: no frame of these is decoded
        (clips / f"{n}.mp4").write_bytes(b"not decoded")
    probs = pd.read_parquet(out / "probs.parquet").set_index("name")
    return {"d": d, "bundle": bundle, "folder": folder, "clips": clips, "X": dict(zip(names, X)), "probs": probs}


def test_the_bundle_records_the_set_as_not_computable_with_its_provenance(run):
    e = verify(str(run["bundle"]))["features"]["ext"]
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run["folder"].glob("*.npy")}
    listing = "".join(f"{f}\t{h}\n" for f, h in sorted(files.items()))
    assert e["computable"] is False
    assert e["source"] == {"path": str(run["folder"].resolve()), "dims": 12, "n_files": 119,
                           "files_list_sha256": hashlib.sha256(listing.encode()).hexdigest()}


def test_without_the_flag_nothing_runs_and_one_line_names_set_folder_and_flag(run, tmp_path):
    want = (f"feature set ext of this bundle was computed elsewhere (its vectors were read from "
            f"{run['folder'].resolve()}), so it cannot be computed for new videos: give the folder of their ext "
            "vectors with --features-folder ext=FOLDER")
    with pytest.raises(SystemExit) as err:
        predict_videos(str(run["bundle"]), [str(run["clips"])], str(tmp_path / "p.csv"))
    assert err.value.code == want
    assert not (tmp_path / "p.csv").exists()


def test_the_flag_reads_the_new_videos_vectors_and_a_missing_one_is_a_qc_row(run, tmp_path):
    new = _save(tmp_path / "new_UTT", NEW[:-1], [run["X"][n] for n in NEW[:-1]])  # v119 has no vector
    t = predict_videos(str(run["bundle"]), [str(run["clips"])], str(tmp_path / "p.csv"),
                       features_folders={"ext": str(new)}).set_index("name")
    assert sorted(t.index) == NEW
    probs = [f"prob_{c}" for c in CLASSES]
    # the vectors of the new folder give exactly the run's own test predictions
    assert np.allclose(t.loc[NEW[:-1], probs].to_numpy(), run["probs"].loc[NEW[:-1], probs].to_numpy(), atol=1e-6)
    assert (t.loc[NEW[:-1], "qc"].fillna("") == "").all()
    # the workflow's vocabulary (its predict job's qc column, results/qc/summary.tsv's stage features:<set>)
    assert t.loc["v119", "qc"] == ("features:ext: no v119.npy or v119.npz in new_UTT; "
                                   "train: predicted from the class prior (no usable modality)")
    assert t.loc["v119", "missing"] != ""
    # a set the bundle computes itself, or does not read, is no flag's business
    with pytest.raises(SystemExit, match=r"^--features-folder egemaps=.*: the bundle reads no feature set egemaps"):
        predict_videos(str(run["bundle"]), [str(run["clips"])], None,
                       features_folders={"ext": str(new), "egemaps": str(new)})
    with pytest.raises(SystemExit, match=rf"^--features-folder ext={tmp_path}/nowhere: .*nowhere does not exist$"):
        predict_videos(str(run["bundle"]), [str(run["clips"])], None,
                       features_folders={"ext": str(tmp_path / "nowhere")})


def test_vectors_of_another_size_are_refused(run, tmp_path):
    wide = _save(tmp_path / "wide_UTT", NEW, np.ones((len(NEW), 13), np.float32))
    with pytest.raises(SystemExit) as err:
        predict_videos(str(run["bundle"]), [str(run["clips"])], str(tmp_path / "p.csv"),
                       features_folders={"ext": str(wide)})
    assert err.value.code == (f"--features-folder ext={wide}: its vectors are 13 wide (20 of 20 read), the bundle's "
                              f"ext was trained on 12-wide vectors (from {run['folder'].resolve()}): name a folder "
                              "of the same features")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow
def test_expmae_predict_says_it_in_one_line_and_takes_the_flag(run, tmp_path):
    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "expmae", "predict", "--bundle", str(run["bundle"]),
                               str(run["clips"]), "--out", str(tmp_path / "p.csv"), *extra], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)

    r = cli()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("expmae predict: feature set ext of this bundle was computed "
                                                        "elsewhere")
    assert r.stderr.strip().endswith("--features-folder ext=FOLDER")
    new = _save(tmp_path / "new_UTT", NEW, [run["X"][n] for n in NEW])
    r = cli("--features-folder", f"ext={new}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(pd.read_csv(tmp_path / "p.csv")["name"]) == NEW
    r = cli("--features-folder", str(new))
    assert r.returncode == 1 and r.stderr.strip().startswith(f"expmae predict: --features-folder '{new}': expected "
                                                             "SET=FOLDER")
    # a refusal's line reaches the user through the `expmae` dispatcher (it used to keep only the exit code)
    r = subprocess.run([sys.executable, "-m", "expmae", "predict", "--bundle", str(tmp_path / "nowhere"), "x.mp4"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1 and r.stderr.strip() == f"expmae predict: {tmp_path / 'nowhere'}: not a model bundle " \
        "(not a folder); the workflow writes one to results/bundle/"


@pytest.mark.e2e
def test_the_bundle_rule_gives_the_set_s_training_tables(tmp_path):
    """The workflow's bundle job reads the set's training tables (their metadata is its provenance)."""
    from fixtures.workflow import placeholder_workflow, smk

    wd = placeholder_workflow(tmp_path / "wf")
    folder = _save(wd / "data" / "ext_UTT", [f"v{i:03d}" for i in range(8)], np.ones((8, 4), np.float32))
    (wd / "ext.yaml").write_text(
        f"features: {{ext: {{extractor: folder, path: {folder}, dims: 4}}}}\n"
        "classify: {feature_sets: [egemaps, minilm, expmae, expmae_video, ext]}\n"
        "fuse: {modalities: {visual: [expmae, expmae_video], audio: [egemaps, ext], text: [minilm]}}\n"
        "ingest: {shard_size: 4}\n")
    out = smk(wd, "ext.yaml", "-n", "-p", "--", "results/bundle")
    assert "--tables ext=results/features/ext/s00000.parquet,results/features/ext/s00001.parquet " in out.stdout


def test_a_bundle_written_before_the_record_is_told_apart_by_its_extractor(run, tmp_path):
    """bundle.json without `computable` / `source` (an older expmae): the extractor decides, the folder is the
    configured one."""
    import shutil

    from expmae.predict.bundle import write_manifest

    b = Path(shutil.copytree(run["bundle"], tmp_path / "bundle"))
    info = json.loads((b / "bundle.json").read_text())
    for e in info["features"].values():
        e.pop("computable"), e.pop("source")
    (b / "bundle.json").write_text(json.dumps(info))
    write_manifest(b)
    with pytest.raises(SystemExit, match=rf"^feature set ext of this bundle was computed elsewhere \(its vectors were "
                                         rf"read from {run['folder']}\).*--features-folder ext=FOLDER$"):
        predict_videos(str(b), [str(run["clips"])], None)

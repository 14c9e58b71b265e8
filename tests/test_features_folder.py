"""The folder extractor (expmae.features.folder): vectors computed elsewhere, read through the real runner
(expmae.features.run.extract) from real .npy / .npz / Parquet / CSV files into a real feature table."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures.training import CLASSES, make_ds

from expmae.io import read_features, read_meta
from expmae.features.run import extract
from expmae.train import cv

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _table(path: Path) -> pd.DataFrame:
    """name, feature, mask of one feature table (read_features takes a LIST of shard paths)."""
    names, X, mask, _ = read_features([str(path)])
    return pd.DataFrame({"name": names, "feature": list(X), "mask": mask})


def _run(tmp: Path, names: list[str], **params) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    man = tmp / "manifest.parquet"
    pd.DataFrame({"name": names, "path": [""] * len(names)}).to_parquet(man)
    out = tmp / "out" / "s0.parquet"
    extract("ext", {"extractor": "folder", **params}, str(man), str(out))
    qc = pd.read_parquet(out.with_name("s0.qc.parquet"))
    return _table(out), qc, read_meta(out)


def _features(df: pd.DataFrame) -> np.ndarray:
    return np.stack(df["feature"].to_numpy())


def _cv(d: Path, out: str, fs: dict[str, str]) -> pd.DataFrame:
    argv = ["--labels", str(d / "labels.csv"), "--test", str(d / "test.csv"), "--classes", ",".join(CLASSES),
            "--out", str(d / out), "--params", json.dumps({"folds": 2, "seeds": 1, "epochs": 5, "early_stop": 0.0})]
    for name, path in fs.items():
        argv += ["--features", f"{name}={path}"]
    cv.main(argv)
    return pd.read_parquet(d / out / "probs.parquet").set_index("name").sort_index()


def test_a_run_s_own_features_imported_back_predict_the_same(tmp_path):
    paths, _ = make_ds(tmp_path)
    cached = _table(Path(paths["a"][0]))
    names = cached["name"].tolist()
    folder = tmp_path / "a_UTT"
    folder.mkdir()
    for n, x, m in zip(names, _features(cached), cached["mask"]):
        if m:  # the masked video (v003) has no file: a QC row, masked as in the original
            np.save(folder / f"{n}.npy", x)
    got, qc, meta = _run(tmp_path, names, path=str(folder), dims=12)
    assert got["name"].tolist() == names
    assert np.array_equal(got["mask"].to_numpy(), cached["mask"].to_numpy())
    assert np.allclose(_features(got), _features(cached))
    assert qc.set_index("name").loc["v003", "reason"].startswith("no v003.npy or v003.npz")
    assert meta["source"] == str(folder.resolve()) and len(meta["files_sha256"]) == len(names) - 1
    assert len(meta["files_list_sha256"]) == 64 and meta["computable"] is False
    # the same classifier predictions from the original cache and from the imported folder
    a = _cv(tmp_path, "orig", {"a": paths["a"][0]})
    b = _cv(tmp_path, "imported", {"a": str(tmp_path / "out" / "s0.parquet")})
    probs = [c for c in a.columns if c.startswith("prob_")]
    assert np.allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-5)
    assert (a["pred"] == b["pred"]).all()


def test_wrong_size_missing_and_unreadable_are_qc_rows(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones(4, np.float32))
    np.save(folder / "b.npy", np.ones((1, 4), np.float64))        # [1, D] is one vector
    np.save(folder / "c.npy", np.ones(5, np.float32))              # another size
    np.savez(folder / "d.npz", emb=np.full(4, 2.0))
    np.save(folder / "e.npy", np.array([1.0, np.nan, 0, 0]))       # non-finite
    (folder / "f.npy").write_bytes(b"not an array")
    np.save(folder / "g.npy", np.ones((3, 4)))                      # frame-level, not one vector
    os.mkfifo(folder / "h.npy")                                     # never opened: not a regular file
    names = list("abcdefghi")
    got, qc, meta = _run(tmp_path, names, path=str(folder))        # dims inferred: 4, the most common
    assert got["mask"].tolist() == [True, True, False, True, False, False, False, False, False]
    assert _features(got).shape == (9, 4) and _features(got)[3].tolist() == [2.0] * 4
    why = qc.set_index("name")["reason"]
    assert why["c"] == "dim 5, expected 4 (inferred)"
    assert "non-finite" in why["e"] and "unreadable" in why["f"] and "shape [3, 4]" in why["g"]
    assert why["h"] == "h.npy is not a regular file" and why["i"].startswith("no i.npy")
    # the report's QC table (results/qc/summary.tsv) has a row per video without a usable vector, named after
    # the set, even where another audio set has data for it (it used to read only the first audio set's QC)
    from expmae.report.qc import qc_table

    set_qc = tmp_path / "results" / "features" / "hubert_utt" / "s00000.qc.parquet"
    set_qc.parent.mkdir(parents=True)
    qc.to_parquet(set_qc)
    summary = qc_table([], [], [], None, [], folder_qc=[str(set_qc)])
    assert set(summary["name"]) == set("cefghi") and set(summary["stage"]) == {"features:hubert_utt"}
    assert summary.set_index("name").loc["h", "reason"] == "h.npy is not a regular file"
    # configured dims: the 4-wide vectors are the wrong ones now, the error names the key
    got, qc, _ = _run(tmp_path, names, path=str(folder), dims=5)
    assert got["mask"].tolist() == [False, False, True] + [False] * 6
    assert qc.set_index("name").loc["a", "reason"] == "dim 4, expected 5 (config features.ext.dims)"
    # an oversized file is a QC row, never read
    _, qc, _ = _run(tmp_path, ["a"], path=str(folder), max_mb=1e-5, dims=4)
    assert "over max_mb" in qc.loc[0, "reason"]
    # a shard none of whose videos has a vector takes its width from the folder's other files
    got, qc, _ = _run(tmp_path, ["i"], path=str(folder))
    assert _features(got).shape == (1, 4) and not got["mask"][0]
    with pytest.raises(SystemExit, match=r"config key features.ext.dims: no vector"):
        _run(tmp_path, ["a"], path=str(folder), max_mb=1e-5)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_one_table_with_a_name_column(tmp_path, fmt):
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    if fmt == "parquet":
        path = tmp_path / "t.parquet"
        pd.DataFrame({"video": ["x", "y", "z"], "vec": list(X)}).to_parquet(path)
    else:
        path = tmp_path / "t.csv"
        pd.DataFrame(X, columns=[f"f{i}" for i in range(4)]).assign(video=["x", "y", "z"]).to_csv(path, index=False)
    got, qc, meta = _run(tmp_path, ["z", "w", "x"], path=str(path), name_column="video")
    assert got["mask"].tolist() == [True, False, True]
    assert np.allclose(_features(got)[[0, 2]], X[[2, 0]])
    assert qc.loc[1, "reason"] == f"no row named w in {path.name}"
    assert list(meta["files_sha256"]) == [path.name]


def test_config_errors_are_one_line_naming_the_key(tmp_path):
    with pytest.raises(SystemExit, match=r"config key features.ext.path: .* does not exist"):
        _run(tmp_path, ["a"], path=str(tmp_path / "nowhere"))
    (tmp_path / "t.csv").write_text("id,f0\na,1\n")
    with pytest.raises(SystemExit, match=r"has no 'name' column \(features.ext.name_column\)"):
        _run(tmp_path, ["a"], path=str(tmp_path / "t.csv"))


def mer2025_with_examples(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A miniature MER 2025 release with an OpenFace face folder and a MERTools feature folder, and the MER 2025
    preset with its commented folder examples switched on (pointed at that release) -> (release, preset, my.yaml)."""
    import yaml
    from fixtures.mer_release import build_release
    from fixtures.workflow import ROOT

    root = tmp_path / "mer2025-dataset"
    build_release(root)
    (root / "video").mkdir()
    for f in [*(root / "train").iterdir(), *(root / "test3").iterdir()]:
        f.rename(root / "video" / f.name)
    (root / "train-label.csv").rename(root / "track1_train_disdim.csv")
    (root / "transcription-engchi-polish.csv").rename(root / "subtitle_chieng.csv")
    names = sorted(p.stem for p in (root / "video").iterdir())
    pd.DataFrame({"name": [n for n in names if n.startswith("samplenew")]}).to_csv(
        root / "track_all_candidates.csv", index=False)
    for n in names:
        (root / "openface_face" / n).mkdir(parents=True)
        np.save(root / "openface_face" / n / f"{n}.npy", np.zeros((2, 112, 112, 3), np.uint8))
    feats = root / "features" / "chinese-hubert-large-UTT"
    feats.mkdir(parents=True)
    for n in names:
        np.save(feats / f"{n}.npy", np.ones((1, 1024), np.float32))
    text = (ROOT / "workflow" / "presets" / "mer2025.yaml").read_text()
    # uncommented as they are: their relative paths are taken from data.root (config.resolve_paths)
    for example in ("  # source: folder\n", "  # folder: openface_face\n", "  # missing: detect ",
                    "  # hubert_utt:\n", "  #   extractor: folder\n",
                    "  #   path: features/chinese-hubert-large-UTT\n", "  #   dims: 1024\n"):
        assert text.count(example) == 1, f"the preset's example {example!r} changed: update this test"
        text = text.replace(example, example.replace("# ", "", 1))
    preset = tmp_path / "mer2025_folders.yaml"
    preset.write_text(text)
    my = tmp_path / "my.yaml"
    my.write_text(yaml.safe_dump({"data": {"root": str(root)}, "classify": {
        "feature_sets": ["egemaps", "minilm", "hubert_utt"], "folds": 2}, "fuse": {"modalities": {
            "audio": ["hubert_utt", "egemaps"], "text": ["minilm"], "visual": ["expmae"]}}}))
    return root, preset, my


def test_mer2025_preset_folder_examples_pass_check(tmp_path):
    """The preset's commented examples (faces from openface_face, a folder feature set over features/<feat>_UTT)
    are valid config: `expmae check` on the release finds no error."""
    from fixtures.workflow import ROOT

    from expmae import check
    from expmae.config import load

    root, preset, my = mer2025_with_examples(tmp_path)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        cfg = load([preset, my])
        rows = check.run_checks(cfg, [], dag=False)
    finally:
        os.chdir(cwd)
    assert cfg["faces"]["source"] == "folder" and cfg["faces"]["folder"] == str(root / "openface_face")
    assert cfg["features"]["hubert_utt"]["path"] == str(root / "features" / "chinese-hubert-large-UTT")
    assert not [r for r in rows if r.level == "error"], check.render(rows)


@pytest.mark.e2e
def test_mer2025_preset_folder_examples_dry_run(tmp_path):
    """With the examples on, the dry run reads the faces from the folder, reads hubert_utt from its folder (no
    model), and the bundle job records that set's provenance from its tables."""
    import subprocess
    import sys

    from fixtures.workflow import ROOT, copy_workflow

    _, preset, my = mer2025_with_examples(tmp_path)
    wd = copy_workflow(tmp_path / "wf")
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--configfile", str(preset),
                        str(my)], cwd=wd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "--tables hubert_utt=results/features/hubert_utt/" in p.stdout
    assert '"extractor": "folder"' in p.stdout and "chinese-hubert-large-UTT" in p.stdout

"""From a MER release folder to a submission: the presets, `python -m expmae check` and `expmae.models`.

The preflight tests run on a miniature release of empty placeholder files (check never decodes);
the end-to-end test runs the MER 2023 preset on the real clips of ../shared/data (skipped without them).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures.mer_release import build_release
from fixtures.workflow import ROOT, clone_run, copy_workflow, jobs_run

from expmae import check
from expmae.faces import load_faces
from expmae.io import read_features
from expmae.config import load

PRESET = ROOT / "workflow" / "presets" / "mer2023.yaml"

# What a CPU test can afford over the preset: the shipped models instead of its hub ids, tiny MAE, 2 folds.
TINY = {
    "faces": {"fps": 1, "max_frames": 4, "crop_size": 112},
    "asr": {"enabled": False},
    "classify": {"feature_sets": ["egemaps", "minilm", "expmae"], "folds": 2, "epochs": 30},
    "mae": {"embed_dim": 64, "depth": 2, "num_heads": 4, "decoder_dim": 64, "decoder_depth": 1, "epochs": 1,
            "batch_size": 32, "frames_per_video": 4},
    "mae_video": {"enabled": False},
    "pseudolabel": {"rounds": 0},  # the pseudo-label round is tested elsewhere: here, release -> submission
    "fuse": {"combinations": [], "heads": ["fbp", "late"]},
    "ingest": {"shard_size": 16},
    "seeds": 1,
}


def overlay(tmp: Path, root: Path, **extra) -> Path:
    cfg = {"data": {"root": str(root)}, **extra}
    p = tmp / "my.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def run_check(tmp: Path, root: Path, **extra) -> tuple[int, str]:
    """`python -m expmae check` in-process, from the repository root (its config.yaml), without the dry run."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        cfg = load([PRESET, overlay(tmp, root, **extra)])
        rows = check.run_checks(cfg, [], dag=False)
    finally:
        os.chdir(cwd)
    return int(any(r.level == "error" for r in rows)), check.render(rows)


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "dataset-release"
    build_release(root)
    return root


def test_preset_maps_the_release_layout(release, tmp_path):
    rc, out = run_check(tmp_path, release, classify={"folds": 2})
    assert "train: 18 videos" in out and "test3: 11 videos" in out
    assert "test1: 2 videos" in out and "test2: 2 videos" in out
    # the three tracks, each found with its metric; their videos are test videos (6 test3 + 2 test1 + 2 test2)
    for track, n, metric in (("test1", 2, "f1_mse"), ("test2", 2, "f1_mse"), ("test3", 6, "f1")):
        line = next(ln for ln in out.splitlines() if f"data.tracks.{track} " in ln)
        assert line.startswith("ok") and line.endswith(f"{track}-label.csv: {n} names, metric {metric}"), out
    assert "18 labeled, 10 test, 5 unlabeled" in out
    assert "labeled 18/18, test 10/10, unlabeled 0/5" in out
    # the preset's hub ids are not in this machine's cache: each is an error naming its key
    assert rc == 1 and "features.hubert.model" in out and "MISSING" in out


@pytest.mark.parametrize("broken, expect", [
    ("missing split folder", "config key data.videos: folder"),
    ("wrong column name", "data.labels"),
    ("too few labels", "classify.folds"),
])
def test_check_names_what_is_wrong(release, tmp_path, broken, expect):
    extra = {"classify": {"feature_sets": ["egemaps"], "folds": 2}}
    if broken == "missing split folder":
        (release / "test3").rename(release / "test_3")
    elif broken == "wrong column name":
        df = pd.read_csv(release / "train-label.csv").rename(columns={"discrete": "label"})
        df.to_csv(release / "train-label.csv", index=False)
    else:
        extra["classify"]["folds"] = 5
    rc, out = run_check(tmp_path, release, **extra)
    assert rc == 1, out
    line = next(ln for ln in out.splitlines() if expect in ln)
    assert line.startswith("error"), out
    if broken == "wrong column name":
        assert "'discrete'" in line and "label" in line
    if broken == "too few labels":
        assert ">= 5 labeled videos per class" in line and "smallest" in line


def test_check_reports_a_track_without_labels(release, tmp_path):
    """During the challenge test1-label.csv is not released: not scored, a warning, and the run goes on."""
    (release / "test1-label.csv").unlink()
    rc, out = run_check(tmp_path, release, classify={"feature_sets": ["egemaps"], "folds": 2}, asr={"enabled": False})
    assert rc == 0, out
    line = next(ln for ln in out.splitlines() if "data.tracks.test1" in ln)
    assert line.startswith("warn") and "not scored (file missing); the run goes on without it" in line
    assert "8 test" in out  # test1's videos are no test videos without its list: they join the unlabeled pool


def test_check_reads_a_gbk_transcript(release, tmp_path):
    tr = release / "transcription-engchi-polish.csv"
    df = pd.read_csv(tr)
    df["chinese"] = "我真的没想到会这样"
    tr.write_bytes(df.to_csv(index=False).encode("gb18030"))
    rc, out = run_check(tmp_path, release, classify={"feature_sets": ["egemaps"], "folds": 2}, asr={"enabled": False})
    assert rc == 0, out
    assert "transcription-engchi-polish.csv: decoded as gb18030" in out
    assert "transcript coverage" in out and "labeled 18/18" in out


def test_models_offline_lists_what_is_missing(release, tmp_path):
    my = overlay(tmp_path, release)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache
    p = subprocess.run([sys.executable, "-m", "expmae", "models", "list", "--configfile", str(PRESET), str(my)],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    for key in ("features.hubert.model", "features.clip.model", "features.macbert.model", "asr.model"):
        assert any(ln.startswith(key) and "MISSING" in ln for ln in p.stdout.splitlines()), p.stdout
    assert "python -m expmae.models fetch --configfile" in p.stderr
    # fetch with the hub out of reach: it says so and fails, it never pretends
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    env.pop("HF_HUB_OFFLINE")
    my.write_text(yaml.safe_dump({"data": {"root": str(release)}, "classify": {"feature_sets": ["hubert"]},
                                  "asr": {"enabled": False}}))
    p = subprocess.run([sys.executable, "-m", "expmae.models", "fetch", "--configfile", str(PRESET), str(my)],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1 and "download(s) failed" in p.stderr, p.stdout + p.stderr


def snakemake(wd: Path, my: Path) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(PRESET), str(my)],
                       cwd=wd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return p


@pytest.fixture(scope="module")
def mer_run(shared_data, tmp_path_factory) -> tuple[Path, Path, dict[str, list[str]]]:
    """The MER 2023 preset over the miniature release of real clips: (workdir, release, names by split)."""
    tmp = tmp_path_factory.mktemp("mer2023")
    release = tmp / "dataset-release"
    names = build_release(release, shared_data)
    wd = copy_workflow(tmp / "wf")
    snakemake(wd, overlay(tmp, release, **TINY))
    return wd, release, names


@pytest.mark.e2e
def test_mer2023_preset_end_to_end(mer_run):
    wd, release, names = mer_run
    sub = pd.read_csv(wd / "results" / "submission" / "final.csv", dtype={"name": str})
    assert list(sub.columns) == ["name", "discrete", "valence"]
    labels = pd.read_csv(release / "test3-label.csv")
    # the official MER-SEMI scoring (MERTools MER2023 main-release.py): every labeled test3 name predicted,
    # sklearn weighted F1 over those names only
    assert set(labels["name"]) <= set(sub["name"])
    assert set(sub["discrete"]) <= {"neutral", "angry", "happy", "sad", "worried", "surprise"}
    from sklearn.metrics import f1_score

    pred = sub.set_index("name").loc[labels["name"], "discrete"]
    official = f1_score(labels["discrete"], pred, average="weighted")
    final = json.loads((wd / "results" / "metrics.json").read_text())["final"]
    ours = final.get("test_weighted_f1")
    ours = ours.get("mean", ours) if isinstance(ours, dict) else ours
    assert ours is not None and abs(official - ours) < 1e-4, (official, final)
    assert set(names["train"]).isdisjoint(sub["name"])
    assert set(sub["name"]) == set(labels["name"])  # final.csv: data.test's names, not the other tracks'
    # all three tracks (data.tracks): test3 = MER-SEMI, the headline's test F1; test1 / test2 scored as MERTools
    # main-release.py does on their submission files: weighted F1 - 0.25 x valence MSE, one row per label
    metrics = json.loads((wd / "results" / "metrics.json").read_text())
    tracks = metrics["tracks"]
    assert set(tracks) == {"test1", "test2", "test3"} and tracks["test3"]["metric"] == "f1"
    assert tracks["test3"]["score"] == tracks["test3"]["f1"] and abs(tracks["test3"]["f1"] - official) < 1e-4
    probs = pd.read_parquet(wd / final["dir"] / "probs.parquet").set_index("name")
    for t in ("test1", "test2"):
        m, lab = tracks[t], pd.read_csv(release / f"{t}-label.csv")
        track_sub = pd.read_csv(wd / "results" / "submission" / f"{t}.csv", dtype={"name": str})
        assert track_sub["name"].tolist() == lab["name"].tolist() == names[t]
        f1 = f1_score(lab["discrete"], track_sub["discrete"], average="weighted")
        mse = float(((lab["valence"] - track_sub["valence"]) ** 2).mean())
        assert m["status"] == "scored" and m["n"] == len(lab) and m["metric"] == "f1_mse", m
        assert abs(m["f1"] - f1) < 1e-4 and abs(m["mse"] - mse) < 1e-3 and abs(m["score"] - (f1 - 0.25 * mse)) < 1e-3
        assert m["score_ci"][0] <= m["score_ci"][1] and len(m["per_seed"]) == 1
        assert (probs.loc[names[t], "split"] == "test").all()  # test videos: never trained on, never in the pool
    # MAE pretraining saw them as test videos (transductive, as the preset says)
    assert json.loads((wd / "results" / "mae" / "meta.json").read_text())["videos_by_split"]["test"] == 10
    # real footage through the face stage: faces in each of the six clips ../shared/data labels (the first six
    # train clips), and its RAVDESS crop without an audio track (the sixth) is a QC row, not a failure
    res = wd / "results"
    q = pd.concat(pd.read_parquet(f / "qc.parquet") for f in sorted((res / "faces").iterdir())).set_index("name")
    for n in names["train"][:6]:
        assert q.loc[n, "ok"] and q.loc[n, "frames_with_face"] > 0, n
    assert not q.loc[names["train"][5], "has_audio"]
    summary = pd.read_csv(res / "qc" / "summary.tsv", sep="\t")
    assert "no audio stream" in summary[(summary.name == names["train"][5]) & (summary.stage == "audio")]["reason"].tolist()


@pytest.mark.e2e
def test_the_run_s_face_and_feature_folders_imported_back_give_its_predictions(mer_run, tmp_path):
    """What a MER researcher already has, made from this run: its faces as OpenFace face folders
    (<name>/<name>.npy) and its egemaps vectors exported to MERTools' layout (expmae export ->
    egemaps_UTT/<name>.npy). A copy of the run reading both (faces.source folder: no detector;
    egemaps from extractor folder) reruns faces, egemaps and everything after them, and predicts what
    the run predicted. Both folders sit in the release and are named relative to data.root, as a MER release
    ships them (config.resolve_paths)."""
    wd0, release, names = mer_run
    wd = clone_run(wd0, tmp_path / "wf")
    res = wd / "results"
    p = subprocess.run([sys.executable, "-m", "expmae", "export", "--results", str(res), "--set", "egemaps",
                        "--out", str(release / "features")], cwd=wd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    root = release / "openface_face"
    for shard in sorted(d for d in (res / "faces").iterdir() if (d / "qc.parquet").exists()):
        crops, frames, _ = load_faces(shard, mmap=False)
        for name, rows in frames.groupby("name")["crop_row"]:
            (root / name).mkdir(parents=True)
            np.save(root / name / f"{name}.npy", crops[rows.to_numpy()])
    assert len(list(root.iterdir())) >= 6
    my = overlay(tmp_path, release, **{**TINY, "faces": {**TINY["faces"], "source": "folder", "folder": "openface_face",
                                                        "missing": "qc"},
                                       "features": {"egemaps": {"extractor": "folder",
                                                                "path": "features/egemaps_UTT"}}})
    rules = {r for r, _ in jobs_run(snakemake(wd, my))}
    assert {"faces", "extract_audio", "classify"} <= rules, rules
    q = pd.concat(pd.read_parquet(f / "qc.parquet") for f in sorted((res / "faces").iterdir()) if (f / "qc.parquet").exists())
    assert set(q.loc[q["ok"], "decoder"]) == {"folder"}  # every face read from a folder, none detected
    shards = sorted((res / "features" / "egemaps").glob("s?????.parquet"))
    _, _, mask, meta = read_features(shards)
    assert meta["registry_name"] == "folder" and mask.sum() > 0  # egemaps read back from egemaps_UTT
    _, _, mask0, _ = read_features(sorted((wd0 / "results" / "features" / "egemaps").glob("s?????.parquet")))
    assert mask.tolist() == mask0.tolist()  # the exported videos, and no other, have vectors
    final0 = json.loads((wd0 / "results" / "metrics.json").read_text())["final"]
    final = json.loads((res / "metrics.json").read_text())["final"]
    assert final["model"] == final0["model"]
    want = pd.read_parquet(wd0 / final0["dir"] / "probs.parquet").set_index("name").sort_index()
    got = pd.read_parquet(wd / final["dir"] / "probs.parquet").set_index("name").sort_index()
    cols = [c for c in want.columns if c.startswith("prob_")]
    assert list(got.index) == list(want.index)
    np.testing.assert_allclose(got[cols].to_numpy(), want[cols].to_numpy(), atol=1e-6)
    for sub in ("final", "test1", "test2"):
        a = pd.read_csv(wd0 / "results" / "submission" / f"{sub}.csv")
        b = pd.read_csv(res / "submission" / f"{sub}.csv")
        assert a["discrete"].tolist() == b["discrete"].tolist(), sub
    # the clip without an audio track has no egemaps vector to export: the folder set's QC row reaches summary.tsv
    summary = pd.read_csv(res / "qc" / "summary.tsv", sep="\t")
    row = summary[(summary.name == names["train"][5]) & (summary.stage == "features:egemaps")]
    assert row["reason"].str.startswith("no ").all() and len(row) == 1, summary[summary.name == names["train"][5]]


@pytest.mark.e2e
def test_mer2025_preset_submits_name_discrete(release, tmp_path):
    """The MER 2025 layout (one video/ folder, track1_train_disdim.csv, subtitle_chieng.csv, the candidate
    list) dry-runs, and its report job writes name,discrete submissions."""
    (release / "video").mkdir()
    for f in [*(release / "train").iterdir(), *(release / "test3").iterdir()]:
        f.rename(release / "video" / f.name)
    (release / "train-label.csv").rename(release / "track1_train_disdim.csv")
    (release / "transcription-engchi-polish.csv").rename(release / "subtitle_chieng.csv")
    names = sorted(p.stem for p in (release / "video").iterdir() if p.stem.startswith("samplenew"))
    pd.DataFrame({"name": names}).to_csv(release / "track_all_candidates.csv", index=False)
    wd = copy_workflow(tmp_path / "wf")
    my = overlay(tmp_path, release, classify={"feature_sets": ["egemaps", "minilm"], "folds": 2})
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--configfile",
                        str(ROOT / "workflow" / "presets" / "mer2025.yaml"), str(my)],
                       cwd=wd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "--submission-columns name,discrete " in p.stdout
    assert not (wd / "results").exists()

"""Every optional data input can be absent: real Snakemake runs of the tiny workflow without them.

Two real runs keep the matrix cheap on 2 cores: one without a transcript CSV (ASR fills in), a test
list, test labels, a valence column and any label of one class; one with a single modality (audio),
stopped at the first round's classifier and the QC table. The preflight (`expmae check`) covers the
same absences without running anything and says where they matter.

The demo's voices are synthetic (prosody, no words), so ASR finds text for few videos: the bare run
keeps the text set (minilm) configured, and its classifier is skipped for lack of labeled videos with
text per class (or trains, if ASR finds enough text); the fused heads and late fusion go on with the sets
that have data, and the run ends with a submission (expmae.train.cv's skip path; tests/test_cv.py).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from expmae import demo
from fixtures.workflow import copy_workflow, smk

pytestmark = pytest.mark.e2e
DROPPED = "surprise"  # the class left without any label


def _overlay(wd: Path, **changes: dict) -> None:
    """Merge `changes` (section -> keys) into the copied config_tiny.yaml, one level deep."""
    path = wd / "config_tiny.yaml"
    cfg = yaml.safe_load(path.read_text())
    for section, keys in changes.items():
        cfg[section] = {**(cfg.get(section) or {}), **keys} if isinstance(keys, dict) else keys
    path.write_text(yaml.safe_dump(cfg))


def _check(wd: Path) -> str:
    p = subprocess.run([sys.executable, "-m", "expmae", "check", "--no-dag", "--configfile", "config_tiny.yaml"],
                       cwd=wd, capture_output=True, text=True, timeout=300)
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The demo's tiny data less the optional parts: labels without valence and without one class."""
    data = tmp_path_factory.mktemp("data") / "tiny"
    demo.make_dataset(data, preset="tiny", seed=0, n_labeled=24, n_unlabeled=8, n_test=0)  # 2 shards, ~40 videos
    lab = pd.read_csv(data / "labels.csv")
    lab[lab["discrete"] != DROPPED].drop(columns=["valence"]).to_csv(data / "labels.csv", index=False)
    return data.parent


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory, data) -> Path:
    """No transcripts, no test list or test labels, no valence column, no label of one class."""
    wd = copy_workflow(tmp_path_factory.mktemp("bare"))
    (wd / "data").symlink_to(data)
    _overlay(wd, data={"transcripts": "", "test": "", "test_labels": ""}, seeds=1, mae_video={"enabled": False},
             mae={"epochs": 1}, classify={"feature_sets": ["expmae", "egemaps", "minilm"]}, pseudolabel={"rounds": 0})
    smk(wd, "-p", "all")  # -p ends --configfile's list
    return wd


def test_run_without_optional_inputs_completes(bare_run):
    res = bare_run / "results"
    m = json.loads((res / "metrics.json").read_text())
    assert {"expmae", "egemaps"} <= set(m["table"]["0"])
    asr = pd.concat(pd.read_parquet(p) for p in (res / "asr").glob("s?????.parquet"))
    reg = pd.read_parquet(res / "ingest" / "registry.parquet")
    assert set(asr["name"]) == set(reg["name"])  # no CSV: every video is transcribed
    text = pd.read_parquet(res / "features" / "minilm" / "s00000.parquet")
    assert set(text["name"]) == set(reg.loc[reg["shard"] == "s00000", "name"])
    sub = pd.read_csv(res / "submission" / "final.csv")
    assert list(sub.columns) == ["name", "discrete", "valence"] and DROPPED not in set(sub["discrete"])
    # the text set: trained on ASR text, or skipped with its reason and left out of every choice
    minilm = json.loads((res / "classify" / "round0" / "minilm" / "metrics.json").read_text())
    skipped = {s["name"]: s["reason"] for s in m["skipped"]}
    if minilm.get("skipped"):
        assert "minilm" in skipped and "minilm" not in m["table"]["0"] and m["final"]["model"] != "minilm"
        assert "skipped (round 0): minilm" in (res / "report" / "headline.txt").read_text()
        late = json.loads((res / "fuse" / "round0" / "all" / "late" / "metrics.json").read_text())
        assert "minilm" not in late["members"] and "minilm" in late["skipped_members"]
    else:
        assert "minilm" in m["table"]["0"] and "minilm" not in skipped


def test_check_warns_about_the_absences(bare_run):
    out = _check(bare_run)
    assert "data.transcripts" in out and "ASR" in out
    assert "no test split configured" in out
    assert "valence" in out and DROPPED in out
    assert "error  " not in out, out


def test_check_warns_when_no_text_can_be_had(data, tmp_path):
    wd = copy_workflow(tmp_path / "wd")
    (wd / "data").symlink_to(data)
    _overlay(wd, data={"transcripts": "", "test": "", "test_labels": ""}, asr={"enabled": False})
    out = _check(wd)
    assert "warn" in out and "no text" in out, out


@pytest.fixture(scope="module")
def audio_only(tmp_path_factory, data) -> Path:
    """A single modality (eGeMAPS audio), on the same data (its folder shared read-only)."""
    wd = copy_workflow(tmp_path_factory.mktemp("audio"))
    (wd / "data").symlink_to(data)
    _overlay(wd, data={"transcripts": "", "test": "", "test_labels": ""}, seeds=1,
             classify={"feature_sets": ["egemaps"]}, mae_video={"enabled": False})
    return wd


def test_single_modality_trains_and_plans_the_rest(audio_only):
    """Stops at the first round's classifier and the inputs' QC rows (MAE pretraining, which the
    bare run covers, is left out); the rest of the DAG is planned by a dry run."""
    smk(audio_only, "-p", "results/classify/round0/egemaps/metrics.json", "results/qc/inputs.tsv")
    res = audio_only / "results"
    m = json.loads((res / "classify" / "round0" / "egemaps" / "metrics.json").read_text())
    assert 0.0 <= m["weighted_f1"] <= 1.0
    assert not (res / "features" / "minilm").exists() and not (res / "asr").exists()
    dry = smk(audio_only, "-n")
    planned = dry.stdout + dry.stderr
    assert "rule report" in planned and "round=0, fs=egemaps" not in planned  # trained already
    assert "fs=minilm" not in planned and "fs=expmae" not in planned  # (text features are still made for QC)

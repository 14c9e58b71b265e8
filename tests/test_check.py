"""The preflight (`python -m expmae check`): what it says about hostile or absent inputs, and what it never prints."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from expmae.check import Row, check_labels, check_transcripts, check_videos, render
from fixtures.workflow import ROOT

CLASSES = ["neutral", "angry", "happy"]


def _cfg(labels: str) -> dict:
    return {"data": {"labels": labels}, "classes": CLASSES, "classify": {"folds": 2}}


def test_a_labels_file_that_is_not_a_csv_is_never_echoed(tmp_path):
    secret = "AWS_SECRET_ACCESS_KEY=hunter2-do-not-print"
    env = tmp_path / "environ"
    env.write_bytes(f"{secret}\0HOME=/root\0".encode())  # what /proc/self/environ holds
    for path in (env, tmp_path / "one.csv"):
        if path.name == "one.csv":
            path.write_text("hunter2-do-not-print\nx\n")  # a one-column text file: its line is a "header"
        rows: list[Row] = []
        check_labels(_cfg(str(path)), set(), rows)
        out = render(rows)
        assert "hunter2" not in out and "error" in out and "no column ['name', 'discrete']" in out, out
        assert "not shown" in out


def test_a_real_csv_header_is_still_named(tmp_path):
    lab = tmp_path / "labels.csv"
    lab.write_text("video,emotion\na,happy\n")
    rows: list[Row] = []
    check_labels(_cfg(str(lab)), {"a"}, rows)
    assert "columns: ['video', 'emotion']" in render(rows)


def test_fifo_and_device_are_not_a_regular_file_not_zero_byte(tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    (vids / "ok.mp4").write_bytes(b"x")
    os.mkfifo(vids / "pipe.mp4")
    (vids / "zero.mp4").symlink_to("/dev/zero")
    rows: list[Row] = []
    df = check_videos({"videos": [str(vids)]}, rows)
    out = render(rows)
    assert "not a regular file  2 (first: pipe" in out and "zero-byte" not in out, out
    assert sorted(df["name"]) == ["ok", "pipe", "zero"]  # still registered: their QC rows come from the run


def test_a_manifest_row_repeating_a_scanned_file_is_no_duplicate(tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    for n in ("a", "b"):
        (vids / f"{n}.mp4").write_bytes(b"x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.mp4").write_bytes(b"y")
    man = tmp_path / "videos.csv"
    pd.DataFrame({"path": [str(vids / "a.mp4"), "v/../v/a.mp4", "other/b.mp4"]}).to_csv(man, index=False)
    rows: list[Row] = []
    check_videos({"videos": [str(vids)], "manifest": str(man)}, rows)
    out = render(rows)
    assert "duplicate ids  1 (first: b" in out, out  # the other b.mp4 is one; a.mp4 listed again is not


def test_absences_that_matter_are_warnings(tmp_path):
    lab = tmp_path / "labels.csv"
    pd.DataFrame({"name": list("abcd"), "discrete": ["neutral", "neutral", "angry", "angry"]}).to_csv(lab, index=False)
    rows: list[Row] = []
    check_labels(_cfg(str(lab)), set("abcd"), rows)
    check_transcripts({"transcripts": ""}, {"labeled": set("abcd")}, rows, {"enabled": False})
    out = render(rows)
    assert any(r.level == "warn" and "no labeled video of happy" in r.value for r in rows), out
    assert "no valence column" in out and "no text at all" in out
    rows = []
    check_transcripts({"transcripts": ""}, {"labeled": set("abcd")}, rows, {"enabled": "auto"})
    assert rows[0].level == "info" and "ASR" in rows[0].value


def test_a_fifo_as_a_data_file_is_named_not_a_regular_file(tmp_path):
    from expmae.ingest import check_data

    os.mkfifo(tmp_path / "labels.csv")
    (tmp_path / "v").mkdir()
    errs = check_data({"videos": [str(tmp_path / "v")], "labels": str(tmp_path / "labels.csv")})
    assert errs == [f"config key data.labels: file {str(tmp_path / 'labels.csv')!r} is not a regular file"]


def _overlay(tmp_path, text: str) -> str:
    (tmp_path / "my.yaml").write_text(text, encoding="utf-8")
    return str(tmp_path / "my.yaml")


def test_a_config_that_does_not_load_exits_1_with_a_line_per_key(tmp_path, capsys, monkeypatch):
    from expmae.check import main

    monkeypatch.chdir(tmp_path)  # no config.yaml here: the schema's defaults beneath the overlay
    my = _overlay(tmp_path, "classify:\n  fold: 3\nseeds: two\n")
    assert main(["--no-dag", "--configfile", my]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "error  config  config key classify.fold is not known; did you mean classify.folds?",
        'error  config  config key seeds = "two": expected an integer',
    ]


@pytest.mark.slow
def test_python_m_expmae_check_exits_1_for_a_config_that_does_not_load(tmp_path):
    my = _overlay(tmp_path, "classify:\n  folds: five\n")
    p = subprocess.run([sys.executable, "-m", "expmae.check", "--no-dag", "--configfile", my], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert (p.returncode, p.stdout.strip()) == (1, 'error  config  config key classify.folds = "five": expected an integer')


def test_a_wrong_data_root_is_named_once(tmp_path):
    from expmae.config import data_paths
    from expmae.ingest import check_data

    preset = yaml.safe_load((ROOT / "workflow" / "presets" / "mer2023.yaml").read_text(encoding="utf-8"))["data"]
    assert check_data(data_paths({**preset, "root": "/x"})) == [
        "config key data.root: /x does not exist: set it to the folder that holds the data (the preset names its "
        "folders and files relative to it)"]


def test_a_preset_without_its_my_yaml_says_it_needs_data_root(tmp_path, monkeypatch):
    from expmae.config import load
    from expmae.ingest import check_data

    monkeypatch.chdir(tmp_path)
    cfg = load([ROOT / "workflow" / "presets" / "mer2023.yaml"], base=ROOT / "config.yaml")
    assert check_data(cfg["data"]) == [
        f"config key data.root is not set, and the relative data paths ('train', 'test1', 'test2') do not "
        f"exist in {tmp_path}: a preset needs data.root: put `data: {{root: /path/to/release}}` in a my.yaml "
        "(expmae init writes one) and pass it after the preset; or run from the folder they are relative to"]
    (tmp_path / "videos").mkdir()  # a plain config with one misspelt relative folder: that folder, not data.root
    assert check_data({"videos": ["vidoes"], "labels": str(tmp_path / "my.yaml")}) == [
        "config key data.videos: folder 'vidoes' does not exist",
        f"config key data.labels: file {str(tmp_path / 'my.yaml')!r} does not exist"]


def test_misspelt_extractor_and_feature_set_are_named_beside_other_errors(tmp_path, monkeypatch):
    from expmae.check import run_checks
    from expmae.config import load

    monkeypatch.chdir(tmp_path)
    my = _overlay(tmp_path, f"data: {{videos: [{tmp_path / 'gone'}], labels: l.csv}}\n"
                  "features:\n  egemaps: {extractor: egemap}\n"
                  "  w2v: {extractor: wav2vec2}\nclassify: {feature_sets: [egemaps, wv2]}\n"
                  "fuse: {modalities: {audio: [egemaps, w2v2]}}\n")
    rows = run_checks(load([my], base=None), [my], dag=False)
    errors = [r.value for r in rows if r.level == "error" and r.item == "config"]
    assert errors == [
        f"config key data.videos: folder {str(tmp_path / 'gone')!r} does not exist",
        "config key data.labels: file 'l.csv' does not exist",
        "config key features.egemaps.extractor: unknown extractor 'egemap'; did you mean egemaps? (expmae features list)",
        "config key classify.feature_sets: 'wv2' is not a `features:` entry; did you mean w2v?",
        "config key fuse.modalities.audio: 'w2v2' is not a `features:` entry; did you mean w2v?",
    ]


@pytest.fixture
def no_audio_release(tmp_path):
    """5 labeled clips, 2 per class but one 'surprise' clip without an audio track; ingested (real registry and
    shard manifest), features not extracted yet."""
    from expmae import ingest
    from fixtures import hard_media
    from fixtures.faces import write_video

    vids = tmp_path / "videos"
    vids.mkdir()
    for name, audio in (("n1", True), ("n2", True), ("n3", True), ("s1", True), ("s2", False)):
        write_video(vids / f"{name}.mp4", hard_media.frames(10, 64), fps=10, audio=audio)
    pd.DataFrame({"name": ["n1", "n2", "n3", "s1", "s2"], "discrete": ["neutral"] * 3 + ["surprise"] * 2}).to_csv(
        tmp_path / "labels.csv", index=False)
    res = tmp_path / "results"
    reg, issues = ingest.plan_registry(res, [str(vids)], ingest.DEFAULT_EXTS, 50)
    ingest.save_registry(res, reg, issues)
    ingest.write_shard(res / "ingest" / "registry.parquet", "s00000", res / "ingest" / "s00000.parquet")
    _overlay(tmp_path, f"data: {{videos: [{vids}], labels: {tmp_path / 'labels.csv'}}}\nresults: {res}\n"
             "classes: [neutral, surprise]\nfeatures: {egemaps: {extractor: egemaps}}\n"
             "classify: {folds: 2, feature_sets: [egemaps]}\n")
    return tmp_path


def test_folds_are_counted_per_feature_set_as_the_training_job_counts(no_audio_release, monkeypatch):
    import json

    from expmae.check import run_checks
    from expmae.cli.preflight import NOT_YET
    from expmae.config import load
    from expmae.features.__main__ import main as features

    monkeypatch.chdir(no_audio_release)
    cfg = load(["my.yaml"], base=None)
    rows = {r.item: r for r in run_checks(cfg, [], dag=False)}
    assert rows["classify.folds"].value == "2 folds fit (smallest class: 2)"  # every class has 2 labeled videos
    assert rows["folds per feature set"].level == "info"
    assert rows["folds per feature set"].value == f"egemaps: {NOT_YET}"  # no audio known before extraction
    res = no_audio_release / "results"
    features(["extract", "--name", "egemaps", "--manifest", str(res / "ingest" / "s00000.parquet"),
              "--out", str(res / "features" / "egemaps" / "s00000.parquet"),
              "--params", json.dumps({"extractor": "egemaps", "device": "cpu"})])
    row = {r.item: r for r in run_checks(cfg, [], dag=False)}["folds: egemaps"]
    # what the training job does with it: skipped (expmae.train.cv.unusable_sets), with this reason
    assert row.level == "warn" and row.value == (
        "feature set egemaps has data for too few labeled videos per class for classify.folds = 2 ({'neutral': 3, "
        "'surprise': 1}): skipped; lower classify.folds, label more of the short classes or drop egemaps from "
        "classify.feature_sets")

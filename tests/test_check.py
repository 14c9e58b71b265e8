"""The preflight (`python -m expmae check`): what it says about hostile or absent inputs, and what it never prints."""
from __future__ import annotations

import os

import pandas as pd

from expmae.check import Row, check_labels, check_transcripts, check_videos, render

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

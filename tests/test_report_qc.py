"""expmae.report.qc.add_qc_arguments: the one home of the QC input flags that the report job and the predict
job both take (--faces-qc, --audio-qc, --text, --asr, --folder-qc), so their QC columns read the same files."""
from __future__ import annotations

import argparse

import pytest

from expmae.predict import table
from expmae.report import parse_args as report_args
from expmae.report.qc import add_qc_arguments

FLAGS = ["--faces-qc", "f0.parquet", "f1.parquet", "--audio-qc", "a0.parquet", "--text", "--asr", "s0.parquet",
         "--folder-qc", "h0.qc.parquet"]
WANT = {"faces_qc": ["f0.parquet", "f1.parquet"], "audio_qc": ["a0.parquet"], "text": [], "asr": ["s0.parquet"],
        "folder_qc": ["h0.qc.parquet"]}


def test_flags_parse_to_lists_and_default_to_none_given() -> None:
    ap = argparse.ArgumentParser()
    add_qc_arguments(ap)
    assert vars(ap.parse_args(FLAGS)) == WANT
    assert vars(ap.parse_args([])) == {k: [] for k in WANT}


def test_the_report_reads_them_as_the_helper_defines() -> None:
    a = report_args(["--classify", "results/classify/round0/egemaps", "--classes", "happy,sad", "--out", "r", *FLAGS])
    assert {k: getattr(a, k) for k in WANT} == WANT


def test_the_predict_job_takes_the_same_flags(capsys) -> None:
    with pytest.raises(SystemExit):
        table.main(["--help"])
    out = capsys.readouterr().out
    ap = argparse.ArgumentParser()
    add_qc_arguments(ap)
    for action in ap._actions[1:]:  # [0] is --help
        assert action.option_strings[0] in out and action.help in " ".join(out.split())

"""`expmae export` (expmae/export.py): cached feature sets -> MERBench's <set>_UTT/<name>.npy folders.
Round trip against the Parquet shards, masked rows and unsafe names skipped and listed, labels CSV,
nothing written outside the output folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmae.export import SKIPPED, export
from expmae.io import read_features, write_features

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path) -> Path:
    """Two sets written by the workflow's own writer: 'vis' over two shards (one masked row, one name
    with a separator, one duplicated across shards), 'aud' in one shard."""
    rng = np.random.default_rng(0)
    res = tmp_path / "results"
    write_features(res / "features" / "vis" / "s00000.parquet", ["a", "b", "../evil"],
                   rng.normal(size=(3, 5)), np.array([True, False, True]), {"extractor": "t"})
    write_features(res / "features" / "vis" / "s00001.parquet", ["c", "a"], rng.normal(size=(2, 5)),
                   np.array([True, True]), {"extractor": "t"})
    write_features(res / "features" / "aud" / "s00000.parquet", ["a", "b", "c"], rng.normal(size=(3, 3)),
                   np.ones(3, bool), {"extractor": "t"})
    # an audio set's QC table beside its features, as the extract_audio job writes it (no vectors)
    pd.DataFrame({"name": ["a", "b", "c"], "ok": [True] * 3, "reason": [""] * 3}).to_parquet(
        res / "features" / "aud" / "s00000.qc.parquet")
    return res


def _shards(res: Path, s: str) -> list[Path]:
    return sorted((res / "features" / s).glob("s?????.parquet"))


def test_export_then_reread_equals_the_parquet_features(results, tmp_path) -> None:
    out = tmp_path / "out"
    summary = export(results, [], out)
    assert summary == {"aud": 3, "vis": 2, "skipped": 3}
    for s in ("vis", "aud"):
        names, X, mask, _ = read_features(_shards(results, s))
        first = {}
        for n, x, m in zip(names, X, mask):
            first.setdefault(n, (x, m))
        files = {p.stem: np.load(p, allow_pickle=False) for p in (out / f"{s}_UTT").glob("*.npy")}
        expect = {n: x for n, (x, m) in first.items() if m and "/" not in n}
        assert set(files) == set(expect)
        for n, v in files.items():
            assert v.dtype == np.float32 and v.shape == (X.shape[1],)
            np.testing.assert_array_equal(v, expect[n])  # bit-identical
    skipped = pd.read_csv(out / SKIPPED)
    assert sorted(zip(skipped["name"], skipped["reason"].str.split(" ").str[0])) == \
        [("../evil", "name"), ("a", "duplicate"), ("b", "no")]
    assert not (tmp_path / "evil.npy").exists() and not (out / "evil.npy").exists()


def test_labels_csv_holds_the_exported_videos(results, tmp_path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("name,discrete,valence\na,happy,1.5\nb,sad,-2\nzz,angry,0\n")
    summary = export(results, ["vis"], tmp_path / "out", labels=str(labels))
    got = pd.read_csv(tmp_path / "out" / "labels.csv")
    assert summary["labels"] == 1 and got.to_dict("records") == [{"name": "a", "discrete": "happy", "valence": 1.5}]


def test_a_utt_symlink_out_of_the_output_is_refused(results, tmp_path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "aud_UTT")
    with pytest.raises(SystemExit, match="leads outside"):
        export(results, ["aud"], out)
    assert not list(elsewhere.iterdir())


def test_a_planted_file_symlink_is_skipped(results, tmp_path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim.npy"
    (out / "aud_UTT").mkdir(parents=True)
    victim.write_bytes(b"keep")
    os.symlink(victim, out / "aud_UTT" / "a.npy")
    summary = export(results, ["aud"], out)
    assert victim.read_bytes() == b"keep" and summary["aud"] == 2


def test_cli_unknown_set_is_one_line(results, tmp_path) -> None:
    p = subprocess.run([sys.executable, "-m", "expmae", "export", "--results", str(results), "--set", "nope",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "sets there: aud, vis" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, "-m", "expmae.export", "--results", str(results), "--set", "aud",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and "aud_UTT: 3 videos" in p.stdout, p.stderr

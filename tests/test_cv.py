"""A feature set with too little data is skipped, not fatal: expmae.train.cv writes a `skipped` result,
fused heads and late fusion leave the set out, pseudo-label selection and the report never count it.

Real Parquet feature shards and real CLI entry points (cv.main, late.main, report.load_models); no
Snakemake (tests/test_optional_inputs.py runs the workflow without transcripts)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmae.io import write_features
from expmae.report import load_models
from expmae.train import cv, late
from expmae.train.pseudo import choose_source

CLASSES = ["neutral", "angry", "happy"]
PARAMS = json.dumps({"folds": 2, "seeds": 1, "epochs": 3, "early_stop": 0.0})

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def sets(tmp_path: Path) -> Path:
    """`audio` has data for every video; `text` for 3 labeled videos only (ASR found few words)."""
    rng = np.random.default_rng(0)
    n = 30
    names = [f"v{i:02d}" for i in range(n)]
    y = np.arange(n) % 3
    for fs, dim, has in (("audio", 6, np.ones(n, bool)), ("text", 4, np.arange(n) < 3)):
        X = np.eye(3)[y] @ rng.normal(size=(3, dim)) + rng.normal(size=(n, dim)) * 0.3
        write_features(tmp_path / f"{fs}.parquet", names, np.where(has[:, None], X, 0), has, {"extractor": fs})
    pd.DataFrame({"name": names[:24], "discrete": [CLASSES[i] for i in y[:24]]}).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path


def _cv(d: Path, out: str, head: str, *features: str) -> dict:
    argv = ["--head", head, "--labels", str(d / "labels.csv"), "--classes", ",".join(CLASSES),
            "--out", str(d / out), "--params", PARAMS]
    for fs in features:
        argv += ["--features", f"{fs}={d / fs}.parquet"]
    if head != "mlp":
        argv += ["--kind", "fused", "--combo", "all", "--name", head]
    cv.main(argv)
    return json.loads((d / out / "metrics.json").read_text())


def test_sparse_set_is_skipped_and_left_out_downstream(sets: Path, capsys):
    m = _cv(sets, "text", "mlp", "text")
    assert "text" in m["skipped"] and m["name"] == "text" and m["weighted_f1"] is None
    probs = pd.read_parquet(sets / "text" / "probs.parquet")
    assert len(probs) == 0 and {"name", "split", "y", "fold", "prob_happy", "no_data"} <= set(probs.columns)
    assert not (sets / "text" / "model.safetensors").exists()
    assert _cv(sets, "audio", "mlp", "audio")["weighted_f1"] >= 0
    # a fused head trains on the sets with data and names the one it left out
    fm = _cv(sets, "fbp", "fbp", "audio", "text")
    assert fm["modality_order"] == ["audio"] and set(fm["skipped_sets"]) == {"text"} and fm["weighted_f1"] >= 0
    # late fusion: the skipped member is out of the mean and named
    late.main(["--kind", "fused", "--combo", "all", "--name", "late", "--members", str(sets / "audio"),
               str(sets / "text"), "--labels", str(sets / "labels.csv"), "--classes", ",".join(CLASSES),
               "--out", str(sets / "late"), "--params", PARAMS])
    lm = json.loads((sets / "late" / "metrics.json").read_text())
    assert lm["members"] == ["audio"] and set(lm["skipped_members"]) == {"text"}
    lp, ap = pd.read_parquet(sets / "late" / "probs.parquet"), pd.read_parquet(sets / "audio" / "probs.parquet")
    np.testing.assert_allclose(lp["prob_happy"], ap["prob_happy"], atol=1e-5)  # the mean of one member
    # only skipped members: late fusion is skipped too, with the empty table
    late.main(["--kind", "fused", "--combo", "all", "--name", "late", "--members", str(sets / "text"),
               "--labels", str(sets / "labels.csv"), "--classes", ",".join(CLASSES), "--out", str(sets / "late2"),
               "--params", PARAMS])
    assert json.loads((sets / "late2" / "metrics.json").read_text())["skipped"]
    assert len(pd.read_parquet(sets / "late2" / "probs.parquet")) == 0
    # pseudo-labels: a skipped source gives way to the best model
    dirs = [str(sets / n) for n in ("text", "audio", "fbp")]
    assert choose_source(dirs, "text").name in {"audio", "fbp"}
    assert choose_source(dirs).name != "text"
    # the report: never a candidate, named with its reason
    rounds, _, _, skipped = load_models(dirs + [str(sets / "late2")], sets / "results")
    assert "text" not in rounds["0"] and {s["name"] for s in skipped} == {"text", "late"}
    assert "too few labeled videos" in next(s["reason"] for s in skipped if s["name"] == "text")


def test_too_few_labels_stays_an_error(sets: Path):
    """Labels too few for the folds (not a sparse set) is still refused, naming classify.folds."""
    lab = pd.read_csv(sets / "labels.csv").head(4)
    lab.to_csv(sets / "labels.csv", index=False)
    with pytest.raises(SystemExit, match="classify.folds"):
        _cv(sets, "audio", "mlp", "audio")

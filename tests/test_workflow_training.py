"""Issue 14 end to end on the tiny demo: a copy of the session's run (tests/conftest.py tiny_run) with a
labeled zero-byte video, a test name without a video and an overlay (round 0, heads fbp + concat, 2 seeds)
retrains on the run's faces and features; then only the training rules rerun: --cores 1 gives the scores
--cores 2 gave; the seed spread is reported and > 0; a 1e-6 perturbation of one feature set moves the final
OOF F1 less than its interval; a labeled zero-byte video is no training row; too few labels stop the run on
the console."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from expmae import config
from expmae.train import cv, data, scoring
from fixtures.workflow import clone_run, jobs_run, smk

pytestmark = pytest.mark.e2e
TRUST = "mae_video:\n  enabled: false\npseudolabel:\n  rounds: 0\nfuse:\n  heads: [fbp, concat]\n"
TARGET = "results/metrics.json"
CLASSES = config.default("classes")
# Training results of the session's run (round 1, the other heads) that this overlay's DAG does not make:
# dropped, so that the folders listed below are exactly the overlay's.
TRAINED = ("results/classify", "results/fuse", "results/pseudo")


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    wd = clone_run(tiny_run, tmp_path_factory.mktemp("trust"), drop=TRAINED)
    d = wd / "data" / "tiny"
    labels = pd.read_csv(d / "labels.csv")
    pd.concat([labels, pd.DataFrame({"name": ["empty_0001"], "discrete": ["angry"]})]).to_csv(d / "labels.csv", index=False)
    test = pd.read_csv(d / "test.csv")
    pd.concat([test, pd.DataFrame({"name": ["ghost_0001"]})]).to_csv(d / "test.csv", index=False)  # no such video
    (wd / "trust.yaml").write_text(TRUST)
    out = smk(wd, "--cores", "2", TARGET, "--configfile", "config_tiny.yaml", "trust.yaml")
    reused = {"ingest_shard", "faces", "extract_audio", "extract_text", "extract_visual", "asr", "mae_pretrain"}
    rules = {r for r, _ in jobs_run(out)}
    assert "classify" in rules and not rules & reused, rules  # only what the labels and the overlay touch reran
    return wd


def training_metrics(wd):
    """Every training job's metrics.json, without its wall-clock seconds."""
    out = {}
    for p in sorted((wd / "results").glob("*/round0/**/metrics.json")):
        m = json.loads(p.read_text())
        m.pop("seconds")
        out[str(p.relative_to(wd))] = m
    return out


def test_cores_1_and_2_give_identical_scores(run):
    before = training_metrics(run)
    assert len(before) == 5  # 3 classifiers + fbp + concat
    smk(run, "--cores", "1", TARGET, "--forcerun", "classify", "fuse", "--configfile", "config_tiny.yaml", "trust.yaml")
    assert training_metrics(run) == before


def test_seed_spread_is_reported_and_positive(run):
    m = json.loads((run / "results" / "metrics.json").read_text())
    models = m["rounds"]["0"]
    assert all(len(x["per_seed"]) == 2 and x["weighted_f1_std"] is not None for x in models.values())
    assert any(x["weighted_f1_std"] > 0 for x in models.values())
    final = m["final"]
    assert final["seeds"] == [0, 1] and final["kind"] == "fused" and final["dir"].endswith(f"all/{final['head']}")
    lo, hi = final["weighted_f1_ci"]
    assert lo <= final["weighted_f1"] <= hi
    # "fused >= best single" is claimed only when the paired interval says so
    cmp = final["fused_minus_single"]
    assert cmp["within_noise"] == (cmp["ci"][0] <= 0 <= cmp["ci"][1])
    assert final["fused_vs_single"] == ("within the noise (the interval contains 0)" if cmp["within_noise"] else
                                        f"{final['model']} better" if cmp["diff"] > 0 else f"{final['best_single']} better")
    headline = (run / "results" / "report" / "headline.txt").read_text()
    assert headline.startswith(f"final model: {final['model']}") and "best single feature set" in headline


def test_a_tiny_perturbation_moves_the_final_score_less_than_its_interval(run):
    m = json.loads((run / "results" / "metrics.json").read_text())
    fm = m["rounds"]["0"][m["final"]["model"]]
    d = run / "data" / "tiny"
    sets = [fs for v in fm["modalities"].values() for fs in v]
    paths = {fs: sorted(str(p) for p in (run / "results" / "features" / fs).glob("s?????.parquet")) for fs in sets}
    ds = data.load(paths, d / "labels.csv", d / "test.csv", CLASSES, d / "test_labels.csv")
    i = ds.modalities.index(sets[0])
    ds.X[i] = ds.X[i] + 1e-6 * np.random.default_rng(0).normal(size=ds.X[i].shape).astype(np.float32) * ds.mask[:, [i]]
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as the job runs
    try:
        _, mp, _ = cv.cross_validate(ds, fm["head"], CLASSES, fm["params"], None, fm["modalities"])
    finally:
        torch.set_num_threads(n)
    lo, hi = fm["weighted_f1_ci"]
    assert abs(mp["weighted_f1"] - fm["weighted_f1"]) < hi - lo


def test_a_labeled_zero_byte_video_is_no_training_row(run):
    res = run / "results"
    for p in (res / "classify" / "round0").glob("*/probs.parquet"):
        row = pd.read_parquet(p).set_index("name").loc["empty_0001"]
        assert row["split"] == "labeled" and row["fold"] == -1 and row["no_data"] == scoring.NO_DATA
    assert all(json.loads(p.read_text())["n_labeled"] == 24 for p in res.glob("*/round0/**/metrics.json"))
    qc = pd.read_csv(res / "qc" / "summary.tsv", sep="\t")
    assert ((qc["name"] == "empty_0001") & qc["reason"].str.contains("left out of training and scoring")).any()
    # the test name without a video has its submission row, flagged in the sidecar
    sub = pd.read_csv(res / "submission" / "final.csv")
    assert list(sub.columns) == ["name", "discrete", "valence"] and "ghost_0001" in set(sub["name"])
    flags = pd.read_csv(res / "submission" / "final.flags.csv", keep_default_na=False).set_index("name")["no_data"]
    assert flags["ghost_0001"] == scoring.NO_VIDEO and (flags.drop("ghost_0001") != scoring.NO_VIDEO).all()


def test_too_few_labels_stop_the_run_naming_classify_folds(run):
    d = run / "data" / "tiny"
    labels = pd.read_csv(d / "labels.csv")
    labels.groupby("discrete").head(1).to_csv(d / "labels_few.csv", index=False)
    (run / "few.yaml").write_text("data:\n  labels: data/tiny/labels_few.csv\nclassify:\n  folds: 5\n")
    p = smk(run, "--cores", "2", TARGET, "--configfile", "config_tiny.yaml", "trust.yaml", "few.yaml", check=False)
    assert p.returncode != 0
    assert "classify.folds = 5" in p.stderr and "'neutral': 1" in p.stderr and "Refused before training" in p.stderr

"""The data.predict workflow (issue #17) on a copy of the session's tiny run: data.predict videos run only
their per-shard jobs and the predict job, and the workflow's predictions equal the standalone CLI's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fixtures.predict import SHARED_CLIP, add_predict_folder, standalone_predict
from fixtures.workflow import clone_run, dry_run_jobs, smk

CFG = ("--configfile", "config_tiny.yaml")
PER_SHARD = {"ingest_shard", "faces", "extract_audio", "extract_text", "extract_visual", "asr"}


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """The session's run copied (new_folder adds data.predict videos to it); its last round is round 1."""
    return clone_run(tiny_run, tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def new_folder(run):
    return add_predict_folder(run)


@pytest.fixture(scope="module")
def standalone(run, new_folder, tmp_path_factory):
    return standalone_predict(run, new_folder, tmp_path_factory.mktemp("standalone"),
                              tmp_path_factory.mktemp("elsewhere"))


@pytest.fixture(scope="module")
def in_workflow(run, new_folder):
    """Dry-run job list after adding data.predict, then the real run of those jobs."""
    jobs = dry_run_jobs(run, *CFG, "pred.yaml")
    smk(run, *CFG, "pred.yaml")
    return jobs


@pytest.mark.e2e
def test_predict_folder_runs_only_its_shards_and_matches_standalone(run, in_workflow, standalone):
    jobs = in_workflow
    rules = {r for r, _ in jobs}
    assert "predict" in rules and not rules & {"classify", "fuse", "fuse_late", "pseudolabel", "report", "mae_pretrain",
                                               "inputs_qc", "bundle", "cache_check"}, rules
    per_shard = [w["shard"] for r, w in jobs if r in PER_SHARD]
    assert per_shard and all(s.startswith("p") for s in per_shard)
    assert rules <= PER_SHARD | {"predict", "all"}, rules
    out = pd.read_csv(run / "results" / "predict" / "final.csv", dtype={"name": str}, keep_default_na=False,
                      na_values=[""]).set_index("name")
    expected = {"copy_of_test", "broken"} | ({"real_clip"} if SHARED_CLIP.exists() else set())
    assert set(out.index) == expected
    cols = [c for c in out.columns if c.startswith("prob_")]
    ref = standalone.set_index("name").loc[sorted(expected)]
    np.testing.assert_allclose(out.loc[sorted(expected), cols].to_numpy(), ref[cols].to_numpy(), atol=1e-6)
    assert list(out.loc[sorted(expected), "label"]) == list(ref["label"])
    heads = pd.read_csv(run / "results" / "predict" / "heads.csv", dtype={"name": str})
    assert {"egemaps", "minilm", "expmae", "fbp", "late"} <= set(heads["model"]) and len(heads) == len(expected) * heads["model"].nunique()
    reg = pd.read_parquet(run / "results" / "ingest" / "registry.parquet")
    assert set(reg.loc[reg["role"] == "predict", "name"]) == expected and reg.loc[reg["role"] == "predict", "shard"].str.startswith("p").all()

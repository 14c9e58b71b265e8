"""End-to-end: the session's real Snakemake run of the whole DAG on the tiny demo data (tests/conftest.py
tiny_run), and the incremental behaviour read from Snakemake's own dry-run job list on a copy of it."""
import json

import pandas as pd
import pytest

from expmae import demo
from fixtures.workflow import UnmarkedSnakemakeTest, clone_run, dry_run_jobs, smk

PER_SHARD = {"ingest_shard", "faces", "extract_audio", "extract_text", "extract_visual", "cache_check"}
GLOBAL = {"faces_report", "inputs_qc", "classify", "fuse", "fuse_late", "pseudolabel", "report", "bundle", "all"}  # bundle: the final model retrained


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    """The session's run copied: this module adds videos and configs to it."""
    return clone_run(tiny_run, tmp_path_factory.mktemp("wf"))


@pytest.mark.e2e
def test_whole_dag_outputs(tiny_run):
    res = tiny_run / "results"
    m = json.loads((res / "metrics.json").read_text())
    assert set(m["table"]) == {"0", "1"}
    for heads in m["table"].values():
        assert {"expmae", "egemaps", "minilm", "fbp", "concat"} <= set(heads)
        assert all(0.0 <= v <= 1.0 for v in heads.values())
    sub = pd.read_csv(res / "submission" / "final.csv")
    test_names = pd.read_csv(tiny_run / "data" / "tiny" / "test.csv")["name"]
    assert sorted(sub["name"]) == sorted(test_names) and list(sub.columns) == ["name", "discrete", "valence"]
    assert set(sub["discrete"]) <= {"neutral", "angry", "happy", "sad", "worried", "surprise"}
    # checkpoints are safetensors; encoder traceable from the feature table
    assert (res / "mae" / "encoder.safetensors").exists()
    from expmae.io import read_meta
    shard0 = sorted((res / "features" / "expmae").glob("s*.parquet"))[0]
    assert read_meta(shard0).get("encoder_sha256")


@pytest.mark.e2e
def test_bad_inputs_are_qc_rows_not_failures(tiny_run):
    qc = pd.read_csv(tiny_run / "results" / "qc" / "summary.tsv", sep="\t")
    faces = qc[qc.stage == "faces"].set_index("name")["reason"].to_dict()
    assert "undecodable" in faces["corrupt_0001"]
    assert faces["empty_0001"] == "zero-byte file"
    assert faces["noface_0001"] == "no face"
    reg = pd.read_parquet(tiny_run / "results" / "ingest" / "registry.parquet")
    odd = [n for n in reg["name"] if " " in n]
    assert odd and odd[0] not in faces  # the odd file name is processed normally
    # every registered video has a row in every feature table
    for fs in ("expmae", "egemaps", "minilm"):
        names = pd.concat(pd.read_parquet(p, columns=["name"]) for p in (tiny_run / "results" / "features" / fs).glob("s?????.parquet"))
        assert sorted(names["name"]) == sorted(reg["name"])


@pytest.mark.e2e
def test_nothing_to_do_after_a_complete_run(tiny_run, run_copy):
    assert dry_run_jobs(tiny_run) == []
    assert dry_run_jobs(run_copy) == []  # what the overlays of test_predict and test_workflow_training start from


@pytest.mark.e2e
def test_a_deleted_training_output_is_rebuilt_by_a_plain_rerun(tiny_run, tmp_path_factory):
    """Training outputs are targets of rule all (train.smk TRAIN_TARGETS), like the per-shard caches: without
    that, Snakemake said "Nothing to be done" (the report is newer than what is left)."""
    last = sorted((tiny_run / "results" / "fuse").glob("round*/*/[!l]*/probs.parquet"))[-1]  # a trained head
    rel = last.relative_to(tiny_run)
    wd = clone_run(tiny_run, tmp_path_factory.mktemp("deleted"), drop=[str(rel)])
    jobs = dry_run_jobs(wd)
    want = {"round": rel.parts[-4].removeprefix("round"), "combo": rel.parts[-3], "head": rel.parts[-2]}
    assert ("fuse", want) in jobs, jobs
    assert {r for r, _ in jobs} <= GLOBAL and not {r for r, _ in jobs} & PER_SHARD


@pytest.mark.e2e
def test_new_videos_rerun_only_new_shards_and_training(run_copy):
    before = pd.read_parquet(run_copy / "results" / "ingest" / "registry.parquet")
    old_shards = set(before["shard"])
    demo.add_unlabeled(run_copy / "data" / "tiny", 6, seed=7)
    jobs = dry_run_jobs(run_copy)
    # the dry run planned the new shard in memory and wrote nothing: the saved registry is unchanged
    assert pd.read_parquet(run_copy / "results" / "ingest" / "registry.parquet").equals(before)
    per_shard = [(r, w["shard"]) for r, w in jobs if r in PER_SHARD]
    new_shards = {s for _, s in per_shard}
    assert len(new_shards) == 1 and not new_shards & old_shards, per_shard
    assert {r for r, _ in per_shard} == PER_SHARD
    rules = {r for r, _ in jobs}
    assert "mae_pretrain" not in rules  # new videos do not retrigger pretraining by default
    assert rules - PER_SHARD <= GLOBAL
    # ... unless the config asks for it
    cfg = run_copy / "retrain.yaml"
    cfg.write_text("mae:\n  retrain_on_new_videos: true\n")
    assert "mae_pretrain" in {r for r, _ in dry_run_jobs(run_copy, "--configfile", "config_tiny.yaml", str(cfg))}


def test_a_test_not_marked_e2e_cannot_start_snakemake(tmp_path):
    """make test-fast selects by marker: Snakemake in an unmarked test is refused before it starts."""
    with pytest.raises(UnmarkedSnakemakeTest, match="mark it e2e"):
        smk(tmp_path, "-n")

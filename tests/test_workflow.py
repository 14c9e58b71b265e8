"""End-to-end: real Snakemake runs of the whole DAG on the tiny demo data, and the
incremental behaviour read from Snakemake's own dry-run job list."""
import json

import pandas as pd
import pytest

from expmae import demo
from fixtures.workflow import copy_workflow, dry_run_jobs, smk

PER_SHARD = {"ingest_shard", "faces", "extract_audio", "extract_text", "extract_visual", "cache_check"}
GLOBAL = {"faces_report", "inputs_qc", "classify", "fuse", "fuse_late", "pseudolabel", "report", "bundle", "all"}  # bundle: the final model retrained

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("wf"))
    demo.make_dataset(wd / "data" / "tiny", preset="tiny", seed=0)
    smk(wd)
    return wd


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


def test_nothing_to_do_after_a_complete_run(tiny_run):
    assert dry_run_jobs(tiny_run) == []


def test_new_videos_rerun_only_new_shards_and_training(tiny_run):
    before = pd.read_parquet(tiny_run / "results" / "ingest" / "registry.parquet")
    old_shards = set(before["shard"])
    demo.add_unlabeled(tiny_run / "data" / "tiny", 6, seed=7)
    jobs = dry_run_jobs(tiny_run)
    # the dry run planned the new shard in memory and wrote nothing: the saved registry is unchanged
    assert pd.read_parquet(tiny_run / "results" / "ingest" / "registry.parquet").equals(before)
    per_shard = [(r, w["shard"]) for r, w in jobs if r in PER_SHARD]
    new_shards = {s for _, s in per_shard}
    assert len(new_shards) == 1 and not new_shards & old_shards, per_shard
    assert {r for r, _ in per_shard} == PER_SHARD
    rules = {r for r, _ in jobs}
    assert "mae_pretrain" not in rules  # new videos do not retrigger pretraining by default
    assert rules - PER_SHARD <= GLOBAL
    # ... unless the config asks for it
    cfg = tiny_run / "retrain.yaml"
    cfg.write_text("mae:\n  retrain_on_new_videos: true\n")
    assert "mae_pretrain" in {r for r, _ in dry_run_jobs(tiny_run, "--configfile", "config_tiny.yaml", str(cfg))}

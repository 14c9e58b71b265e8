"""expmae.dag's rule helpers without Snakemake: the training and extraction jobs' inputs, flags and
params over the demo config (the same functions the rule files bind by name)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from expmae import config
from expmae.dag import extract, flag_args, js, train
from fixtures.workflow import ROOT


@pytest.fixture(scope="module")
def cfg() -> dict:
    return config.load([ROOT / "workflow" / "presets" / "demo.yaml"], base=ROOT / "config.yaml")


def test_train_plan_dirs_inputs_and_flags(cfg):
    p = train.TrainPlan(cfg, "res", ["s00000", "s00001"])
    assert p.rounds == list(range(cfg["pseudolabel"]["rounds"] + 1))
    assert "late" in p.fuse_heads and "late" not in p.trained_fuse_heads
    assert p.fuse_dirs(1)[0] == f"res/fuse/round1/all/{p.fuse_heads[0]}" and len(p.fuse_dirs(1)) == len(p.combos) * 4
    assert p.round_dirs(0)[: len(p.feature_sets)] == [f"res/classify/round0/{fs}" for fs in p.feature_sets]
    assert p.pseudo_input(SimpleNamespace(round="0")) == []
    assert p.pseudo_input(SimpleNamespace(round="2")) == ["res/pseudo/round1.parquet"]
    assert p.feature_arg(["a"]) == "--features a=res/features/a/s00000.parquet,res/features/a/s00001.parquet"
    assert p.feature_arg(["a"], ["p00000"]) == "--features a=res/features/a/p00000.parquet"
    args = p.label_args({"test": ["t.csv"], "test_labels": [], "pseudo": [], "groups": [], "manifests": ["m 1"]})
    assert args == "--test t.csv --manifests 'm 1'"
    assert "rounds" not in p.pseudo_cfg and "feature_sets" not in p.train_cfg and p.train_cfg["seeds"] == cfg["seeds"]


def test_extract_plan_cache_files_and_flags(cfg):
    names = {"audio": ["egemaps"], "text": ["minilm"], "visual": ["expmae"]}
    p = extract.ExtractPlan(cfg | {"classify": {"feature_sets": ["egemaps", "minilm", "expmae"]}}, "res", names,
                            {"s00001"})
    assert p.shard_files("s00000") == [
        "res/ingest/s00000.parquet", "res/faces/s00000", "res/features/egemaps/s00000.parquet",
        "res/features/egemaps/s00000.qc.parquet", "res/features/minilm/s00000.parquet",
        "res/features/expmae/s00000.parquet", "res/features/expmae/s00000.frames.npy"]
    assert p.shard_files("s00001")[-1] == "res/asr/s00001.parquet"
    assert p.encoder_input(SimpleNamespace(fset="expmae")) == ["res/mae/encoder.safetensors"]
    assert p.encoder_input(SimpleNamespace(fset="egemaps")) == []
    out = extract.extract_args({"manifest": "m.parquet", "encoder": []}, {"features": "o p.parquet"}, encoding="gbk")
    assert out == "--manifest m.parquet --out 'o p.parquet' --encoding gbk"


def test_params_json_is_key_order_free_and_flags_skip_unset_inputs():
    assert js({"b": 1, "a": [2]}) == js({"a": [2], "b": 1}) == '{"a": [2], "b": 1}'
    assert flag_args({"test_labels": "a b.csv", "groups": []}, ("test_labels", "groups")) == "--test-labels 'a b.csv'"

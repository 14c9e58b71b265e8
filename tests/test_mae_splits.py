"""MAE pretraining splits (mae.pretrain_splits): which videos it sees (labeled / unlabeled / test, the
classifiers' rule), what meta.json records of it, and the report's transductive_summary."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from expmae.io import config_hash
from expmae.mae.pretrain import PretrainConfig, main as pretrain_main, setup
from expmae.mae.splits import SPLITS, count_by_split, excludes, keep_frames, split_of, video_splits
from expmae.mae.state import transductive_summary
from fixtures.mae_shards import write_shard

torch.set_num_threads(1)
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1,
            mask_ratio=0.75, norm_pix_loss=True, batch_size=6, lr=1e-3, warmup_epochs=1, frames_per_video=4,
            epochs=1, seed=0, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Two shards of 6 videos: v0 v1 labeled, v2 labeled with an unknown class (-> unlabeled), v3 in the
    test list and the label CSV (-> test), v4 test, v5 in neither (unlabeled); `ghost` has no video."""
    root = tmp_path_factory.mktemp("splits")
    shards = [write_shard(root / "s00000", {"v0": 4, "v1": 3, "v2": 3}, seed=1),
              write_shard(root / "s00001", {"v3": 4, "v4": 5, "v5": 3}, seed=2)]
    labels, test = root / "labels.csv", root / "test.csv"
    labels.write_text("name,discrete\nv0,happy\nv1,Sad\nv2,bored\nv3,happy\nghost,sad\n")
    test.write_text("name\nv3\nv4\n")
    return {"shards": shards, "labels": labels, "test": test, "classes": ["happy", "sad"]}


def test_split_rule_is_the_classifiers(data) -> None:
    sp = video_splits(data["labels"], data["test"], data["classes"])
    got = {n: split_of(n, sp) for n in ("v0", "v1", "v2", "v3", "v4", "v5")}
    assert got == {"v0": "labeled", "v1": "labeled", "v2": "unlabeled", "v3": "test", "v4": "test",
                   "v5": "unlabeled"}
    assert count_by_split(["v0", "v0", "v1", "v2", "v3", "v4", "v5"], sp) == {"labeled": 2, "unlabeled": 2, "test": 2}
    # no test list (data.test empty): nothing is test; no classes: every label seen is one (v2 labeled)
    assert split_of("v4", video_splits(data["labels"], "", data["classes"])) == "unlabeled"
    assert split_of("v2", video_splits(data["labels"], None, [])) == "labeled"
    frames = pd.read_parquet(data["shards"][1] / "frames.parquet")
    kept = keep_frames(frames, sp, ["labeled", "unlabeled"])
    assert set(kept["name"]) == {"v5"}
    assert kept["crop_row"].tolist() == frames.loc[frames["name"] == "v5", "crop_row"].tolist()
    assert not excludes(list(SPLITS)) and excludes(["labeled", "unlabeled"])
    with pytest.raises(ValueError, match="mae.pretrain_splits"):
        PretrainConfig.from_params({**TINY, "pretrain_splits": ["validation"]})


def test_all_splits_change_nothing(data, tmp_path) -> None:
    """With all three splits (the default) the samples and the fingerprint are those of before the key."""
    sp = video_splits(data["labels"], data["test"], data["classes"])
    c = PretrainConfig.from_params(TINY)
    assert c.pretrain_splits == list(SPLITS) and not c.filters
    with_lists, without = setup(c, data["shards"], tmp_path / "a", sp), setup(c, data["shards"], tmp_path / "b")
    assert (with_lists.samples == without.samples).all() and with_lists.fp == without.fp
    d = c.to_dict()  # the hash of runs from before the key: a checkpoint of theirs resumes
    for k in ("device", "num_workers", "checkpoint_every_steps", "compile", "retrain_on_new_videos", "retrain_fraction",
              "log_every_steps", "tensorboard", "recon_every_steps", "layer_decay", "pretrain_splits"):
        d.pop(k)
    assert with_lists.fp == config_hash({"cfg": d, "shards": with_lists.shards, "n_samples": with_lists.n})
    inductive = setup(PretrainConfig.from_params({**TINY, "pretrain_splits": ["labeled", "unlabeled"]}),
                      data["shards"], tmp_path / "c", sp)
    assert inductive.n < with_lists.n and inductive.fp != with_lists.fp
    with pytest.raises(ValueError, match="pretrain_splits"):  # a split left out needs the lists
        setup(PretrainConfig.from_params({**TINY, "pretrain_splits": ["labeled"]}), data["shards"], tmp_path / "d")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["image", "video"])
def test_meta_records_splits_and_transductive(data, tmp_path, kind: str) -> None:
    lists = ["--labels", str(data["labels"]), "--test", str(data["test"]), "--classes", ",".join(data["classes"])]
    video = {"kind": "video", "num_frames": 2, "tubelet": 1, "batch_size": 2} if kind == "video" else {}
    section = "mae_video" if kind == "video" else "mae"
    metas = []
    for tag, splits in (("all", list(SPLITS)), ("inductive", ["labeled", "unlabeled"])):
        out = tmp_path / tag / section
        params = {**TINY, **video, "pretrain_splits": splits}
        pretrain_main(["--faces", *map(str, data["shards"]), "--out", str(out), "--params", json.dumps(params), *lists])
        metas.append(out / "meta.json")
    full, ind = (json.loads(m.read_text()) for m in metas)
    assert full["pretrain_splits"] == list(SPLITS) and full["transductive"] is True
    assert full["videos_by_split"] == {"labeled": 2, "unlabeled": 2, "test": 2} and full["n_videos"] == 6
    assert ind["pretrain_splits"] == ["labeled", "unlabeled"] and ind["transductive"] is False
    assert ind["videos_by_split"] == {"labeled": 2, "unlabeled": 2, "test": 0} and ind["n_videos"] == 4
    w_full = load_file(str(metas[0].parent / "encoder.safetensors"))
    w_ind = load_file(str(metas[1].parent / "encoder.safetensors"))
    assert any(not torch.equal(w_full[k], w_ind[k]) for k in w_full)  # other videos, other weights

    s = transductive_summary([metas[1], tmp_path / "missing" / "meta.json"])
    assert s == {"transductive": False, "unknown": [], "by_encoder": {section: {
        "pretrain_splits": ["labeled", "unlabeled"], "videos_by_split": ind["videos_by_split"], "transductive": False}}}
    assert transductive_summary([metas[0]])["transductive"] is True


def test_summary_tolerates_old_and_broken_meta(tmp_path) -> None:
    (tmp_path / "mae").mkdir()
    (tmp_path / "mae" / "meta.json").write_text(json.dumps({"shards": ["s00000"]}))  # from before the keys
    (tmp_path / "mae_video").mkdir()
    (tmp_path / "mae_video" / "meta.json").write_text("{not json")
    s = transductive_summary([tmp_path / "mae" / "meta.json", str(tmp_path / "mae_video" / "meta.json")])
    assert s == {"transductive": False, "unknown": ["mae"], "by_encoder": {"mae": {
        "pretrain_splits": None, "videos_by_split": None, "transductive": None}}}
    assert transductive_summary([]) == {"transductive": False, "by_encoder": {}, "unknown": []}


def test_unusable_label_csv_fails_only_a_filtering_job(data, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("video,emotion\nv0,happy\n")  # no name / discrete columns
    args = ["--faces", *map(str, data["shards"]), "--labels", str(bad), "--classes", "happy,sad"]
    pretrain_main([*args, "--out", str(tmp_path / "all"), "--params", json.dumps({**TINY, "epochs": 0})])
    meta = json.loads((tmp_path / "all" / "meta.json").read_text())
    assert meta["videos_by_split"] is None and meta["transductive"] is None and meta["n_videos"] == 6
    with pytest.raises(SystemExit, match="pretrain_splits"):
        pretrain_main([*args, "--out", str(tmp_path / "ind"),
                       "--params", json.dumps({**TINY, "epochs": 0, "pretrain_splits": ["labeled"]})])

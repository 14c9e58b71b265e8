"""expmae.dag.shards, the workflow's parse-time shard plan, without Snakemake: the main process's plan
(eager maps, nothing written until save) and a cluster job process's (the saved registry, lazy maps)
give the same per-shard values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from expmae import ingest
from expmae.dag import shards as shard_plan
from expmae.features import media

EXTS = [".mp4"]


def videos(folder: Path, n: int, prefix: str = "v") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{prefix}{i:02d}.mp4").write_bytes(b"x" * (i + 1))
    return [str(folder)]


def data(dirs: list[str], **more) -> dict:
    return {"videos": dirs, "extensions": EXTS, "predict": [], "manifest": "", **more}


def test_main_plan_writes_nothing_until_saved_and_a_job_process_reads_the_same(tmp_path):
    res = str(tmp_path / "res")
    main = shard_plan.plan(res, data(videos(tmp_path / "v", 5), predict=videos(tmp_path / "p", 1, "new")), 2)
    assert main.main and main.shards("train") == ["s00000", "s00001", "s00002"]
    assert main.shards("predict") == ["p00000"]
    assert not Path(res).exists()  # -n, --lint and --report leave results/ alone
    main.save()
    job = shard_plan.plan(res, data([]), 2, main=False)  # a job process never scans (data.videos unused)
    assert not job.main and job.digest == "" and job.shards("train") == main.shards("train")
    eager = main.per_shard(ingest.fingerprints)
    lazy = job.per_shard(ingest.fingerprints)
    assert isinstance(eager, dict) and not isinstance(lazy, dict)
    assert {s: lazy[s] for s in lazy} == eager


def test_lazy_maps_with_keys_have_only_those_shards(tmp_path):
    res = str(tmp_path / "res")
    main = shard_plan.plan(res, data(videos(tmp_path / "v", 4)), 2)
    main.save()
    job = shard_plan.plan(res, data([]), 2, main=False)
    texts = {"v00": "hello", "v03": "bye"}
    lazy = job.per_shard(lambda reg: media.shard_hashes(texts, reg), lambda: ["s00001"])
    assert list(lazy) == ["s00001"] and "s00000" not in lazy
    assert lazy["s00001"] == main.per_shard(lambda reg: media.shard_hashes(texts, reg))["s00001"]


def test_the_issue_digest_follows_the_issues(tmp_path):
    res = str(tmp_path / "res")
    dirs = videos(tmp_path / "v", 2)
    clean = shard_plan.plan(res, data(dirs), 10)
    gone = shard_plan.plan(res, data(dirs + [str(tmp_path / "gone")]), 10)
    assert clean.digest and gone.digest != clean.digest and "video folder missing" in gone.issues


def test_no_videos_is_one_error_naming_the_keys(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config key data.videos"):
        shard_plan.plan(str(tmp_path / "res"), data([str(tmp_path / "empty")]), 10)


def test_pretraining_keeps_the_checkpoints_shards_unless_told_to_retrain(tmp_path):
    res, shards = tmp_path / "res", ["s00000", "s00001", "s00002"]
    assert shard_plan.pretrain_shards(str(res), "mae", False, shards) == shards  # no checkpoint yet
    (res / "mae").mkdir(parents=True)
    (res / "mae" / "meta.json").write_text(json.dumps({"shards": ["s00000", "s00001", "gone"]}), encoding="utf-8")
    assert shard_plan.pretrain_shards(str(res), "mae", False, shards) == ["s00000", "s00001"]
    assert shard_plan.pretrain_shards(str(res), "mae", True, shards) == shards
    assert shard_plan.pretrain_shards(str(res), "mae_video", False, shards) == shards

"""data.manifest: a list of video paths read at parse time instead of scanning folders (expmae/manifest.py)."""
import os
import subprocess
import sys

import pandas as pd
import pytest

from expmae import ingest
from expmae.manifest import ManifestError, read_manifest
from expmae.report.qc import faces_rows
from fixtures.workflow import dry_run_jobs, placeholder_workflow, smk

EXTS = [".mp4", ".avi"]


def test_csv_parquet_and_text_read_alike_relative_to_the_manifest(tmp_path):
    d = tmp_path / "lists"
    d.mkdir()
    pd.DataFrame({"path": ["a.mp4", "sub/b.avi", "/abs/c.mp4"], "size": [10, 20, 30],
                  "mtime": [1.5, 2.0, 3.25]}).to_csv(d / "m.csv", index=False)
    pd.read_csv(d / "m.csv").to_parquet(d / "m.parquet")
    (d / "m.txt").write_text("# clips\na.mp4\n\n./sub/b.avi\n/abs/c.mp4\n", encoding="utf-8")
    csv, issues = read_manifest(d / "m.csv", EXTS)
    assert issues == [] and csv["name"].tolist() == ["a", "b", "c"]
    assert csv["path"].tolist() == [f"{d}/a.mp4", f"{d}/sub/b.avi", "/abs/c.mp4"]
    assert csv["size"].tolist() == [10, 20, 30] and csv["mtime_ns"].tolist() == [1_500_000_000, 2 * 10**9, 3_250_000_000]
    pd.testing.assert_frame_equal(read_manifest(d / "m.parquet", EXTS)[0], csv)
    txt, _ = read_manifest(d / "m.txt", EXTS)
    assert txt[["name", "path"]].equals(csv[["name", "path"]]) and (txt["size"] == -1).all()  # size unknown


def test_problem_rows_are_issues_not_errors(tmp_path):
    (tmp_path / "m.txt").write_text("x.mp4\nnotes.txt\n.hidden.mp4\nother/x.avi\ny.MP4\n", encoding="utf-8")
    rows, issues = read_manifest(tmp_path / "m.txt", EXTS)
    assert rows["name"].tolist() == ["x", "y"]
    reasons = sorted(r.split(":")[0] for _, _, r in issues)
    assert reasons == ["duplicate id", "hidden file", "not a video by data.extensions"]


@pytest.mark.parametrize("content,why", [(b"PAR1garbage", "cannot read"), (b"file,size\na.mp4,1\n", "needs a `path`")])
def test_bad_manifest_names_the_key(tmp_path, content, why):
    p = tmp_path / ("m.parquet" if content.startswith(b"PAR1") else "m.csv")
    p.write_bytes(content)
    with pytest.raises(ManifestError, match=f"config key data.manifest: .*{why}"):
        read_manifest(p, EXTS)
    assert any("data.manifest" in e for e in ingest.check_data(
        {"videos": [], "manifest": str(tmp_path / "gone.csv"), "labels": "l.csv"}))


def test_planning_stats_no_listed_file_and_appending_adds_only_new_shards(tmp_path, monkeypatch):
    m = tmp_path / "m.txt"
    m.write_text("".join(f"/nowhere/v{i:03d}.mp4\n" for i in range(5)), encoding="utf-8")
    seen = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: seen.append(str(p)) or real_stat(p, *a, **k))
    reg1, _ = ingest.plan_registry(tmp_path / "res", [], EXTS, 2, manifest=str(m))
    assert not [p for p in seen if "nowhere" in p]  # paths that do not exist still plan: never stat'ed
    assert reg1.groupby("shard")["name"].apply(list).to_dict() == {
        "s00000": ["v000", "v001"], "s00001": ["v002", "v003"], "s00002": ["v004"]}
    ingest.save_registry(tmp_path / "res", reg1, "")
    fp1 = ingest.fingerprints(reg1)
    with open(m, "a", encoding="utf-8") as f:  # a cluster user appends lines (one sorting first, too)
        f.write("/nowhere/a000.mp4\n/nowhere/v005.mp4\n")
    reg2, _ = ingest.plan_registry(tmp_path / "res", [], EXTS, 2, manifest=str(m))
    old = reg2[reg2["name"].isin(reg1["name"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, reg1.reset_index(drop=True))
    assert reg2[~reg2["name"].isin(reg1["name"])].groupby("shard")["name"].apply(list).to_dict() == {
        "s00003": ["a000", "v005"]}
    assert {s: h for s, h in ingest.fingerprints(reg2).items() if s in fp1} == fp1


def test_scan_and_manifest_together_keep_the_scanned_path(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.txt").write_text("elsewhere/a.mp4\nelsewhere/b.mp4\n", encoding="utf-8")
    reg, issues = ingest.plan_registry(tmp_path / "res", [str(tmp_path / "v")], EXTS, 10, manifest=str(tmp_path / "m.txt"))
    assert dict(zip(reg["name"], reg["path"])) == {"a": str(tmp_path / "v" / "a.mp4"), "b": f"{tmp_path}/elsewhere/b.mp4"}
    assert "duplicate id: kept" in issues


def test_gone_path_is_a_qc_row_of_the_jobs(tmp_path):
    clip = tmp_path / "here.mp4"
    clip.write_bytes(b"\0" * 10)
    (tmp_path / "m.txt").write_text("here.mp4\ngone.mp4\n", encoding="utf-8")
    reg, issues = ingest.plan_registry(tmp_path / "res", [], EXTS, 10, manifest=str(tmp_path / "m.txt"))
    ingest.save_registry(tmp_path / "res", reg, issues)
    shard = tmp_path / "res" / "ingest" / "s00000.parquet"
    members = ingest.write_shard(tmp_path / "res" / "ingest" / "registry.parquet", "s00000", shard)
    assert dict(zip(members["name"], members["size"])) == {"gone": -1, "here": 10}  # the job stats, parse time never
    p = subprocess.run([sys.executable, "-m", "expmae.faces", "--manifest", str(shard), "--out", str(tmp_path / "faces"),
                        "--threads", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {r["name"]: r["reason"] for r in faces_rows(str(tmp_path / "faces" / "qc.parquet"))}
    assert rows["gone"] == "file missing"


@pytest.mark.e2e
def test_dry_run_from_a_manifest(tmp_path):
    wd = placeholder_workflow(tmp_path / "wf", n=12)
    videos = sorted((wd / "data" / "tiny" / "videos").iterdir())
    (wd / "data" / "tiny" / "list.txt").write_text("".join(f"videos/{v.name}\n" for v in videos) + "videos/gone.mp4\n")
    for v in videos:
        v.unlink()  # the dry run never looks at the files
    (wd / "manifest.yaml").write_text("data:\n  videos: []\n  manifest: data/tiny/list.txt\ningest:\n  shard_size: 5\n")
    jobs = dry_run_jobs(wd, "--configfile", "config_tiny.yaml", "manifest.yaml")
    assert sorted(w["shard"] for r, w in jobs if r == "ingest_shard") == ["s00000", "s00001", "s00002"]
    assert not (wd / "results").exists()
    (wd / "manifest.yaml").write_text("data:\n  videos: []\n  manifest: data/tiny/list.txt.parquet\n")
    (wd / "data" / "tiny" / "list.txt.parquet").write_bytes(b"PAR1 not parquet")
    p = smk(wd, "-n", "--configfile", "config_tiny.yaml", "manifest.yaml", check=False)
    assert p.returncode != 0 and "config key data.manifest" in p.stdout + p.stderr


def test_check_reads_the_manifest(tmp_path):
    from expmae.check import check_videos

    (tmp_path / "here.mp4").write_bytes(b"x")
    (tmp_path / "m.txt").write_text("here.mp4\ngone.mp4\n", encoding="utf-8")
    rows = []
    df = check_videos({"videos": [], "manifest": str(tmp_path / "m.txt"), "extensions": [".mp4"]}, rows)
    assert sorted(df["name"]) == ["gone", "here"]
    assert [(r.level, "1 of the last 2 paths do not exist" in r.value) for r in rows if r.item == "data.manifest"] == [("warn", True)]
    (tmp_path / "m.csv").write_text("file\nhere.mp4\n", encoding="utf-8")
    rows = []
    check_videos({"videos": [], "manifest": str(tmp_path / "m.csv")}, rows)
    assert [r.level for r in rows if r.item == "data.manifest"] == ["error"]


def test_a_job_process_gets_the_main_process_hashes_one_shard_at_a_time():
    """Cluster job processes compute per-shard hashes lazily (shard_hash.LazyShards): the values and the
    key sets equal the eager maps the main process plans with, for an unsorted registry with names that
    need JSON escaping, transcripts for some videos and shards without ASR work."""
    from expmae.features import config as fcfg
    from expmae.features import media
    from expmae.shard_hash import LazyShards, ShardRows

    names = [f"v{i:03d}" for i in range(40)] + ['naïve "quoted"', "名字"]
    reg = pd.DataFrame({"name": names, "path": [f"/d/{n}.mp4" for n in names], "size": range(42),
                        "mtime_ns": range(100, 142), "shard": [f"s{(i * 7) % 5:05d}" for i in range(42)],
                        "role": "train"}).sample(frac=1, random_state=0)
    # ASR work in s00000 (its even members lack a transcript) and s00002 ("名字"), none in the other three
    lack = {names[i] for i in range(0, 42, 2) if (i * 7) % 5 == 0} | {"名字"}
    tr = {n: f"text {n}" for n in names if n not in lack}
    asr = {"enabled": "auto"}
    cases = [(ingest.fingerprints, None), (lambda r: media.shard_hashes(tr, r), None),
             (lambda r: fcfg.asr_plan(asr, tr, r), fcfg.asr_rows(asr, tr, reg)["shard"].unique())]
    for fn, keys in cases:
        eager, lazy = fn(reg), LazyShards(fn, ShardRows(reg), keys)
        assert sorted(lazy) == sorted(eager) and all(s in lazy for s in eager) and len(eager) in (2, 5)
        assert {s: lazy[s] for s in reversed(sorted(lazy))} == eager
    full = {n: "t" for n in names}  # every video has a transcript: no shard has an asr job
    assert fcfg.asr_plan(asr, full, reg) == {} and len(LazyShards(lambda r: {}, ShardRows(reg), fcfg.asr_rows(asr, full, reg)["shard"])) == 0
    with pytest.raises(KeyError):
        LazyShards(ingest.fingerprints, ShardRows(reg))["s99999"]

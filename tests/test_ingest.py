"""Shard registry: append-only membership, duplicates, fingerprints; data.predict videos in their own shards."""
import hashlib
import io
import os

import pandas as pd
import pytest

from expmae import ingest
from expmae.ingest import (
    assign, fingerprints, plan_registry, read_registry, save_registry, scan, update_registry, write_shard,
)


def touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_new_videos_only_create_new_shards(tmp_path):
    v = tmp_path / "videos"
    for i in range(5):
        touch(v / f"a{i}.mp4")
    r1 = update_registry(tmp_path / "res", [str(v)], [".mp4"], shard_size=2)
    assert r1.groupby("shard")["name"].apply(list).to_dict() == {
        "s00000": ["a0", "a1"], "s00001": ["a2", "a3"], "s00002": ["a4"]}
    fp1 = fingerprints(r1)
    # New names sorting *before* old ones must not join or reshuffle old shards (s00002 stays partial).
    for n in ["0new", "b1", "b2"]:
        touch(v / f"{n}.mp4")
    r2 = update_registry(tmp_path / "res", [str(v)], [".mp4"], shard_size=2)
    old = r2[r2["name"].isin(r1["name"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, r1.reset_index(drop=True))
    assert r2[~r2["name"].isin(r1["name"])].groupby("shard")["name"].apply(list).to_dict() == {
        "s00003": ["0new", "b1"], "s00004": ["b2"]}
    fp2 = fingerprints(r2)
    assert all(fp2[s] == fp1[s] for s in fp1)
    # Registry persisted: a third scan with nothing new changes nothing.
    r3 = update_registry(tmp_path / "res", [str(v)], [".mp4"], shard_size=2)
    pd.testing.assert_frame_equal(r3, r2)


def test_replaced_video_changes_only_its_shard_fingerprint(tmp_path):
    v = tmp_path / "videos"
    for i in range(4):
        touch(v / f"a{i}.mp4")
    fp1 = fingerprints(update_registry(tmp_path / "res", [str(v)], [".mp4"], 2))
    touch(v / "a3.mp4", b"longer content")
    fp2 = fingerprints(update_registry(tmp_path / "res", [str(v)], [".mp4"], 2))
    assert fp1["s00000"] == fp2["s00000"] and fp1["s00001"] != fp2["s00001"]


def test_duplicates_odd_names_and_missing_folder(tmp_path):
    touch(tmp_path / "a" / "clip (1) é.mp4")
    touch(tmp_path / "a" / "x.mp4")
    touch(tmp_path / "b" / "x.avi")          # duplicate id
    touch(tmp_path / "b" / "notes.txt")      # not a video
    touch(tmp_path / "b" / ".hidden.mp4")    # hidden/partial download
    s = scan([tmp_path / "a", tmp_path / "b", tmp_path / "nope"], [".mp4", ".avi"])
    assert sorted(s.videos["name"]) == ["clip (1) é", "x"]
    reasons = {r for _, _, r in s.issues}
    assert any(r.startswith("duplicate id") for r in reasons) and "video folder missing" in reasons
    update_registry(tmp_path / "res", [str(tmp_path / "a"), str(tmp_path / "b")], [".mp4", ".avi"], 10)
    issues = (tmp_path / "res" / "ingest" / "issues.tsv").read_text(encoding="utf-8")
    assert "duplicate id" in issues


def test_non_main_process_does_not_write(tmp_path):
    touch(tmp_path / "v" / "a.mp4")
    r = read_registry(tmp_path / "res")  # what a cluster job process sees before the main process saved one
    assert r.empty and not (tmp_path / "res").exists()


def test_planning_writes_nothing_and_matches_what_is_saved(tmp_path):
    for i in range(3):
        touch(tmp_path / "v" / f"a{i}.mp4")
    planned, issues = plan_registry(tmp_path / "res", [str(tmp_path / "v"), str(tmp_path / "gone")], [".mp4"], 2)
    assert len(planned) == 3 and "video folder missing" in issues and not (tmp_path / "res").exists()
    saved = update_registry(tmp_path / "res", [str(tmp_path / "v"), str(tmp_path / "gone")], [".mp4"], 2)
    assert saved.equals(planned) and read_registry(tmp_path / "res").equals(planned)


def test_write_shard_manifest(tmp_path):
    v = tmp_path / "v"
    for i in range(3):
        touch(v / f"a{i}.mp4")
    update_registry(tmp_path / "res", [str(v)], [".mp4"], 2)
    m = write_shard(tmp_path / "res" / "ingest" / "registry.parquet", "s00001", tmp_path / "m.parquet")
    assert m["name"].tolist() == ["a2"]
    got = pd.read_parquet(tmp_path / "m.parquet")
    assert got.columns.tolist() == ["name", "path", "size", "mtime_ns", "sha256"]
    assert got["sha256"].tolist() == [hashlib.sha256(b"x").hexdigest()]


def test_assign_rejects_bad_shard_size():
    import pytest
    with pytest.raises(ValueError, match="ingest.shard_size"):
        assign(pd.DataFrame(columns=["name", "path", "shard", "size", "mtime_ns"]),
               pd.DataFrame(columns=["name", "path", "size", "mtime_ns"]), 0)


def test_a_video_moved_between_videos_and_predict_keeps_its_role_with_an_issue_row(tmp_path):
    """Shards never change membership: a predict video moved into data.videos does not silently stay
    untrained, nor a training video moved into data.predict silently go unpredicted: an issue row each."""
    (tmp_path / "v").mkdir()
    (tmp_path / "p").mkdir()
    for folder, name in (("v", "a"), ("v", "b"), ("p", "c")):
        (tmp_path / folder / f"{name}.mp4").write_bytes(b"x")
    res = tmp_path / "res"
    reg, issues = plan_registry(res, [tmp_path / "v"], [".mp4"], 10, predict=[tmp_path / "p"])
    save_registry(res, reg, issues)
    assert len(pd.read_csv(io.StringIO(issues), sep="\t")) == 0
    os.rename(tmp_path / "p" / "c.mp4", tmp_path / "v" / "c.mp4")
    os.rename(tmp_path / "v" / "b.mp4", tmp_path / "p" / "b.mp4")
    reg2, issues2 = plan_registry(res, [tmp_path / "v"], [".mp4"], 10, predict=[tmp_path / "p"])
    assert reg2.set_index("name")["role"].to_dict() == {"a": "train", "b": "train", "c": "predict"}
    rows = pd.read_csv(io.StringIO(issues2), sep="\t").set_index("name")["reason"]
    assert "never trains" in rows["c"] and "not predicted" in rows["b"] and "a" not in rows


def _specials(folder):
    """A FIFO, a /dev/zero symlink and a /proc/self/mem symlink beside a real video."""
    touch(folder / "real.mp4")
    os.mkfifo(folder / "pipe.mp4")
    (folder / "zero.mp4").symlink_to("/dev/zero")
    (folder / "mem.mp4").symlink_to("/proc/self/mem")


@pytest.mark.slow  # child processes / ~800 reads: seconds on a loaded box
def test_special_files_are_never_read_and_become_issue_rows(tmp_path):
    import subprocess
    import sys

    from expmae.ingest import NOT_REGULAR

    _specials(tmp_path / "v")
    # in a child with a deadline: hashing a FIFO to EOF used to block forever
    code = ("import sys; from expmae.ingest import content_hash; "
            "print([content_hash(sys.argv[1] + f) for f in ('/pipe.mp4', '/zero.mp4', '/mem.mp4', '/real.mp4')])")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "v")], capture_output=True, text=True, timeout=20)
    assert p.stdout.strip().splitlines()[-1] == str(["", "", "", hashlib.sha256(b"x").hexdigest()]), p.stderr
    s = scan([tmp_path / "v"], [".mp4"])
    assert sorted((n, r) for n, _, r in s.issues) == [(n, NOT_REGULAR) for n in ("mem", "pipe", "zero")]
    assert s.videos.set_index("name").loc[["mem", "pipe", "zero"], ["size", "mtime_ns"]].eq(0).all().all()


@pytest.mark.slow  # child processes / ~800 reads: seconds on a loaded box
def test_proc_symlink_never_reruns_its_shard(tmp_path):
    """Each parse is a new process, and /proc/self/mem is the reader's own: two processes must agree."""
    import subprocess
    import sys

    _specials(tmp_path / "v")
    code = ("import sys; from expmae.ingest import fingerprints, plan_registry; "
            "print(fingerprints(plan_registry(sys.argv[1], [sys.argv[2]], ['.mp4'], 10)[0]))")
    fp = [subprocess.run([sys.executable, "-c", code, str(tmp_path / "res"), str(tmp_path / "v")],
                         capture_output=True, text=True, timeout=60).stdout for _ in range(2)]
    assert fp[0] and fp[0] == fp[1]


@pytest.mark.e2e
def test_shard_job_with_special_files_finishes_with_their_qc_rows(tmp_path):
    """The real rules: ingest, the inputs check and the face stage of a shard holding a FIFO and a
    /dev/zero symlink finish within a minute, each special file a QC row."""
    import time

    from fixtures.workflow import placeholder_workflow, smk

    wd = placeholder_workflow(tmp_path / "wd", n=6)
    videos = wd / "data" / "tiny" / "videos"
    os.mkfifo(videos / "pipe.mp4")
    (videos / "zero.mp4").symlink_to("/dev/zero")
    t0 = time.monotonic()
    try:
        smk(wd, "-p", "results/qc/inputs.tsv", "results/faces/s00000")
    except Exception as err:  # noqa: BLE001
        pytest.fail(str(err)[-3000:])
    took = time.monotonic() - t0
    qc = pd.read_csv(wd / "results" / "qc" / "inputs.tsv", sep="\t")
    reasons = qc.set_index("name")["reason"].to_dict()
    assert "not a regular file" in reasons.get("pipe", "") and "not a regular file" in reasons.get("zero", ""), qc
    assert took < 60, f"{took:.0f} s"


def test_registry_gives_predict_videos_their_own_shards(tmp_path):
    train, pred = tmp_path / "train", tmp_path / "pred"
    train.mkdir(), pred.mkdir()
    for n in ("a", "b", "c"):
        (train / f"{n}.mp4").write_bytes(b"x")
    for n in ("c", "x", "y"):  # c is also a training video: kept as train, an issue row
        (pred / f"{n}.mp4").write_bytes(b"x")
    reg, issues = ingest.plan_registry(tmp_path / "res", [str(train)], [".mp4"], 2, predict=[str(pred)])
    by = reg.set_index("name")
    assert by.loc[["a", "b", "c"], "role"].eq("train").all() and by.loc[["x", "y"], "role"].eq("predict").all()
    assert set(by.loc[["x", "y"], "shard"]) == {"p00000"} and set(by.loc[["a", "b", "c"], "shard"]) == {"s00000", "s00001"}
    assert "in data.videos and data.predict, kept as train" in issues
    ingest.save_registry(tmp_path / "res", reg, issues)
    (pred / "z.mp4").write_bytes(b"x")
    (train / "d.mp4").write_bytes(b"x")
    reg2, _ = ingest.plan_registry(tmp_path / "res", [str(train)], [".mp4"], 2, predict=[str(pred)])
    by2 = reg2.set_index("name")
    assert by2.loc["z", "shard"] == "p00001" and by2.loc["d", "shard"] == "s00002"  # append-only, per role
    assert by2.loc[["a", "x"], "shard"].tolist() == by.loc[["a", "x"], "shard"].tolist()
    # the preflight check counts them and names the id that stays a training video
    from expmae.check import check_predict

    rows = []
    check_predict({"predict": [str(pred)]}, {"a", "b", "c", "d"}, rows)
    assert [(r.level, r.item) for r in rows] == [("warn", "data.predict")]
    assert "4 videos to predict; 1 also in data.videos (first: c): they stay training videos" in rows[0].value

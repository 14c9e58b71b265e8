"""Nothing silent: a generated folder of hard real-world inputs (tests/fixtures/hard_media.py) and one
test per defect of issue 15. Every problem is a QC row with a stable reason, never a stopped run,
never garbage passed on as data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from expmae import ingest, labels
from expmae.features import media
from expmae.io import CacheError, read_features, verify, write_features
from expmae.report.qc import complete_submission, qc_table
from fixtures import hard_media as hm
from fixtures.workflow import SNAKEMAKE, placeholder_workflow

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hard inputs")
    return root, hm.build(root)


@pytest.fixture(scope="session")
def scanned(corpus):
    root, _ = corpus
    return ingest.scan([root / "videos"], ingest.DEFAULT_EXTS)


# ---------------------------------------------------------------- ingest (defects 2, 7, 8, 9)

def test_corpus_registers_every_video_once_and_reports_the_rest(scanned):
    names = set(scanned.videos["name"]) - {"ffmpeg_mpeg4"}
    assert names == hm.REGISTERED
    reasons = [r for _, _, r in scanned.issues]
    # the symlink loop is followed once: one row, no "duplicate id" for every real video
    assert sum(r.startswith("folder scanned twice") for r in reasons) == 1
    assert not any(r.startswith("duplicate id") for r in reasons)
    by_name = {n: r for n, _, r in scanned.issues if n}
    assert by_name[".hidden"] == "hidden file: skipped"
    assert by_name["caf\\xe9"].startswith("file name not UTF-8")
    assert all(not p.startswith("/") for _, _, r in scanned.issues for p in r.split())  # no absolute paths


@pytest.mark.e2e
def test_non_utf8_name_never_stops_the_workflow(tmp_path):
    """Defect 2: a Latin-1 file name used to stop every run (also -n) at parse time."""
    wd = placeholder_workflow(tmp_path / "wf", 8)
    (wd / "data" / "tiny" / "videos" / os.fsdecode(hm.LATIN1 + b".mp4")).write_bytes(b"")
    p = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1", "--configfile", "config_tiny.yaml"], cwd=wd,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "inputs_qc" in p.stdout and not (wd / "results").exists()


def test_content_hash_finds_copies_links_and_leakage(corpus, tmp_path):
    """Defect 8: a byte copy or symlink of a labeled video, and a copy of a test video in training."""
    root, _ = corpus
    reg = ingest.update_registry(tmp_path / "res", [str(root / "videos")], ingest.DEFAULT_EXTS, 50)
    man = ingest.write_shard(tmp_path / "res" / "ingest" / "registry.parquet", "s00000", tmp_path / "m.parquet")
    assert len(man) == len(reg) and (man["sha256"].str.len() == 64).all()
    split = {"good": "test", "copy_of_good": "labeled"}
    rows = {r["name"]: r["reason"] for r in labels.duplicate_content(man, split)}
    # copy_of_good, good and link_to_good hold the same bytes: the first by name stays, the others are rows
    assert set(rows) == {"good", "link_to_good"} and all(r.startswith("duplicate content") for r in rows.values())
    assert "train/test leakage" in rows["good"], rows


# ---------------------------------------------------------------- CSVs (defects 1, 4, 9)

def test_gb18030_transcripts_and_labels_decode_exactly(tmp_path):
    """Defect 1: a GBK/GB18030 CSV decoded as UTF-8 became U+FFFD text and unmatched names."""
    t = tmp_path / "t.csv"
    t.write_bytes("name,chinese\n开心_01,我今天很开心\nb,\n".encode("gb18030"))
    got, warns = media.read_transcripts(t, "chinese")
    assert got == {"开心_01": "我今天很开心", "b": ""} and warns == []
    lab = tmp_path / "l.csv"
    lab.write_bytes("name,discrete,valence\n开心_01,happy,2.5\n".encode("gbk"))
    df, issues = labels.read_labels(lab, CLASSES)
    assert df["name"].tolist() == ["开心_01"] and issues == []
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffname\nx\n".encode("utf-8"))
    assert labels.read_names(bom) == (["x"], [])


def test_undecodable_bytes_are_a_qc_row_and_encoding_key_fixes_them(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("name,english\nc,café €\n".encode("cp1252"))  # b"caf\xe9 \x80": not UTF-8, not GB18030
    _, issues = labels.read_csv(p, key="data.transcripts")
    assert len(issues) == 1 and issues[0]["reason"].startswith("bytes replaced") and issues[0]["name"] == "t.csv"
    df, issues = labels.read_csv(p, encoding="cp1252")
    assert issues == [] and df["english"].tolist() == ["café €"]
    # b"Ren\xe9e" is a valid GB18030 pair: a configured encoding is tried before GB18030, or it would be ignored
    p.write_bytes("name,discrete\nRenée,happy\n".encode("cp1252"))
    assert labels.read_labels(p, CLASSES, "cp1252")[0]["name"].tolist() == ["Renée"]


def test_label_problems_each_get_their_own_reason(tmp_path):
    """Defect 9: non-numeric valence, conflicting duplicates (what was kept), unknown class."""
    p = tmp_path / "l.csv"
    p.write_text("name,discrete,valence\na,happy,1.5\nb,sad,high\nc,happy,\nc,sad,-1\nd,joy,0\na,happy,1.5\n")
    df, issues = labels.read_labels(p, CLASSES)
    assert df.set_index("name")["y"].to_dict() == {"a": 2, "b": 3, "c": 2}
    assert np.isnan(df.set_index("name").loc["b", "valence"])
    r = {(i["name"], i["reason"].split(":")[0]) for i in issues}
    assert r == {("b", "non-numeric valence"), ("c", "conflicting label rows"), ("d", "unknown label"),
                 ("a", "duplicate label row")}
    assert "kept 'happy'" in next(i["reason"] for i in issues if i["name"] == "c")


def test_test_names_without_video_get_rows_everywhere(tmp_path):
    """Defect 4: every listed test name is in the submission (flagged in QC)."""
    (tmp_path / "test.csv").write_text("name\nv1\nv2\nghost\n")
    pd.DataFrame({"name": ["v1", "v2"], "path": "x", "size": 1, "mtime_ns": 0, "sha256": ["a", "b"]}).to_parquet(
        tmp_path / "m.parquet")
    (tmp_path / "l.csv").write_text("name,discrete\nv1,happy\n")
    qc = labels.check([str(tmp_path / "m.parquet")], CLASSES, str(tmp_path / "l.csv"), test=str(tmp_path / "test.csv"))
    assert qc[qc["stage"] == "test"][["name", "reason"]].values.tolist() == [
        ["ghost", "test name without a video: flagged row in the submission"]]
    text, added = complete_submission("name,discrete,valence\nv2,sad,0.1\n", ["v2", "ghost"], CLASSES)
    sub = pd.read_csv(__import__("io").StringIO(text))
    assert added == ["ghost"] and sub["name"].tolist() == ["v2", "ghost"] and list(sub.columns) == [
        "name", "discrete", "valence"]


# ---------------------------------------------------------------- faces and audio (defects 8, 9)

def test_faces_qc_still_image_audio_only_and_notes_reach_summary(corpus, tmp_path):
    from expmae.faces import extract_shard

    _, c = corpus
    names = [*hm.FACES_REASON, *hm.FACES_NOTES, "good"]
    man = pd.DataFrame({"name": names, "path": [str(c[n]) for n in names]})
    q = extract_shard(man, tmp_path / "faces", {"fps": 4, "max_frames": 4}, threads=1, verbose=False)
    q = q.set_index("name")
    for n, reason in hm.FACES_REASON.items():
        assert not q.loc[n, "ok"] and q.loc[n, "reason"].startswith(reason), (n, q.loc[n, "reason"])
    summary = qc_table([str(tmp_path / "faces" / "qc.parquet")], [], [], None, [])
    got = set(map(tuple, summary[["name", "reason"]].values))
    assert {(n, note) for n, note in hm.FACES_NOTES.items()} <= got  # notes are rows of summary.tsv


def test_audio_reasons_have_no_paths(corpus):
    _, c = corpus
    reasons = {}
    for n in ("webm_vp8", "zero", "html", "truncated", "png_renamed"):
        try:
            media.load_audio(str(c[n]))
            reasons[n] = ""
        except Exception as err:  # noqa: BLE001 — what the audio stage does with each
            reasons[n] = media.audio_reason(err)
    assert reasons["webm_vp8"] == "no audio stream" and reasons["zero"] == "zero-byte file"
    assert reasons["html"].startswith("undecodable audio") and all(str(c[n].parent) not in r for n, r in reasons.items())


@pytest.mark.skipif(not hm.FFMPEG, reason="needs the ffmpeg program (.ci/run installs it)")
def test_ffmpeg_made_avi_is_a_normal_video(corpus, scanned):
    _, c = corpus
    assert "ffmpeg_mpeg4" in set(scanned.videos["name"])
    wav = media.load_audio(str(c["ffmpeg_mpeg4"]), 16000)
    assert 0.8 < len(wav) / 16000 < 1.3
    from expmae.faces.video import probe

    assert probe(str(c["ffmpeg_mpeg4"])).has_audio


# ---------------------------------------------------------------- config (defects 3, 6, 9)

def test_data_config_errors_name_the_key(tmp_path):
    (tmp_path / "v").mkdir()
    errs = ingest.check_data({"videos": [str(tmp_path / "v"), str(tmp_path / "vidoes")], "labels": str(tmp_path / "l.csv")})
    assert any(e.startswith("config key data.videos: folder") and "vidoes" in e for e in errs)
    assert any(e.startswith("config key data.labels: file") for e in errs)
    assert ingest.check_data({"videos": [], "labels": ""})[0].startswith("config key data.videos is not set")
    assert any(e.startswith("config key data.encoding: unknown") for e in
               ingest.check_data({"videos": [str(tmp_path / "v")], "labels": "", "encoding": "klingon"}))


@pytest.mark.e2e
def test_partial_overlay_never_inherits_demo_files_and_missing_folder_is_an_error(tmp_path):
    """Defects 6 and 3, through Snakemake itself (dry runs: nothing is written)."""
    wd = placeholder_workflow(tmp_path / "wf", 8)
    (wd / "my.yaml").write_text("data: {videos: [data/tiny/videos], labels: data/tiny/labels.csv}\n")
    p = subprocess.run([*SNAKEMAKE, "-n", "-p", "--cores", "1", "--configfile", "my.yaml"], cwd=wd,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "transcripts.csv" not in p.stdout and "test.csv" not in p.stdout and "data/demo" not in p.stdout
    (wd / "typo.yaml").write_text("data: {videos: [data/tiny/videos, data/tiny/vidoes], labels: data/tiny/labels.csv}\n")
    p = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1", "--configfile", "typo.yaml"], cwd=wd,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "config key data.videos: folder 'data/tiny/vidoes' does not exist" in p.stdout + p.stderr
    assert not (wd / "results").exists()


# ---------------------------------------------------------------- cache healing (defect 5)

def test_corrupt_cache_is_named_and_removed(tmp_path):
    f = tmp_path / "features" / "egemaps" / "s00000.parquet"
    write_features(f, ["a", "b"], np.ones((2, 2000), np.float32), np.array([True, True]), {"extractor": "x"})
    assert verify(f) == "" and read_features([f])[0] == ["a", "b"]
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # a silent bit flip inside a data page
    f.write_bytes(raw)
    assert "CRC" in verify(f) or verify(f)
    f.with_suffix(".bak").write_bytes(raw)
    with pytest.raises(CacheError, match=r"unreadable cache file .*s00000\.parquet.*removed; rerun snakemake"):
        read_features([f])
    assert not f.exists()  # so a plain rerun rebuilds it (it is a target of rule all)
    f.with_suffix(".bak").rename(f)
    p = subprocess.run([sys.executable, "-m", "expmae.io", "verify", "--files", str(f), "--out", str(tmp_path / "ok")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "removed" in p.stdout and not f.exists() and not (tmp_path / "ok").exists()


@pytest.mark.e2e
def test_deleted_shard_output_is_rebuilt_by_a_plain_rerun(tmp_path):
    """Defect 5: after rm of one cached shard file, a rerun must rebuild it and what depends on it
    (it said "Nothing to be done"). Real Snakemake over placeholder outputs (--touch): no decoding."""
    wd = placeholder_workflow(tmp_path / "wf", 8)
    run = lambda *a: subprocess.run([*SNAKEMAKE, "--cores", "1", "--configfile", "config_tiny.yaml", *a], cwd=wd,
                                    capture_output=True, text=True, timeout=300)
    p = run("-n", "--detailed-summary", "--quiet", "rules")
    outputs = [line.split("\t")[0] for line in p.stdout.splitlines()[1:] if "\t" in line]
    assert outputs, p.stdout[-2000:] + p.stderr[-2000:]
    # as a real run's start would: shard outputs without their registry are refused (expmae/registry.py)
    ingest.update_registry(wd / "results", [str(wd / "data" / "tiny" / "videos")], ingest.DEFAULT_EXTS, 24)
    for o in outputs:
        path = wd / o
        if o.rstrip("/").split("/")[-2:-1] == ["faces"] or o.endswith(("faces_montages", "bundle")):  # directory()
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    assert run("--touch", "--forceall").returncode == 0  # --forceall records the params provenance
    p = run("-n")
    assert "Nothing to be done" in p.stdout + p.stderr
    victim = next(o for o in outputs if o.startswith("results/features/egemaps/") and o.endswith(".parquet")
                  and ".qc." not in o)
    (wd / victim).unlink()
    jobs = run("-n", "--quiet", "rules").stdout
    for rule in ("extract_audio", "cache_check", "classify", "report"):
        assert rule in jobs, jobs
    # Defect 3: a new ingest problem (here a dot-file) reruns the inputs check and so the report
    (wd / victim).touch()
    assert run("--touch", "--forceall").returncode == 0  # --forceall records the params provenance
    (wd / "data" / "tiny" / "videos" / ".v000.mp4").write_bytes(b"")
    jobs = run("-n", "--quiet", "rules").stdout
    assert "inputs_qc" in jobs and "report" in jobs and "extract_audio" not in jobs, jobs

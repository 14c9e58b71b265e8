"""Faces from an OpenFace-style folder (expmae/faces/folder.py, `faces.source: folder`): the crops of a
detection run written as <name>/<name>.npy stacks and per-frame .bmp files, imported back, give the
same shard outputs without running a detector; unusable folders are QC rows, never a failed job."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from expmae.faces import extract_shard, load_faces
from expmae.faces.folder import read_video_faces
from expmae.faces.params import resolve_params
from fixtures import faces as syn

pytestmark = pytest.mark.usefixtures("one_native_thread")
PARAMS = {"fps": 8, "max_frames": 6}
# a backend whose model cannot be found: any attempt to build a detector fails the shard
NO_DETECTOR = {"backend": "insightface", "insightface_root": "/nonexistent/models"}


def _meta(out: Path) -> dict:
    return json.loads(pq.read_schema(out / "qc.parquet").metadata[b"expmae"])


@pytest.fixture(scope="module")
def detected(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("videos")
    videos = {"npy_a": syn.write_video(d / "a.mp4", syn.face_frames(16, 320, 240)),
              "bmp_b": syn.write_video(d / "b.mp4", syn.face_frames(12, 480, 270, seed=5)),
              "plain_c": syn.write_video(d / "c.mp4", syn.face_frames(10, 320, 240, seed=7))}
    manifest = pd.DataFrame({"name": list(videos), "path": [str(p) for p in videos.values()]})
    out = d / "detect" / "s00000"
    extract_shard(manifest, out, PARAMS, threads=0, verbose=False)
    crops, frames, qc = load_faces(out, mmap=False)
    assert qc["ok"].all(), qc
    # the OpenFace layout made from the run's own crops: a stack for one video, .bmp frames for another
    root = d / "openface_face"
    for name in ("npy_a", "bmp_b"):
        rows = frames.loc[frames["name"] == name, "crop_row"].to_numpy()
        (root / name).mkdir(parents=True)
        if name == "npy_a":
            np.save(root / name / f"{name}.npy", crops[rows])
        else:
            for j, r in enumerate(rows):  # OpenFace names frames <name>_aligned/frame_det_00_000001.bmp
                bmp = root / name / f"frame_det_00_{j + 1:06d}.bmp"
                cv2.imwrite(str(bmp), cv2.cvtColor(crops[r], cv2.COLOR_RGB2BGR))
    return {"manifest": manifest, "out": out, "crops": crops, "frames": frames, "qc": qc, "root": root, "dir": d}


def test_folder_import_gives_the_detection_runs_outputs(detected) -> None:
    out = detected["dir"] / "folder" / "s00000"
    params = {**PARAMS, "source": "folder", "folder": str(detected["root"]), "missing": "detect"}
    extract_shard(detected["manifest"], out, params, threads=0, verbose=False)
    crops, frames, qc = load_faces(out, mmap=False)
    np.testing.assert_array_equal(crops, detected["crops"])  # .npy and .bmp are lossless: identical crops
    cols = ["name", "crop_row"]
    pd.testing.assert_frame_equal(frames[cols], detected["frames"][cols])
    pd.testing.assert_frame_equal(qc[["name", "ok", "n_crops"]], detected["qc"][["name", "ok", "n_crops"]])
    assert qc.set_index("name")["decoder"].to_dict() == {"npy_a": "folder", "bmp_b": "folder", "plain_c": "pyav"}
    meta = _meta(out)
    assert (meta["detected"], meta["from_folder"]) == (1, 2)  # only the video without a folder was detected


def test_a_shard_with_every_face_folder_builds_no_detector(detected, tmp_path) -> None:
    manifest = detected["manifest"].iloc[:2]
    params = {**PARAMS, **NO_DETECTOR, "source": "folder", "folder": str(detected["root"]), "missing": "qc"}
    extract_shard(manifest, tmp_path / "s", params, threads=0, verbose=False)
    crops, _, qc = load_faces(tmp_path / "s", mmap=False)
    assert qc["ok"].all() and len(crops) == qc["n_crops"].sum()
    assert _meta(tmp_path / "s")["detected"] == 0
    # the same backend on a video that needs detection fails: the check is real
    with pytest.raises(Exception, match="insightface_root"):
        extract_shard(detected["manifest"], tmp_path / "t", {**params, "missing": "detect"}, threads=0, verbose=False)


def test_missing_face_folder_becomes_a_qc_row_when_asked(detected, tmp_path) -> None:
    params = {**PARAMS, **NO_DETECTOR, "source": "folder", "folder": str(detected["root"]), "missing": "qc"}
    qc = extract_shard(detected["manifest"], tmp_path / "s", params, threads=0, verbose=False).set_index("name")
    assert not qc.loc["plain_c", "ok"] and qc.loc["plain_c", "reason"].startswith("no face folder")
    assert qc.loc[["npy_a", "bmp_b"], "ok"].all()


def _read(root: Path, name: str, **kw) -> dict:
    return read_video_faces(root, name, resolve_params({**PARAMS, **kw}))


def test_grayscale_and_other_sizes_are_resized_to_crop_size(tmp_path) -> None:
    (tmp_path / "g").mkdir()
    rng = np.random.default_rng(0)
    np.save(tmp_path / "g" / "g.npy", rng.integers(0, 256, (4, 112, 112), dtype=np.uint8))
    r = _read(tmp_path, "g", crop_size=64)
    assert r["crops"].shape == (4, 64, 64, 3) and r["qc"]["ok"]
    assert (r["crops"][..., 0] == r["crops"][..., 2]).all()  # grey copied to the three channels
    (tmp_path / "h").mkdir()
    np.save(tmp_path / "h" / "h.npy", rng.integers(0, 256, (40, 112, 112, 1), dtype=np.uint8))
    r = _read(tmp_path, "h", crop_size=224)
    assert r["crops"].shape == (6, 224, 224, 3)  # 40 frames -> max_frames, evenly spread
    assert [f["frame_index"] for f in r["frames"]] == [0, 8, 16, 23, 31, 39]


def test_no_face_folder_is_none(tmp_path) -> None:
    assert _read(tmp_path, "absent") is None


@pytest.mark.parametrize("case", ["fifo", "symlink_out", "float", "shape", "not_npy", "cut", "name_sep", "file",
                                  "bad_image", "pickle"])
def test_unusable_face_folders_are_qc_rows(tmp_path, case: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    name, d = "v", root / "v"
    if case == "symlink_out":
        np.save(outside / "v.npy", np.zeros((2, 112, 112, 3), np.uint8))
        os.symlink(outside, d)
    elif case == "name_sep":
        name = "../outside"
    elif case == "file":
        d.write_bytes(b"x")
    else:
        d.mkdir()
        stack = d / "v.npy"
        if case == "fifo":
            os.mkfifo(stack)  # opening it for reading would block the job forever
        elif case == "float":
            np.save(stack, np.zeros((2, 112, 112, 3), np.float32))
        elif case == "shape":
            np.save(stack, np.zeros((2, 112, 112, 4), np.uint8))
        elif case == "not_npy":
            stack.write_bytes(b"hello world" * 20)
        elif case == "cut":
            np.save(stack, np.zeros((5, 112, 112, 3), np.uint8))
            stack.write_bytes(stack.read_bytes()[:-1000])
        elif case == "bad_image":
            (d / "frame_000001.bmp").write_bytes(b"not a bitmap")
        elif case == "pickle":
            np.save(stack, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = _read(root, name)
    assert r is not None and not r["qc"]["ok"], r
    assert r["qc"]["reason"].startswith("face folder: "), r["qc"]["reason"]
    assert "\n" not in r["qc"]["reason"] and len(r["crops"]) == 0


def test_a_wrong_folder_root_is_one_line_naming_the_key(tmp_path) -> None:
    manifest = pd.DataFrame({"name": ["v"], "path": [str(tmp_path / "v.mp4")]})
    for folder in ("", str(tmp_path / "nope")):
        with pytest.raises(SystemExit, match="faces.folder") as e:
            extract_shard(manifest, tmp_path / "s", {"source": "folder", "folder": folder}, threads=0, verbose=False)
        assert "\n" not in str(e.value)


@pytest.mark.e2e
@pytest.mark.slow
def test_workflow_faces_stage_reads_face_folders_without_detecting(tmp_path) -> None:
    """The faces rule of a real Snakemake run on the tiny demo data, detecting, then again with
    faces.source: folder over face folders made from those crops: the same number of faces jobs, no video
    detected, the same crops; the benchmark files give both runs' job times."""
    from expmae import demo
    from fixtures.workflow import copy_workflow, jobs_run, smk

    wd = copy_workflow(tmp_path / "wf")
    demo.make_dataset(wd / "data" / "tiny", preset="tiny", seed=0)
    target = "results/qc/faces_summary.tsv"
    # "--cores 2" ends smk's --configfile list, so the target is read as a target
    det_jobs = [j for j in jobs_run(smk(wd, "--cores", "2", target)) if j[0] == "faces"]
    shards = sorted(p for p in (wd / "results" / "faces").iterdir() if p.is_dir())
    root = wd / "openface_face"
    for shard in shards:
        crops, frames, _ = load_faces(shard, mmap=False)
        for name, g in frames.groupby("name"):
            (root / name).mkdir(parents=True)
            np.save(root / name / f"{name}.npy", crops[g["crop_row"].to_numpy()])
    overlay = f"results: results_folder\nfaces: {{source: folder, folder: {root}, missing: qc}}\n"
    (wd / "folder.yaml").write_text(overlay)
    fold_jobs = [j for j in jobs_run(smk(wd, "--configfile", "config_tiny.yaml", "folder.yaml", "--cores", "2",
                                         target.replace("results/", "results_folder/"))) if j[0] == "faces"]
    assert len(fold_jobs) == len(det_jobs) == len(shards)
    seconds = {}
    for res in ("results", "results_folder"):
        seconds[res] = sum(float(pd.read_csv(b, sep="\t")["s"].iloc[0])
                           for b in (wd / res / "benchmarks" / "faces").glob("*.tsv"))
        detected = sum(_meta(s)["detected"] for s in (wd / res / "faces").iterdir() if s.is_dir())
        seconds[res + "_detected"] = detected
    print(f"faces jobs {len(det_jobs)}: detection {seconds['results']:.2f} s ({seconds['results_detected']} videos "
          f"detected), face folders {seconds['results_folder']:.2f} s ({seconds['results_folder_detected']} detected)")
    assert seconds["results_folder_detected"] == 0 and seconds["results_detected"] > 0
    for shard in shards:
        a, fa, qa = load_faces(shard, mmap=False)
        b, fb, qb = load_faces(wd / "results_folder" / "faces" / shard.name, mmap=False)
        np.testing.assert_array_equal(a, b)
        assert qa[["name", "ok", "n_crops"]].equals(qb[["name", "ok", "n_crops"]])

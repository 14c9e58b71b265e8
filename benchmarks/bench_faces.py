"""Face stage speed, measured side by side in one run.

For each video set (the demo videos, and the real clips of ../shared/data when present):
  decode    the stage's decoder alone: open + probe (one av.open, as the stage), seek to the GOPs
            holding sampled frames, non-reference frames skipped, RGB conversion of sampled
            frames only (1 thread)
  detect    the detector alone on those frames: its input (resize to det_size, BGR) + YuNet (1 thread)
            (before 2026-12-01 the probe and the detector's input resize were outside both timings,
            so the stage's own share looked larger by their ~9%: the README says which runs were which)
  stage     extract_shard end to end (probe + decode + detect + O-Net landmarks + align +
            track + write, worker start-up included): 1 worker pinned to one core ("1w/1c":
            its decode thread shares that core), 1 worker free to use both cores ("1w"; the
            decode thread overlaps detection on the other core), 2 workers ("2w")
  seq       1 worker on one core with the decode thread off (extract_shard(overlap=False))
and the ratios the issue asks for:
  1w/1c / (decode + detect)   what the stage costs beyond decoding and detecting (goal <= 1.15)
  scaling = 1w/1c / (2 x 2w)  two workers against twice one worker's single-core rate (goal >= 0.9)
CPU-second columns (parent + workers) are printed too: steadier than wall clock on a shared box.
Every column runs once per round, the columns in paired rounds (harness.paired), and the ratios are taken
within each round. Load average is printed before each set: others' jobs inflate wall clock and depress
scaling. The demo videos are data/demo/videos (`make run` writes them), else a few made by expmae.demo.

    .venv/bin/python -m benchmarks.bench_faces --quick      # < 3 min: real clips + 12 demo clips, once
    .venv/bin/python -m benchmarks.bench_faces              # 3 rounds, 24 demo clips, decord column
"""
from __future__ import annotations

import argparse
import json
import os

# Same native threading as the stage's workers (pool.py): one OpenMP thread for YuNet.
os.environ["OMP_NUM_THREADS"] = "1"
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from benchmarks.harness import ROOT, Report, paired, progress, spread, verdict
from expmae.faces import resolve_params
from expmae.faces.detectors import create_detector
from expmae.faces.video import ProbeError, decode_decord, decode_pyav, probe
from expmae.faces.worker import detector_input

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}


def demo_videos(tmp: Path, n: int = 24) -> list[Path]:
    """The first n demo clips (data/demo/videos, its bad inputs included), else n clean ones made here."""
    demo = ROOT / "data" / "demo" / "videos"
    found = sorted(p for p in demo.rglob("*") if p.suffix in VIDEO_SUFFIXES) if demo.is_dir() else []
    if found:
        return found[:n]
    from expmae.demo import make_dataset

    make_dataset(tmp / "demo", preset="tiny", n_labeled=n, n_unlabeled=0, n_test=0, bad_inputs=False)
    return sorted(p for p in (tmp / "demo" / "videos").iterdir() if p.suffix in VIDEO_SUFFIXES)[:n]


def real_videos() -> list[Path]:
    root = ROOT.parent / "shared" / "data" / "videos"
    return sorted(root.rglob("*.mp4")) if root.is_dir() else []


def decode_frames(paths: list[Path], p: dict, decoder: str) -> list[np.ndarray]:
    """Decode exactly the frames the stage samples, one process: the stage's one open per video (probe),
    then the decoder. Videos that fail the probe cost their probe, as in the stage (which QCs them)."""
    out: list[np.ndarray] = []
    for path in paths:
        try:
            pr = probe(str(path), keep_open=decoder == "pyav")
        except ProbeError:  # the demo set has corrupt/empty files on purpose
            continue
        if decoder == "pyav":
            it = decode_pyav(str(path), pr, p["fps"], p["max_frames"])
        else:
            it = decode_decord(str(path), p["fps"], p["max_frames"], pr.width * pr.height * 3, pr.rotation)
        out += [f for _, _, f in it]
        pr.close()
    return out


def detect(det: object, frames: list[np.ndarray], p: dict) -> None:
    """The detector on the sampled frames, its input (det_size, BGR) made from each frame."""
    for frame in frames:
        det.detect(detector_input(frame, p["det_size"])[0])  # type: ignore[attr-defined]


def stage(paths: list[Path], p: dict, threads: int, tmp: Path, cores: set[int] | None = None,
          overlap: bool = True) -> int:
    """The stage as a Snakemake job runs it (python -m expmae.faces on a shard manifest: interpreter,
    imports, workers, writes) -> frames decoded. cores: pin the job (its workers inherit the affinity)."""
    manifest = pd.DataFrame({"name": [x.stem for x in paths], "path": [str(x) for x in paths]})
    man, out = tmp / "manifest.parquet", tmp / f"stage_{threads}"
    manifest.to_parquet(man)
    cmd = [sys.executable, "-m", "expmae.faces", "--manifest", str(man), "--out", str(out), "--params",
           json.dumps(p), "--threads", str(threads)] + ([] if overlap else ["--no-overlap"])
    before = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    finally:
        os.sched_setaffinity(0, before)
    if proc.returncode:
        raise SystemExit(f"python -m expmae.faces failed:\n{proc.stderr[-2000:]}")
    qc = pd.read_parquet(out / "qc.parquet")
    shutil.rmtree(out)
    return int(qc["frames_decoded"].sum())


def tiny_clips(tmp: Path, n: int) -> list[Path]:
    """n clips of 3 grey frames: a shard job's fixed cost is the stage on one of them per worker."""
    from expmae.demo.encode import write_mp4
    from expmae.demo.spec import FPS, SIZE, SR

    out = []
    for k in range(n):
        out.append(tmp / f"tiny_{k}.mp4")
        write_mp4(out[-1], [np.full((SIZE, SIZE, 3), 100, np.uint8)] * 3, np.zeros(3 * SR // FPS, np.float32))
    return out


def measure(paths: list[Path], p: dict, tmp: Path, rounds: int, quick: bool) -> tuple[int, dict[str, list[float]]]:
    """`rounds` paired rounds of every column -> (frames, {column: each round's wall s, 'cpu <column>': CPU s})."""
    core = {sorted(os.sched_getaffinity(0))[-1]}
    frames = decode_frames(paths, p, "pyav")  # the detector's input, and a warm-up of the files' pages
    det = create_detector(p)
    tiny = tiny_clips(tmp, 2)

    def checked(n: int) -> None:
        assert n == len(frames), (n, len(frames))  # the stage decoded the very frames timed here

    cols: dict[str, Callable[[], object]] = {
        "dec": lambda: decode_frames(paths, p, "pyav"), "det": lambda: detect(det, frames, p),
        "s11": lambda: checked(stage(paths, p, 1, tmp, cores=core)), "s1": lambda: checked(stage(paths, p, 1, tmp)),
        "s2": lambda: checked(stage(paths, p, 2, tmp)), "j1": lambda: stage(tiny[:1], p, 1, tmp, cores=core),
        "j2": lambda: stage(tiny, p, 2, tmp)}
    if not quick:
        cols["decord"] = lambda: decode_frames(paths, p, "decord")
        cols["seq"] = lambda: checked(stage(paths, p, 1, tmp, cores=core, overlap=False))
    return len(frames), paired(cols, rounds, cpu=True)


def ratios(t: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each round's ratios from that round's own columns: the stage and its decode + detect reference ran
    in the same round, so load drifting between rounds moves both and cancels in the ratio. 'per video'
    subtracts the job's fixed cost (job0: the same command on one tiny clip per worker)."""
    r = [{k: v[i] for k, v in t.items()} for i in range(len(t["dec"]))]
    return {"per_video": [(x["s11"] - x["j1"]) / (x["dec"] + x["det"]) for x in r],
            "scaling": [(x["s11"] - x["j1"]) / (2 * (x["s2"] - x["j2"])) for x in r],
            "cpu_per_video": [(x["cpu s11"] - x["cpu j1"]) / (x["cpu dec"] + x["cpu det"]) for x in r]}


COLUMNS = {"decord": "decord", "dec": "decode", "det": "detect", "seq": "seq 1w/1c", "s11": "1w/1c", "s1": "1w",
           "s2": "2w", "j1": "job0 1w", "j2": "job0 2w"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["real", "demo"])
    ap.add_argument("--det-size", type=int, default=320)
    ap.add_argument("--backend", default="yunet")
    ap.add_argument("--rounds", type=int, default=None, help="paired rounds of every column (default 3, --quick 1)")
    ap.add_argument("--demo-videos", type=int, default=None, help="demo clips used (default 24, --quick 12)")
    ap.add_argument("--quick", action="store_true", help="one round, 12 demo clips, no decord / seq columns (< 3 min)")
    a = ap.parse_args(argv)
    rounds = a.rounds or (1 if a.quick else 3)
    n_demo = a.demo_videos or (12 if a.quick else 24)
    p = resolve_params({"det_size": a.det_size, "backend": a.backend})
    cv2.setNumThreads(1)
    with Report("face stage", f"backend={p['backend']} det_size={p['det_size']} fps={p['fps']} max_frames="
                f"{p['max_frames']} crop={p['crop_size']}, {rounds} paired round(s): median [min, max]") as rep, \
            tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        sets = []
        for name in a.sets:
            paths = demo_videos(tmp, n_demo) if name == "demo" else real_videos()
            if not paths:
                rep.note(f"{name}: no videos, skipped")
                continue
            load1 = os.getloadavg()[0]
            n, t = measure(paths, p, tmp, rounds, a.quick)
            sets.append((name, len(paths), n, load1, t))
            progress(f"{name}: {len(paths)} videos done")
        for kind, pre in (("wall clock, s", ""), ("CPU time (job + workers), s", "cpu ")):
            rep.table([{"set": name, "videos": nv, "frames": n, "load1": load1,
                        **{label: spread(t[pre + k]) for k, label in COLUMNS.items() if pre + k in t}}
                       for name, nv, n, load1, t in sets], caption=kind)
        rows = []
        for name, nv, n, load1, t in sets:
            q = ratios(t)
            rows.append({"set": name, "1w/1c / (dec+det), per video": spread(q["per_video"]),
                         "goal <= 1.15": verdict(q["per_video"], lambda v: v <= 1.15),
                         "scaling, per video": spread(q["scaling"]),
                         "goal >= 0.90": verdict(q["scaling"], lambda v: v >= 0.9),
                         "CPU 1w/1c / (dec+det), per video": spread(q["cpu_per_video"])})
        rep.table(rows, caption="per-round ratios (job0 subtracted); a goal is met or missed when every round is on "
                                "one side of it")


if __name__ == "__main__":
    main()

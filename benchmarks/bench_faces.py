"""Face stage speed, measured side by side in one run.

For each video set (demo-like clips, and the real clips of ../shared/data when present):
  decode    decord get_batch of exactly the frames the stage samples (1 process)
  detect    the detector alone on those frames, already resized to det_size (1 process)
  stage     extract_shard end to end: probe + decode + detect + align + track + write,
            with 1 and with 2 worker processes (wall clock, worker start-up included)
and the ratio stage time / detector-only time (issue goal: <= 1.3).

    .venv/bin/python benchmarks/bench_faces.py [--sets demo real] [--det-size 320] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os

# Same native threading as the stage's workers (pool.py): one OpenMP thread for YuNet.
os.environ["OMP_NUM_THREADS"] = "1"
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from expmae.faces import extract_shard, resolve_params
from expmae.faces import synthetic as syn
from expmae.faces.detectors import create_detector
from expmae.faces.video import decode_decord, probe

ROOT = Path(__file__).resolve().parents[1]


def demo_videos(tmp: Path, n: int = 8) -> list[Path]:
    demo = ROOT / "data" / "demo" / "videos"
    found = sorted(p for p in demo.rglob("*") if p.suffix in {".mp4", ".avi", ".mkv", ".mov", ".webm"}) \
        if demo.is_dir() else []
    if found:
        return found[:24]
    out = []
    for i in range(n):  # 640x360, 3-5 s at 25 fps, with audio: like a short talking-head clip
        frames = syn.face_frames(25 * (3 + i % 3), 640, 360, second_face=[(k // 20) % 2 == 1 for k in range(200)],
                                 seed=i)
        out.append(syn.write_video(tmp / f"demo_{i:02d}.mp4", frames, audio=True))
    return out


def real_videos() -> list[Path]:
    root = ROOT.parent / "shared" / "data" / "videos"
    return sorted(root.rglob("*.mp4")) if root.is_dir() else []


def time_decode_and_detect(paths: list[Path], p: dict) -> tuple[int, float, float]:
    """-> (frames, decode seconds, detector-only seconds)."""
    det = create_detector(p)
    small: list[np.ndarray] = []
    t_decode = 0.0
    for path in paths:
        pr = probe(str(path))
        t0 = time.perf_counter()
        frames = decode_decord(str(path), p["fps"], p["max_frames"], pr.width * pr.height * 3)
        while True:
            try:
                _, _, frame = next(frames)
            except StopIteration:
                break
            t_decode += time.perf_counter() - t0
            h, w = frame.shape[:2]
            s = p["det_size"] / max(h, w)
            small.append(cv2.cvtColor(cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA),
                                      cv2.COLOR_RGB2BGR))
            t0 = time.perf_counter()
    t0 = time.perf_counter()
    for img in small:
        det.detect(img)
    return len(small), t_decode, time.perf_counter() - t0


def time_stage(paths: list[Path], p: dict, threads: int, tmp: Path) -> tuple[int, float, float]:
    """-> (frames decoded, wall seconds, sum of per-video seconds inside the workers)."""
    manifest = pd.DataFrame({"name": [x.stem for x in paths], "path": [str(x) for x in paths]})
    out = tmp / f"stage_{threads}"
    t0 = time.perf_counter()
    qc = extract_shard(manifest, out, p, threads=threads, verbose=False)
    wall = time.perf_counter() - t0
    shutil.rmtree(out)
    return int(qc["frames_decoded"].sum()), wall, float(qc["seconds"].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["demo", "real"])
    ap.add_argument("--det-size", type=int, default=320)
    ap.add_argument("--backend", default="yunet")
    ap.add_argument("--repeat", type=int, default=1, help="best of N (the machine is shared)")
    args = ap.parse_args()
    p = resolve_params({"det_size": args.det_size, "backend": args.backend})
    cv2.setNumThreads(1)
    print(f"faces benchmark: backend={p['backend']} det_size={p['det_size']} fps={p['fps']} "
          f"max_frames={p['max_frames']} crop={p['crop_size']}  cpus={os.cpu_count()}  best of {args.repeat}")
    head = (f"{'set':5} {'videos':>6} {'frames':>6} | {'decode f/s':>10} {'detect f/s':>10} | "
            f"{'stage1 f/s':>10} {'stage2 f/s':>10} | {'ratio1':>6} {'ratio2':>6} | {'in-worker f/s':>13}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name in args.sets:
            paths = demo_videos(tmp) if name == "demo" else real_videos()
            if not paths:
                print(f"{name}: no videos, skipped")
                continue
            best = {}
            for _ in range(args.repeat):
                n, dec, detect = time_decode_and_detect(paths, p)
                _, w1, in1 = time_stage(paths, p, 1, tmp)
                n2, w2, _ = time_stage(paths, p, 2, tmp)
                for k, v in dict(dec=dec, det=detect, w1=w1, w2=w2, in1=in1).items():
                    best[k] = min(best.get(k, np.inf), v)
            rows.append(f"{name:5} {len(paths):6d} {n:6d} | {n / best['dec']:10.1f} {n / best['det']:10.1f} | "
                        f"{n / best['w1']:10.1f} {n / best['w2']:10.1f} | {best['w1'] / best['det']:6.2f} "
                        f"{best['w2'] / best['det']:6.2f} | {n / best['in1']:13.1f}")
    print(head)
    print("\n".join(rows))
    print("ratio = stage wall time / detector-only time (goal <= 1.3); stage1/stage2 = 1 or 2 worker processes;\n"
          "in-worker = frames / summed per-video time inside 1 worker (no start-up, no writing)")


if __name__ == "__main__":
    main()

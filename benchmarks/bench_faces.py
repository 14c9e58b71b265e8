"""Face stage speed, measured side by side in one run.

For each video set (the demo videos, and the real clips of ../shared/data when present):
  decord    decord get_batch of exactly the frames the stage samples (1 process), for reference
  decode    the stage's decoder: PyAV, seek to the GOPs holding sampled frames, non-reference
            frames skipped, RGB conversion of sampled frames only (1 process)
  detect    the detector alone on those frames, already resized to det_size (1 process)
  stage     extract_shard end to end: probe + decode + detect + O-Net landmarks + align + track
            + write, with 1 and with 2 worker processes (wall clock, worker start-up included)
and the ratios stage time / detector-only time (issue goal: <= 1.3) and 1-worker stage time /
(decode + detect) time (what the stage adds beyond decoding and detecting).

    .venv/bin/python benchmarks/bench_faces.py [--sets demo real] [--det-size 320] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os

# Same native threading as the stage's workers (pool.py): one OpenMP thread for YuNet.
os.environ["OMP_NUM_THREADS"] = "1"
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from expmae.faces import extract_shard, resolve_params
from expmae.faces.detectors import create_detector
from expmae.faces.video import ProbeError, decode_decord, decode_pyav, probe
from expmae.faces.worker import downscale

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fixtures import faces as syn  # noqa: E402 — synthetic test videos (a test fixture, not the package)


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


def cpu_s() -> float:
    """CPU seconds (user + sys) of this process and of its reaped children (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_decode(paths: list[Path], p: dict, decoder: str) -> tuple[list[np.ndarray], float, float]:
    """Decode exactly the frames the stage samples, one process -> (frames, wall s, CPU s)."""
    frames_out: list[np.ndarray] = []
    t_decode = c_decode = 0.0
    for path in paths:
        try:
            pr = probe(str(path))
        except ProbeError:  # the demo set has corrupt/empty files on purpose; the stage QCs them
            continue
        t0, c0 = time.perf_counter(), cpu_s()
        if decoder == "pyav":
            it = decode_pyav(str(path), pr, p["fps"], p["max_frames"])
        else:
            it = decode_decord(str(path), p["fps"], p["max_frames"], pr.width * pr.height * 3, pr.rotation)
        frames = list(it)
        t_decode += time.perf_counter() - t0
        c_decode += cpu_s() - c0
        frames_out += [f for _, _, f in frames]
    return frames_out, t_decode, c_decode


def time_detect(frames: list[np.ndarray], p: dict) -> tuple[float, float]:
    """Detector alone on the sampled frames, already resized to det_size (BGR), one process."""
    det = create_detector(p)
    small = []
    for frame in frames:
        h, w = frame.shape[:2]
        s = p["det_size"] / max(h, w)
        small.append(cv2.cvtColor(downscale(frame, (round(w * s), round(h * s))), cv2.COLOR_RGB2BGR))
    t0, c0 = time.perf_counter(), cpu_s()
    for img in small:
        det.detect(img)
    return time.perf_counter() - t0, cpu_s() - c0


def time_stage(paths: list[Path], p: dict, threads: int, tmp: Path) -> tuple[int, float, float, float]:
    """-> (frames decoded, wall s, summed per-video s inside the workers, CPU s of parent + workers)."""
    manifest = pd.DataFrame({"name": [x.stem for x in paths], "path": [str(x) for x in paths]})
    out = tmp / f"stage_{threads}"
    t0, c0 = time.perf_counter(), cpu_s()
    qc = extract_shard(manifest, out, p, threads=threads, verbose=False)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    shutil.rmtree(out)
    return int(qc["frames_decoded"].sum()), wall, float(qc["seconds"].sum()), cpu


def _noop(state: object, item: int) -> int:
    return item


def time_startup(p: dict) -> tuple[float, float]:
    """Start one guarded worker (spawn, imports, YuNet + O-Net load), one no-op task, stop:
    the fixed cost a shard job pays once per worker, whatever its video count."""
    from expmae.faces.pool import run_guarded
    from expmae.faces.worker import init_worker

    t0, c0 = time.perf_counter(), cpu_s()
    list(run_guarded([0], init_worker, (p,), _noop, n_workers=1))
    return time.perf_counter() - t0, cpu_s() - c0


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
    head = (f"{'set':5} {'videos':>6} {'frames':>6} | {'decord':>7} {'decode':>7} {'detect':>7} | "
            f"{'stage1':>7} {'stage2':>7} | {'st1/det':>7} {'st2/det':>7} {'st1/(dec+det)':>13}")
    wall_rows, cpu_rows = [], []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name in args.sets:
            paths = demo_videos(tmp) if name == "demo" else real_videos()
            if not paths:
                print(f"{name}: no videos, skipped")
                continue
            best: dict[str, float] = {}
            for _ in range(args.repeat):
                _, t_decord, c_decord = time_decode(paths, p, "decord")
                frames, t_dec, c_dec = time_decode(paths, p, "pyav")
                t_det, c_det = time_detect(frames, p)
                n1, w1, _, c1 = time_stage(paths, p, 1, tmp)
                _, w2, _, c2 = time_stage(paths, p, 2, tmp)
                for k, v in dict(decord=t_decord, dec=t_dec, det=t_det, w1=w1, w2=w2, cdecord=c_decord, cdec=c_dec,
                                 cdet=c_det, c1=c1, c2=c2).items():
                    best[k] = min(best.get(k, np.inf), v)
            n = len(frames)
            assert n == n1, (n, n1)  # the stage decoded the very frames timed here
            for rows, k in ((wall_rows, ""), (cpu_rows, "c")):
                b = {x: best[k + x] for x in ("decord", "dec", "det")} | {"s1": best[k + "w1" if not k else "c1"],
                                                                         "s2": best[k + "w2" if not k else "c2"]}
                rows.append(f"{name:5} {len(paths):6d} {n:6d} | {n / b['decord']:7.1f} {n / b['dec']:7.1f} "
                            f"{n / b['det']:7.1f} | {n / b['s1']:7.1f} {n / b['s2']:7.1f} | "
                            f"{b['s1'] / b['det']:7.2f} {b['s2'] / b['det']:7.2f} "
                            f"{b['s1'] / (b['dec'] + b['det']):13.2f}")
    w0, c0 = min(time_startup(p) for _ in range(args.repeat))
    print(f"worker start-up (once per worker per shard job, included in stage1/stage2): {w0:.2f} s wall, "
          f"{c0:.2f} CPU-s")
    print("wall clock (frames per second; load from other jobs inflates these):")
    print(head)
    print("\n".join(wall_rows))
    print("CPU time (frames per CPU-second, parent + workers; steadier on a shared machine):")
    print(head)
    print("\n".join(cpu_rows))
    print("decord = decord get_batch of the sampled frames; decode = the stage's PyAV path (seek to GOPs\n"
          "holding sampled frames, skip non-reference frames, convert only sampled ones); detect = detector\n"
          "alone on det_size frames; stage1/stage2 = extract_shard (probe+decode+detect+O-Net+align+track+\n"
          "write, worker start-up included) with 1 / 2 worker processes. st/det = stage time / detector-only\n"
          "time (issue goal <= 1.3; wall: det is 1 process while stage2 may use both cores); st1/(dec+det) =\n"
          "what the stage adds beyond decoding and detecting.")


if __name__ == "__main__":
    main()

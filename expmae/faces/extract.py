"""Face stage for one shard: manifest rows in, crops/frames/qc out (see store.py).

Files that are missing or empty are settled here without decoding; the rest go to a
guarded process pool (pool.py), one worker per core, each holding two videos at a time: its
decode thread decodes the next while it detects on this one (worker.process_stream).
Results come back in completion order and are written in manifest order, so crop rows of a
video are contiguous and follow the manifest. With `faces.source: folder`, a video that has an
OpenFace-style face folder (folder.py) is read from it in this process and never detected; one
without goes to detection or becomes a QC row (`faces.missing`).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .detectors import check_backend
from .folder import check_root, has_face_folder, read_video_faces
from .params import VIDEO_TIMEOUT_S, resolve_params
from .pool import Failure, run_guarded
from .store import NpyAppender, write_outputs_tables
from .worker import init_worker, process_stream, process_video, qc_row


def extract_shard(manifest: pd.DataFrame, out_dir: str | os.PathLike, params: Mapping[str, Any] | str | None,
                  threads: int = 2, timeout_s: float = VIDEO_TIMEOUT_S, verbose: bool = True,
                  overlap: bool = True) -> pd.DataFrame:
    """Run the face stage on the videos of `manifest` (columns name, path); return the QC table.

    threads: worker processes (0 = in this process, without crash isolation).
    overlap: decode the next video in a thread while detecting this one (False: in turn;
    the same output, for comparison)."""
    p = resolve_params(params)
    folder = check_root(p["folder"]) if p["source"] == "folder" else ""
    if not (folder and p["missing"] == "qc"):  # only then is no video ever detected
        check_backend(p)  # a missing model fails here, before any video is touched
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [str(n) for n in manifest["name"]]
    paths = [str(x) for x in manifest["path"]]

    # queue: manifest rows still to write, in order; ("detect", k) waits for pool task k,
    # ("folder", i) is read from the face folder when its turn comes (crops never pile up in memory)
    qc: list[dict | None] = [None] * len(names)
    tasks: list[dict] = []
    task_row: list[int] = []  # task k -> its manifest row
    queue: list[tuple[str, int]] = []
    for i, (name, path) in enumerate(zip(names, paths)):
        if folder:
            if has_face_folder(folder, name):
                queue.append(("folder", i))
                continue
            if p["missing"] == "qc":
                qc[i] = qc_row(name, f"no face folder in {folder}")
                continue
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            qc[i] = qc_row(name, "file missing")
            continue
        except OSError as e:
            qc[i] = qc_row(name, f"undecodable: {type(e).__name__}: {e.strerror}")
            continue
        if size == 0:
            qc[i] = qc_row(name, "zero-byte file")
            continue
        queue.append(("detect", len(tasks)))
        tasks.append({"name": name, "path": path})
        task_row.append(i)

    S = p["crop_size"]
    frames: list[dict] = []
    t0 = time.perf_counter()
    with NpyAppender(out_dir / "crops.npy", (S, S, 3)) as crops:
        done: dict[int, dict] = {}
        head = 0

        def flush(r: dict, i: int) -> None:
            start = crops.append(r["crops"]) if r["crops"] is not None and len(r["crops"]) else crops.rows
            for j, row in enumerate(r["frames"]):
                frames.append({**row, "crop_row": start + j})
            qc[i] = r["qc"]
            if verbose:
                q = r["qc"]
                print(f"[faces] {head + 1}/{len(queue)} {q['name']}: "
                      f"{q['n_crops']} crops{'' if q['ok'] else ' (' + q['reason'] + ')'}",
                      file=sys.stderr, flush=True)

        def drain() -> None:  # write every queued row whose result is ready, in manifest order
            nonlocal head
            while head < len(queue):
                kind, k = queue[head]
                if kind == "folder":
                    flush(read_video_faces(folder, names[k], p) or
                          {"qc": qc_row(names[k], f"no face folder in {folder}"), "frames": [], "crops": None}, k)
                elif k in done:
                    flush(done.pop(k), task_row[k])
                else:
                    break
                head += 1

        drain()
        results = run_guarded(tasks, init_worker, (p,), process_video, n_workers=threads, timeout_s=timeout_s,
                              stream=process_stream if overlap else None) if tasks else []
        for k, result in results:
            if isinstance(result, Failure):
                result = {"qc": qc_row(tasks[k]["name"], f"undecodable: {result.message}"), "frames": [], "crops": None}
            done[k] = result
            drain()
    meta = {"stage": "faces", "params": p, "videos": len(names), "detected": len(tasks),
            "from_folder": len(queue) - len(tasks), "seconds": round(time.perf_counter() - t0, 3)}
    return write_outputs_tables(out_dir, frames, [q for q in qc if q is not None], meta)

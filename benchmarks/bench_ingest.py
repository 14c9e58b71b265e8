"""What the ingest checks cost, per 1k videos: the parse-time scan (stat only, every run) and the shard
manifests with and without content hashing (sha256, in the ingest_shard jobs of NEW shards only, so the
O(new) promise holds: a rerun or a new batch hashes only the new videos).

Files are random bytes of --mb MB each (MER 2023 clips are ~1-5 MB); they were just written, so they sit
in the page cache and the hash is CPU-bound (a cold disk adds its read time: size / disk MB/s).

    .venv/bin/python benchmarks/bench_ingest.py [--n 200] [--mb 2] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from expmae import ingest  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def per_1k(xs: list[float], n: int) -> str:
    m, s = statistics.mean(xs) * 1000 / n, (statistics.stdev(xs) if len(xs) > 1 else 0.0) * 1000 / n
    return f"{m:8.3f} ± {s:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="videos (results are scaled to 1k)")
    ap.add_argument("--mb", type=float, default=2.0, help="size of each file, MB")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = os.urandom
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "videos").mkdir()
        size = int(a.mb * 2**20)
        for i in range(a.n):
            (d / "videos" / f"v{i:06d}.mp4").write_bytes(rng(size))
        reg_path = d / "res" / "ingest" / "registry.parquet"
        ingest.update_registry(d / "res", [str(d / "videos")], [".mp4"], shard_size=a.n)
        scan = timed(lambda: ingest.plan_registry(d / "res", [str(d / "videos")], [".mp4"], a.n), a.repeat)
        plain = timed(lambda: ingest.write_shard(reg_path, "s00000", d / "m.parquet", hash_content=False), a.repeat)
        hashed = timed(lambda: ingest.write_shard(reg_path, "s00000", d / "m.parquet", hash_content=True), a.repeat)
    gb = a.n * size / 2**30
    print(f"{a.n} files x {a.mb:g} MB ({gb:.2f} GB, page cache warm), {a.repeat} repeats; seconds per 1k videos, "
          "mean ± std")
    print(f"{'parse-time scan (every run, stat only)':44}{per_1k(scan, a.n)}")
    print(f"{'shard manifests, no content hash':44}{per_1k(plain, a.n)}")
    print(f"{'shard manifests, sha256 of every file':44}{per_1k(hashed, a.n)}")
    ratio = statistics.mean(hashed) / statistics.mean(plain)
    print(f"{'hashing / no hashing':44}{ratio:8.1f}x   ({gb * 1024 / statistics.mean(hashed):.0f} MB/s hashed)")


if __name__ == "__main__":
    main()

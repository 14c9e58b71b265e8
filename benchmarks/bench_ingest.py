"""What the ingest checks cost, per 1k videos: the parse-time scan (stat only, every run) and the shard
manifests with and without content hashing (sha256, in the ingest_shard jobs of NEW shards only, so the
O(new) promise holds: a rerun or a new batch hashes only the new videos).

Files are random bytes of --mb MB each (MER 2023 clips are ~1-5 MB); they were just written, so they sit
in the page cache and the hash is CPU-bound (a cold disk adds its read time: size / disk MB/s). The three
are timed in paired rounds (harness.paired).

    .venv/bin/python -m benchmarks.bench_ingest [--n 200] [--mb 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import Report, paired, spread
from expmae import ingest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="videos (results are scaled to 1k)")
    ap.add_argument("--mb", type=float, default=2.0, help="size of each file, MB")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    size = int(a.mb * 2**20)
    gb = a.n * size / 2**30
    with Report("ingest checks, seconds per 1k videos", f"{a.n} files x {a.mb:g} MB ({gb:.2f} GB, page cache warm), "
                f"{a.rounds} paired rounds") as rep, tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "videos").mkdir()
        for i in range(a.n):
            (d / "videos" / f"v{i:06d}.mp4").write_bytes(os.urandom(size))
        reg = d / "res" / "ingest" / "registry.parquet"
        ingest.update_registry(d / "res", [str(d / "videos")], [".mp4"], shard_size=a.n)
        t = paired({"parse-time scan (every run, stat only)":
                    lambda: ingest.plan_registry(d / "res", [str(d / "videos")], [".mp4"], a.n),
                    "shard manifests, no content hash":
                    lambda: ingest.write_shard(reg, "s00000", d / "m.parquet", hash_content=False),
                    "shard manifests, sha256 of every file":
                    lambda: ingest.write_shard(reg, "s00000", d / "m.parquet", hash_content=True)}, a.rounds)
        rows = [{"step": k, "s per 1k videos, median [min, max]": spread([x * 1000 / a.n for x in v], 3)}
                for k, v in t.items()]
        plain, hashed = t["shard manifests, no content hash"], t["shard manifests, sha256 of every file"]
        rep.table(rows)
        rep.note(f"\nhashing / no hashing: {spread([h / p for h, p in zip(hashed, plain)], 1)}x "
                 f"({gb * 1024 / statistics.median(hashed):.0f} MB/s hashed)")


if __name__ == "__main__":
    main()

"""CLI of the face stage (called by the Snakemake rule, one shard per job).

python -m expmae.faces --manifest results/ingest/s00003.parquet --out results/faces/s00003 \
    --params '{"backend": "yunet", ...}' [--threads 2]
"""
from __future__ import annotations

import argparse
import signal
import sys

from .params import VIDEO_TIMEOUT_S

# pandas and .extract are imported inside main(): this module stays cheap to import.


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.faces", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="ingest shard Parquet (columns name, path, ...)")
    ap.add_argument("--out", required=True, help="output folder of this shard")
    ap.add_argument("--params", default="{}", help="JSON of the config `faces:` section (defaults fill gaps)")
    ap.add_argument("--threads", type=int, default=2, help="worker processes (0 = in-process, no crash guard)")
    ap.add_argument("--timeout", type=float, default=VIDEO_TIMEOUT_S, help="seconds allowed per video")
    ap.add_argument("--no-overlap", dest="overlap", action="store_false",
                    help="decode and detect in turn (no decode thread; same output, for benchmarks)")
    args = ap.parse_args(argv)
    # Snakemake/SLURM stop jobs with SIGTERM: exit through `finally` blocks so worker
    # processes are stopped and temp files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import pandas as pd

    from .extract import extract_shard

    manifest = pd.read_parquet(args.manifest, columns=["name", "path"])
    qc = extract_shard(manifest, args.out, args.params, threads=args.threads, timeout_s=args.timeout,
                       overlap=args.overlap)
    bad = qc[~qc["ok"]]
    print(f"[faces] {args.out}: {int(qc['ok'].sum())}/{len(qc)} videos with faces, "
          f"{int(qc['n_crops'].sum())} crops", file=sys.stderr)
    for reason, n in bad["reason"].str.split(":").str[0].value_counts().items():
        print(f"[faces]   {n} x {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

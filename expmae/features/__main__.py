"""CLI: list the registry, run one extractor instance on one shard, or transcribe one shard.

    python -m expmae.features list          (the same: expmae features list)
    python -m expmae.features extract --name egemaps --manifest results/ingest/s00000.parquet \
        --out results/features/egemaps/s00000.parquet --params '{"extractor": "egemaps"}' [--qc ...]
        [--faces results/faces/s00000 --frames-out ... [--encoder results/mae/encoder.safetensors]]
        [--transcripts data/t.csv --asr results/asr/s00000.parquet]
    python -m expmae.features asr --manifest ... --transcripts ... --out results/asr/s00000.parquet --params '{...}'
"""
from __future__ import annotations

import argparse
import json
import logging


def cmd_list() -> None:
    from . import available

    rows = [(n, cls.modality, dims, cls.needs, "gpu" if cls.gpu else "cpu",
             ", ".join(f"{k}={v}" for k, v in d.items()), doc) for n, (cls, d, doc, dims) in sorted(available().items())]
    head = ("name", "modality", "dim", "needs", "device", "defaults", "")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(6)]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[6])
    enc = [f"{n} (results/{cls.encoder_section}/encoder.safetensors)" for n, (cls, *_) in sorted(available().items())
           if cls.encoder_section]
    print(f"\nWeights made by the workflow (its pretraining rules), not a model id: {', '.join(enc)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.features", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="print the registry")
    ex = sub.add_parser("extract", help="one extractor instance on one shard")
    ex.add_argument("--name", required=True, help="instance name (config key features.<name>)")
    ex.add_argument("--manifest", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--params", required=True, help="JSON: the instance's config entry (+ device, column)")
    ex.add_argument("--qc", default=None, help="audio: per-video QC parquet (default <out>.qc.parquet)")
    ex.add_argument("--faces", default=None, help="visual: the shard's faces folder")
    ex.add_argument("--frames-out", default=None, help="visual: per-crop features npy (float16)")
    ex.add_argument("--encoder", default=None, help="expmae_image / expmae_video: results/<section>/encoder.safetensors")
    ex.add_argument("--transcripts", default="", help="text: transcript CSV")
    ex.add_argument("--encoding", default="", help="text: the CSV's encoding when not UTF-8/GB18030 (data.encoding)")
    ex.add_argument("--asr", nargs="*", default=[], help="text: ASR parquet(s), used where the CSV has no row")
    asr = sub.add_parser("asr", help="transcribe one shard (faster-whisper)")
    asr.add_argument("--manifest", required=True)
    asr.add_argument("--transcripts", default="")
    asr.add_argument("--column", default="english")
    asr.add_argument("--out", required=True)
    asr.add_argument("--params", default="{}")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if a.cmd == "list":
        cmd_list()
    elif a.cmd == "extract":
        from .run import extract

        meta = extract(a.name, json.loads(a.params), a.manifest, a.out, faces=a.faces, transcripts=a.transcripts,
                       asr=a.asr, encoding=a.encoding, qc_out=a.qc, frames_out=a.frames_out, encoder=a.encoder)
        print(f"{a.name}: {a.out} (dim {meta['dim']})")
    else:
        from .asr import run

        df = run(a.manifest, a.transcripts, a.column, a.out, json.loads(a.params))
        print(f"asr: {int(df['ok'].sum())}/{len(df)} transcribed -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

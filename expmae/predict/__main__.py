"""python -m expmae.predict --bundle DIR VIDEO_OR_FOLDER... [--out CSV] [--transcripts CSV] [--work DIR]
    [--features-folder SET=FOLDER ...]

Predicts the videos (files, or folders scanned recursively) with the bundle's final model on a machine
that has expmae and the models the bundle names, but not the results folder (expmae/predict/run.py).
A feature set the bundle cannot compute (vectors computed elsewhere, extractor `folder`) is read from the
folder --features-folder names for it (expmae/predict/precomputed.py).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

# What Snakemake sets for a job of `threads` N (the extractor and asr rules have 1): the same count
# gives the workflow's numbers (faster-whisper's decoding of a borderline clip changes with it).
THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.predict", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="a model bundle (a run's results/bundle folder)")
    ap.add_argument("videos", nargs="+", help="video files and/or folders (scanned recursively)")
    ap.add_argument("--out", default="predictions.csv", help="CSV written (default predictions.csv)")
    ap.add_argument("--transcripts", default="", help="transcript CSV (name,<the bundle's transcript column>); "
                    "videos without a row are transcribed by the bundle's ASR settings")
    ap.add_argument("--work", default=None, help="keep the faces and feature tables in this folder (default: temporary)")
    ap.add_argument("--model-sha256", default="", help="refuse the bundle unless its model identity (printed by "
                    "the bundle rule and by every prediction) is this one: pins the model you trust")
    ap.add_argument("--threads", type=int, default=2, help="face-stage worker processes")
    ap.add_argument("--job-threads", type=int, default=1, help="threads of the extractors and ASR, as the "
                    "workflow's jobs (1): more is faster on a big machine, but ASR text can then differ from the workflow's")
    ap.add_argument("--features-folder", action="append", default=[], metavar="SET=FOLDER",
                    help="the vectors of these videos for a feature set the bundle cannot compute (computed "
                    "elsewhere: `expmae predict` names it): a folder of <name>.npy|.npz or a Parquet/CSV table")
    a = ap.parse_args(argv)
    for var in THREAD_VARS:  # before torch / CTranslate2 are imported
        os.environ[var] = str(a.job_threads)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop face workers and remove temp files

    from expmae.predict.precomputed import parse_folders
    from expmae.predict.run import predict_videos

    # a refused bundle or input is SystemExit("its line"): printed by Python, or by the `expmae` dispatcher
    table = predict_videos(a.bundle, a.videos, a.out, a.transcripts, a.work, a.threads, a.model_sha256,
                           parse_folders(a.features_folder))
    print(table["label"].value_counts().to_string() if len(table) else "no videos")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m expmae.demo: write the demo dataset, or add unlabeled videos to it."""
from __future__ import annotations

import argparse
import sys
import time

from . import __doc__ as DOC
from .dataset import add_unlabeled, make_dataset
from .spec import PRESETS, TEST_PRIORS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.demo", description=DOC.split("\n")[0])
    ap.add_argument("--out", default="data/demo")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-labeled", type=int)
    ap.add_argument("--n-unlabeled", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--test-prior", choices=sorted(TEST_PRIORS), default="balanced",
                    help="class prior of the test split (mer2023: MER 2023 test3's, sad 31%%, worried 5%%)")
    ap.add_argument("--add-unlabeled", type=int, metavar="N", help="add N new unlabeled videos to --out")
    ap.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    ap.add_argument("--workers", type=int, default=1, help="processes used to render videos")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if a.add_unlabeled is not None:
            names = add_unlabeled(a.out, a.add_unlabeled, a.seed, workers=a.workers)
            msg = f"added {len(names)} unlabeled videos to {a.out}"
        else:
            df = make_dataset(a.out, a.preset, a.seed, a.n_labeled, a.n_unlabeled, a.n_test,
                              force=a.force, workers=a.workers, test_prior=a.test_prior)
            from .mae_init import write_init  # the generic MAE / VideoMAE checkpoints mae*.init start from

            init = write_init(a.out, a.seed)
            msg = f"wrote {len(df)} videos and {len(init)} init checkpoints ({a.out}/init) to {a.out}"
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"expmae.demo: {e}", file=sys.stderr)
        return 1
    print(f"{msg} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

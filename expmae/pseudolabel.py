"""Select confident pseudo-labels for unlabeled videos from one round's fused predictions.

Policy (config `pseudolabel:`): keep unlabeled videos whose top probability is at least
`threshold`; optionally cap the pool per class (`max_per_class`, most confident first)
so the majority class does not take over. Selected rows carry their confidence and the
round they came from; round r+1 trains on labeled + these.

    python -m expmae.pseudolabel --probs results/classify/round0/fused/probs.parquet \
        --round 0 --out results/pseudo/round0.parquet --params '{"threshold": 0.9}'
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from expmae.io import write_table


def select(probs: pd.DataFrame, classes: list[str], threshold: float = 0.9, max_per_class: int = 0,
           round_: int = 0) -> pd.DataFrame:
    """probs: a classify probs table. -> name, y, discrete, confidence, round, weight."""
    pool = probs[probs["split"] == "unlabeled"]
    P = pool[[f"prob_{c}" for c in classes]].to_numpy()
    conf, y = (P.max(1), P.argmax(1)) if len(P) else (np.zeros(0), np.zeros(0, int))
    out = pd.DataFrame({"name": pool["name"].to_numpy(), "y": y.astype(np.int64),
                        "discrete": [classes[i] for i in y], "confidence": conf.astype(np.float32),
                        "round": np.int64(round_), "weight": np.float32(1.0)})
    out = out[out["confidence"] >= threshold]
    if max_per_class > 0:
        out = out.sort_values(["y", "confidence"], ascending=[True, False]).groupby("y").head(max_per_class)
    return out.sort_values("name", ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Select confident pseudo-labels.")
    ap.add_argument("--probs", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--classes", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}")
    a = ap.parse_args(argv)
    p = {"threshold": 0.9, "max_per_class": 0, **json.loads(a.params)}
    classes = a.classes.split(",")
    sel = select(pd.read_parquet(a.probs), classes, p["threshold"], p["max_per_class"], a.round)
    write_table(a.out, sel, meta={"round": a.round, "params": p, "class_mix": sel["discrete"].value_counts().to_dict()})
    print(f"round {a.round}: {len(sel)} pseudo-labels {sel['discrete'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()

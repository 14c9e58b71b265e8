"""Prediction tables, and the workflow's `predict` rule (data.predict videos -> results/predict/).

Columns of every prediction CSV: name, label (the predicted class), prob_<class>... (the seed ensemble's
probabilities), valence (NaN where the model learned none), missing (the model's modalities without
data for that video, ';'-joined; '' = all present), qc (the video's QC rows as 'stage: reason', '; '-joined:
faces / audio / text / asr problems, and 'predicted from the class prior' when no modality had data).

    python -m expmae.predict.table --bundle results/bundle --features egemaps=results/features/egemaps/p00000.parquet \
        --models results/classify/round1/egemaps ... results/fuse/round1/all/fbp ... \
        --faces-qc results/faces/p00000/qc.parquet --audio-qc ... --text ... --asr ... --out results/predict
Writes <out>/final.csv (the bundle's final model) and <out>/heads.csv (every model of the last round, the
same columns after a first `model` column: each classifier and fusion head, the final one included).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.io import write_text
from expmae.predict.model import Features, missing_modalities, predict_folder, read_metrics
from expmae.train.plan import parse_pairs

PRIOR = "train: predicted from the class prior (no usable modality)"


def qc_reasons(faces_qc: list[str], audio_qc: list[str], text: list[str], asr: list[str],
               folder_qc: list[str] = ()) -> dict[str, str]:
    """name -> its QC rows (expmae.report.qc's vocabulary), 'stage: reason; ...'."""
    from expmae.report.qc import qc_table

    qc = qc_table(faces_qc, audio_qc, text, None, [], asr, folder_qc)
    return {n: "; ".join(f"{r.stage}: {r.reason}" for r in g.itertuples()) for n, g in qc.groupby("name", sort=False)}


def frame(probs: pd.DataFrame, classes: list[str], missing: list[str], qc: dict[str, str]) -> pd.DataFrame:
    """A model's probs table -> the prediction CSV's columns (module docstring)."""
    out = pd.DataFrame({"name": probs["name"].to_numpy(), "label": probs["pred"].to_numpy()})
    for c in classes:
        out[f"prob_{c}"] = probs[f"prob_{c}"].to_numpy()
    out["valence"] = probs["valence"].to_numpy(float)
    out["missing"] = missing
    prior = (probs["no_data"].fillna("") != "").to_numpy()
    out["qc"] = ["; ".join(x for x in (qc.get(n, ""), PRIOR if p else "") if x) for n, p in zip(out["name"], prior)]
    return out


def predict_all(bundle: str | Path, info: dict, feats: Features, qc: dict[str, str]) -> pd.DataFrame:
    """The bundle's final model on `feats` -> the prediction table."""
    bundle = Path(bundle)
    classes = info["classes"]
    members = {n: bundle / info["models"][n]["dir"] for n in info["models"]}
    folder = bundle / info["final"]["dir"]
    probs = predict_folder(folder, feats, classes, members)
    return frame(probs, classes, missing_modalities(folder, feats, members), qc)


def heads_table(dirs: list[str], feats: Features, classes: list[str], qc: dict[str, str]) -> pd.DataFrame:
    """Every model folder of the last round on `feats`: late fusion takes the classifiers among `dirs`."""
    ms = {d: read_metrics(d) for d in dirs}
    singles = {m["name"]: Path(d) for d, m in ms.items() if m.get("head") != "late" and m.get("kind") == "single"}
    parts = []
    for d, m in ms.items():
        fused = predict_folder(d, feats, classes, singles)
        t = frame(fused, classes, missing_modalities(d, feats, singles), qc)
        parts.append(pd.concat([pd.DataFrame({"model": np.full(len(t), m["name"], object)}), t], axis=1))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def main(argv: list[str] | None = None) -> None:
    from expmae.predict.bundle import verify
    from expmae.report.qc import add_qc_arguments

    ap = argparse.ArgumentParser(description="Predict the data.predict videos with the bundle and the last round's models.")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--features", action="append", default=[], help="feature set=shard1.parquet,shard2.parquet")
    ap.add_argument("--models", nargs="*", default=[], help="the last round's model folders (heads.csv)")
    add_qc_arguments(ap)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # tiny heads, as in training
    info = verify(a.bundle)
    feats = Features.read(parse_pairs(a.features))
    qc = qc_reasons(a.faces_qc, a.audio_qc, a.text, a.asr, a.folder_qc)
    final = predict_all(a.bundle, info, feats, qc)
    heads = heads_table(a.models, feats, info["classes"], qc)
    out = Path(a.out)
    write_text(out / "heads.csv", heads.to_csv(index=False))
    write_text(out / "final.csv", final.to_csv(index=False))
    print(f"predict: {len(final)} videos, final model {info['final']['model']} -> {out / 'final.csv'}; "
          f"{heads['model'].nunique() if len(heads) else 0} models of round {info['final']['round']} -> {out / 'heads.csv'}")


if __name__ == "__main__":
    main()

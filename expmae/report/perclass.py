"""The final model per class: precision, recall, F1 and support, and the confusion matrix, out of fold on
the labeled set (OOF) and on the test split where its labels are known (data.test_labels).

Both are computed from the final model's probs.parquet (the seed ensemble's predictions, as submitted), so
the OOF confusion matrix is the one the training job recorded (metrics.json `confusion`). A class without
predictions has precision 0, a class without true rows recall 0 and support 0 (sklearn's zero_division=0):
the weighted F1 over these rows, weighted by support, is the model's weighted F1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = {"oof": "out of fold (labeled set)", "test": "test (labeled test videos)"}


def confusion(y: np.ndarray, pred: np.ndarray, n_cls: int) -> np.ndarray:
    """[true, predicted] counts."""
    cm = np.zeros((n_cls, n_cls), int)
    np.add.at(cm, (np.asarray(y, int), np.asarray(pred, int)), 1)
    return cm


def per_class(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per class: precision, recall, f1, support (zero where undefined, as sklearn's zero_division=0)."""
    cm = confusion(y, pred, len(classes))
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(0), cm.sum(1)
    prec = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    return pd.DataFrame({"class": classes, "precision": prec.round(4), "recall": rec.round(4), "f1": f1.round(4),
                         "support": support.astype(int)})


def split_rows(probs: pd.DataFrame, classes: list[str], truth: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """'oof' and 'test' -> (true class ids, predicted class ids); 'test' only with test labels for its videos."""
    pred = probs[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    oof = ((probs["split"] == "labeled") & (probs["fold"] >= 0)).to_numpy()
    out = {"oof": (probs["y"].to_numpy()[oof].astype(int), pred[oof])}
    test = (probs["split"] == "test").to_numpy() & probs["name"].astype(str).isin(list(truth)).to_numpy()
    if test.any():
        out["test"] = (np.array([truth[n] for n in probs["name"].astype(str)[test]], int), pred[test])
    return out


def final_model(final_dir: str | Path, classes: list[str], truth: dict[str, int]) -> dict[str, dict]:
    """split -> {"per_class": DataFrame, "confusion": [[...]], "n": rows} of the final model."""
    probs = pd.read_parquet(Path(final_dir) / "probs.parquet")
    return {k: {"per_class": per_class(y, p, classes), "confusion": confusion(y, p, len(classes)).tolist(), "n": len(y)}
            for k, (y, p) in split_rows(probs, classes, truth).items()}


def per_class_table(res: dict[str, dict]) -> pd.DataFrame:
    """The long table of both splits: split, class, precision, recall, f1, support."""
    frames = [r["per_class"].assign(split=k) for k, r in res.items()]
    cols = ["split", "class", "precision", "recall", "f1", "support"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def as_metrics(res: dict[str, dict]) -> dict[str, dict]:
    """metrics.json's `final.per_class`: split -> {"n", "confusion", "classes": class -> scores}."""
    return {k: {"n": r["n"], "confusion": r["confusion"],
                "classes": {row["class"]: {c: row[c] for c in ("precision", "recall", "f1")} | {"support": int(row["support"])}
                            for row in r["per_class"].to_dict("records")}} for k, r in res.items()}

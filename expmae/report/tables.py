"""The report's tables: MER submissions, the weighted-F1 tables (wide and long, TSV and
HTML) and the pseudo-label pool table. Column names of the F1 tables are the models' names
('egemaps', 'fbp', 'fbp[audio+text]', from each training output's identity)."""
from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd

SCORES = ("weighted_f1", "accuracy", "valence_mse", "mer_combined", "test_weighted_f1", "test_accuracy",
          "test_valence_mse", "test_mer_combined")


def submission(probs: pd.DataFrame) -> pd.DataFrame:
    """MER 2023 submission format: name,discrete,valence (predicted valence; 0.0 where none was learned)."""
    t = probs[probs["split"] == "test"]
    v = t["valence"].to_numpy(float) if "valence" in t else np.zeros(len(t))
    return pd.DataFrame({"name": t["name"], "discrete": t["pred"], "valence": np.round(np.nan_to_num(v), 4)})


def round4(x: float | None) -> float | None:
    return None if x is None or x != x else round(float(x), 4)


def tables(rounds: dict[str, dict[str, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> wide weighted-F1 table (round x model) and the long table of every score."""
    long = pd.DataFrame([{"round": int(r), "model": n, "kind": m["kind"], **{k: round4(m.get(k)) for k in SCORES},
                          "n_pseudo": m.get("n_pseudo", 0)} for r, ms in rounds.items() for n, m in ms.items()])
    long = long.sort_values(["round", "kind", "model"], ascending=[True, False, True], ignore_index=True)
    order = list(dict.fromkeys(long["model"]))
    wide = long.pivot(index="round", columns="model", values="weighted_f1")[order]
    return wide, long


def html_report(wide: pd.DataFrame, long: pd.DataFrame, final: dict) -> str:
    def cell(v, best):
        s = "" if v is None or v != v else f"{v:.3f}"
        return f"<td><b>{s}</b></td>" if best and s else f"<td>{s}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in wide.columns)
    rows = "".join(f"<tr><th>{r}</th>" + "".join(cell(v, v == row.max()) for v in row) + "</tr>" for r, row in wide.iterrows())
    lhead = "".join(f"<th>{html.escape(c)}</th>" for c in long.columns)
    lrows = "".join("<tr>" + "".join(f"<td>{'' if v is None or v != v else html.escape(str(v))}</td>" for v in row) + "</tr>"
                    for row in long.itertuples(index=False))
    summary = html.escape(json.dumps(final))
    return ("<html><head><meta charset='utf-8'><style>table{border-collapse:collapse;font:13px sans-serif}"
            "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}</style></head><body>"
            "<h3>Out-of-fold weighted F1 on the labeled set, per round (rows) and model (best per round in bold)</h3>"
            f"<table><tr><th>round</th>{head}</tr>{rows}</table>"
            f"<h3>Final model</h3><pre>{summary}</pre><h3>All scores</h3>"
            f"<table><tr>{lhead}</tr>{lrows}</table></body></html>")


def pseudo_table(pseudo: dict[str, dict], classes: list[str]) -> pd.DataFrame:
    """One row per round: pool size, source model, mean confidence, count per class."""
    return pd.DataFrame([{"round": int(r), "n": v["n"], "source": v["source"], "mean_confidence": v["mean_confidence"],
                          **{c: v["class_mix"].get(c, 0) for c in classes}} for r, v in sorted(pseudo.items())],
                        columns=["round", "n", "source", "mean_confidence", *classes])

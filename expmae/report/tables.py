"""The report's tables: MER submissions, the weighted-F1 tables (wide and long, TSV and
HTML) and the pseudo-label pool table. Column names of the F1 tables are the models' names
('egemaps', 'fbp', 'fbp[audio+text]', from each training output's identity)."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

SCORES = ("weighted_f1", "accuracy", "valence_mse", "mer_combined", "test_weighted_f1", "test_accuracy",
          "test_valence_mse", "test_mer_combined")


def submission(probs: pd.DataFrame) -> pd.DataFrame:
    """MER 2023 submission format: name,discrete,valence (predicted valence; 0.0 where none was learned)."""
    t = probs[probs["split"] == "test"]
    v = t["valence"].to_numpy(float) if "valence" in t else np.zeros(len(t))
    return pd.DataFrame({"name": t["name"], "discrete": t["pred"], "valence": np.round(np.nan_to_num(v), 4)})


SUBMISSION_COLUMNS = ["name", "discrete", "valence"]


def select_columns(text: str, columns: list[str]) -> str:
    """A submission CSV text with only `columns`, in that order (MER 2025 submits name,discrete)."""
    if columns == SUBMISSION_COLUMNS:
        return text
    import io

    return pd.read_csv(io.StringIO(text), dtype={"name": str})[columns].to_csv(index=False)


def flags(probs: pd.DataFrame) -> pd.DataFrame:
    """The sidecar of a submission (<stem>.flags.csv): name, no_data ('' = predicted from data, else why
    it was predicted without: no usable data for the model's inputs, no video). The MER columns stay
    as scored; this says which rows are guesses."""
    t = probs[probs["split"] == "test"]
    nd = t["no_data"].fillna("").to_numpy(object) if "no_data" in t else np.full(len(t), "", object)
    return pd.DataFrame({"name": t["name"].to_numpy(), "no_data": nd})


def round4(x: float | None) -> float | None:
    return None if x is None or x != x else round(float(x), 4)


def spread(m: dict) -> dict:
    """Seed spread and bootstrap intervals of the (test) weighted F1, as long-table columns."""
    out = {"n_seeds": len(m.get("per_seed") or [1])}
    for k in ("weighted_f1", "test_weighted_f1"):
        ci = m.get(f"{k}_ci") or [None, None]
        out.update({f"{k}_lo": round4(ci[0]), f"{k}_hi": round4(ci[1]), f"{k}_seed_mean": round4(m.get(f"{k}_seed_mean")),
                    f"{k}_std": round4(m.get(f"{k}_std"))})
    return out


def tables(rounds: dict[str, dict[str, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> wide weighted-F1 table (round x model, the seed ensemble's) and the long table of every score
    with the 95% interval (weighted_f1_lo/_hi, test_...) and the seeds' mean and std (_seed_mean, _std)."""
    long = pd.DataFrame([{"round": int(r), "model": n, "kind": m["kind"], **{k: round4(m.get(k)) for k in SCORES},
                          **spread(m), "n_pseudo": m.get("n_pseudo", 0)} for r, ms in rounds.items() for n, m in ms.items()])
    long = long.sort_values(["round", "kind", "model"], ascending=[True, False, True], ignore_index=True)
    order = list(dict.fromkeys(long["model"]))
    wide = long.pivot(index="round", columns="model", values="weighted_f1")[order]
    return wide, long


def interval_text(row, key: str = "weighted_f1") -> str:
    """'0.612 [0.520, 0.700] seeds 0.601 ± 0.020' from a long-table row ('' when not scored)."""
    v = row.get(key)
    if v is None or v != v:
        return ""
    sd, lo, hi, mean = row.get(f"{key}_std"), row.get(f"{key}_lo"), row.get(f"{key}_hi"), row.get(f"{key}_seed_mean")
    s = f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and lo == lo else "")
    return s + (f" seeds {mean:.3f} ± {sd:.3f}" if sd is not None and sd == sd else "")


def pseudo_table(pseudo: dict[str, dict], classes: list[str]) -> pd.DataFrame:
    """One row per round: pool size, source model, mean confidence, count per class."""
    return pd.DataFrame([{"round": int(r), "n": v["n"], "source": v["source"], "mean_confidence": v["mean_confidence"],
                          **{c: v["class_mix"].get(c, 0) for c in classes}} for r, v in sorted(pseudo.items())],
                        columns=["round", "n", "source", "mean_confidence", *classes])


def prior_table(est: dict | None) -> str:
    """The test pool's class prior as the report shows it: labeled counts, the final model's OOF mean, the EM
    estimate [95% interval] (expmae.train.prior) and, with test labels, the truth and the re-weighted F1."""
    if not est:
        return ""
    classes = list(est["source"])
    truth = est.get("test_true") or {}
    rows = "".join(f"<tr><th>{html.escape(c)}</th><td>{est['labeled_counts'][c]:.2f}</td><td>{est['source'][c]:.2f}</td>"
                   f"<td>{est['test_estimate'][c]:.2f} [{est['test_estimate_ci'][c][0]:.2f}, {est['test_estimate_ci'][c][1]:.2f}]"
                   f"</td><td>{'' if c not in truth else f'{truth[c]:.2f}'}</td></tr>" for c in classes)
    f1 = (f" Test weighted F1 {est['test_weighted_f1']:.3f}, re-weighted to the estimate {est['test_weighted_f1_corrected']:.3f}."
          if "test_weighted_f1" in est else "")
    used = "applied to the submission (prior.correct)" if est.get("applied") else "not applied (prior.correct: false)"
    return ("<h3>Test class prior: EM estimate from the final model's test predictions (Saerens et al. 2002)</h3>"
            "<table><tr><th>class</th><th>labeled (counts)</th><th>final model, OOF mean</th><th>test estimate [95%]</th>"
            f"<th>test truth</th></tr>{rows}</table><p>Re-weighting: {used}.{html.escape(f1)}</p>")

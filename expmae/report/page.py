"""The report page, results/report/f1_table.html (the Snakemake report's first results item): it opens on the
results (the headline, the final model, the per-round weighted-F1 table with intervals, per-class scores,
the pseudo-label pool, the expMAE probe), then lists the figure and table files (expmae.report.paper) and
ends with every model's scores."""
from __future__ import annotations

import html

import pandas as pd

from expmae.report.tables import interval_text, prior_table

STYLE = ("table{border-collapse:collapse;font:13px sans-serif;margin-bottom:1em}td,th{border:1px solid #ccc;"
         "padding:3px 7px;text-align:right}td.l,th.l{text-align:left}pre{font:13px monospace}")


def frame(df: pd.DataFrame, empty: str = "") -> str:
    """A DataFrame as an HTML table (missing values blank; text left-aligned), or `empty` in words."""
    if not len(df):
        return f"<p>{html.escape(empty)}</p>"

    def td(v: object) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "<td></td>"
        if isinstance(v, float):
            return f"<td>{v:.3f}</td>"
        return f"<td class='l'>{html.escape(str(v))}</td>" if isinstance(v, str) else f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"


def wide_table(wide: pd.DataFrame, long: pd.DataFrame) -> str:
    """Round x model: the seed ensemble's OOF weighted F1 [interval] seeds mean ± sd, best per round in bold."""
    cells = {(r.round, r.model): interval_text(r._asdict()) for r in long.itertuples(index=False)}

    def cell(r: int, c: str, best: bool) -> str:
        s = html.escape(cells.get((r, c), ""))
        return f"<td><b>{s}</b></td>" if best and s else f"<td>{s}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in wide.columns)
    rows = "".join(f"<tr><th>{r}</th>" + "".join(cell(r, c, v == row.max()) for c, v in row.items()) + "</tr>"
                   for r, row in wide.iterrows())
    return f"<table><tr><th>round</th>{head}</tr>{rows}</table>"


def index(files: list[tuple[str, str]]) -> str:
    """The files under results/report/ a paper can use."""
    rows = "".join(f"<tr><td class='l'><code>{html.escape(p)}</code></td><td class='l'>{html.escape(w)}</td></tr>"
                   for p, w in files)
    return ("<h3>Files (under results/report/: figures as PDF and SVG at 3.5 in column width, PNG at 300 dpi;"
            f" tables as CSV and booktabs LaTeX)</h3><table><tr><th class='l'>file</th><th class='l'>what</th></tr>"
            f"{rows}</table>")


def html_report(wide: pd.DataFrame, long: pd.DataFrame, final: dict, headline: str = "", paper: dict | None = None,
                tracks: pd.DataFrame | None = None) -> str:
    """The page; `tracks` (config data.tracks, expmae.tracks.table): the tracks table after the final model."""
    paper = paper or {"tables": {}, "files": []}
    t = paper["tables"]
    choice = final.get("choice_within_noise")
    choice_note = "" if choice is None else (" The choice over the runner-up is within the noise." if choice else
                                             " The choice over the runner-up is outside the noise.")
    shift = final.get("prior_shift")
    shift_note = (f"<p>Test scores: the test class prior differs from the labeled set ({html.escape(shift['note'])}),"
                  " so test and out-of-fold scores differ for a reason that is not overfitting.</p>") if shift else ""
    parts = [f"<html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>",
             f"<h3>Headline</h3><pre>{html.escape(headline)}</pre>" if headline else "",
             "<h3>Final model</h3>", frame(t.get("final_model", pd.DataFrame())),
             "" if tracks is None else ("<h3>Test tracks (data.tracks): the final model's score with its [95% bootstrap"
                                        " interval over the track's videos] and the seeds' sd</h3>" + frame(tracks)),
             "<h3>Out-of-fold weighted F1 on the labeled set, per round (rows) and model: the seed ensemble's"
             " [95% bootstrap interval over videos], then the single seeds' mean ± std (best per round in bold)</h3>",
             wide_table(wide, long),
             f"<p>Final model vs best single feature set (paired bootstrap): "
             f"{html.escape(str(final.get('fused_vs_single', '')))}.{html.escape(choice_note)}</p>", shift_note,
             "<h3>Final model per class (OOF: labeled set out of fold; test: labeled test videos)</h3>",
             frame(t.get("per_class", pd.DataFrame()), "no scored videos"),
             "<h3>Pseudo-label pool per round and class (per fold model)</h3>",
             frame(t.get("pseudo_pool", pd.DataFrame()), "no pseudo-label rounds (pseudolabel.rounds = 0)"),
             "<h3>expMAE linear probe: pretrained vs random weights</h3>",
             frame(t.get("probe", pd.DataFrame()), "no expMAE probe (mae.enabled: false)"),
             prior_table(final.get("prior_estimate")), index(paper["files"]),
             "<h3>All scores</h3>", frame(long), "</body></html>"]
    return "".join(parts)

"""Every report table twice: as CSV (the numbers, unformatted, for a spreadsheet or a re-plot) and as a
LaTeX table in booktabs style (\\toprule / \\midrule / \\bottomrule) ready for \\input{} in a paper.

The LaTeX is written here, not by pandas' Styler.to_latex, which needs jinja2: the report has no
dependency beyond pandas. Text is escaped (an underscore in 'weighted_f1' or a model name would stop
LaTeX); numbers are shown with three decimals in the .tex, in full in the .csv. A paper's preamble needs
\\usepackage{booktabs}.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from expmae.io import write_text

# LaTeX's special characters; the backslash first so the escapes added for the others stay intact
_SPECIAL = [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
            ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")]


def escape(text: object) -> str:
    """Plain text -> LaTeX text (every special character escaped)."""
    s = str(text)
    out = []
    for ch in s:
        out.append(next((rep for c, rep in _SPECIAL if c == ch), ch))
    return "".join(out)


def cell(v: object, digits: int = 3) -> str:
    """One table cell: floats with `digits` decimals, missing values as an en dash, text escaped."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "--"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(v).replace("±", r"$\pm$")


def booktabs(df: pd.DataFrame, caption: str, label: str, digits: int = 3) -> str:
    """A complete table environment: numeric columns right-aligned, the others left-aligned. Its label is
    tab:<label> with '-' for '_' (\\label takes no escapes: \\ref{tab:per-class})."""
    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in df.columns)
    head = " & ".join(escape(c) for c in df.columns) + r" \\"
    rows = [" & ".join(cell(v.item() if hasattr(v, "item") else v, digits) for v in row) + r" \\"
            for row in df.itertuples(index=False)]
    body = rows or [rf"\multicolumn{{{max(1, len(df.columns))}}}{{l}}{{(no rows)}} \\"]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}",
                      rf"\label{{tab:{label.replace('_', '-')}}}", rf"\begin{{tabular}}{{{align or 'l'}}}", r"\toprule", head,
                      r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])


def write_table(df: pd.DataFrame, folder: str | Path, stem: str, caption: str,
                shown: pd.DataFrame | None = None) -> list[Path]:
    """<folder>/<stem>.csv (df) and <stem>.tex (`shown`, a formatted view of df, else df itself; atomic
    writes) -> the two paths."""
    folder = Path(folder)
    csv, tex = folder / f"{stem}.csv", folder / f"{stem}.tex"
    write_text(csv, df.to_csv(index=False))
    write_text(tex, booktabs(df if shown is None else shown, caption, stem))
    return [csv, tex]

"""The report's figures, each written three times (<stem>.pdf, .svg, .png) at a paper's column width
(3.5 in): confusion matrices (OOF and test), per-class F1, the pseudo-label pool per round and class, the
expMAE probe against random weights, training curves, weighted F1 with intervals and seed spread.

Vector output stays vector: matrices are drawn as quad meshes (imshow would embed a raster image), PDF
fonts are embedded as TrueType (pdf.fonttype 42, what publishers ask for), SVG keeps text as text. A
figure whose input is empty says why in words instead of drawing an empty axis.
matplotlib is imported only inside figure() (Agg backend) to keep job start-up low."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np

COLUMN_IN = 3.5  # one column of a two-column paper
FORMATS = ("pdf", "svg", "png")
STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "font.size": 7, "axes.titlesize": 7,
         "legend.fontsize": 6, "xtick.labelsize": 6, "ytick.labelsize": 6, "image.composite_image": False}


@contextlib.contextmanager
def figure(stem: str | os.PathLike, height: float, rows: int = 1, cols: int = 1) -> Iterator[tuple[object, np.ndarray]]:
    """The one matplotlib setup/save of the report: yields (figure, axes [rows, cols]) of a column-wide
    figure; on exit it is written to <stem>.pdf/.svg/.png (atomically; PNG at 300 dpi) and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from expmae.io import atomic_path

    with matplotlib.rc_context(STYLE):
        # constrained layout, not bbox_inches="tight": the saved width stays the column width
        fig, axes = plt.subplots(rows, cols, figsize=(COLUMN_IN, height), squeeze=False, layout="constrained")
        try:
            yield fig, axes
            for fmt in FORMATS:
                with atomic_path(f"{stem}.{fmt}", suffix=f".{fmt}") as tmp:
                    fig.savefig(tmp, format=fmt, dpi=300, metadata={"Date": None} if fmt == "pdf" else None)
        finally:
            plt.close(fig)


def say(ax, text: str) -> None:
    """An empty input in words, on a blank panel."""
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)


def confusion(cm: list[list[int]] | None, classes: list[str], title: str, stem: str | os.PathLike,
              empty: str = "") -> None:
    """Counts with the row-normalised share as colour (rows = true class); `empty` is said when cm is None."""
    with figure(stem, 0.9 + 0.32 * len(classes)) as (_, axes):
        ax = axes[0, 0]
        if cm is None:
            return say(ax, empty)
        cm = np.asarray(cm)
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        n = len(classes)
        ax.pcolormesh(np.arange(n + 1) - 0.5, np.arange(n + 1) - 0.5, share, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(n), classes, rotation=45, ha="right")
        ax.set_yticks(range(n), classes)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)


def per_class_f1(scores: dict[str, dict[str, float]], classes: list[str], stem: str | os.PathLike) -> None:
    """Grouped bars: the final model's F1 per class, one bar per split (OOF, test)."""
    with figure(stem, 2.0) as (fig, axes):
        ax = axes[0, 0]
        if not scores:
            return say(ax, "no scored videos: no per-class F1")
        width = 0.8 / len(scores)
        for k, (split, f1) in enumerate(scores.items()):
            ax.bar(np.arange(len(classes)) + (k - (len(scores) - 1) / 2) * width, [f1.get(c, 0.0) for c in classes],
                   width, label=split, hatch="//" if k else None, edgecolor="black", linewidth=0.4)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("F1")
        fig.legend(loc="outside lower center", ncols=len(scores), frameon=False)


def pseudo_pool(pool: dict[str, dict[str, float]], classes: list[str], stem: str | os.PathLike) -> None:
    """Stacked bars: pseudo-labels one fold model trains on after each round (the pool grows), by class."""
    rounds = sorted(pool, key=int)
    total = sum(v for r in rounds for v in pool[r].values())
    with figure(stem, 2.0) as (_, axes):
        ax = axes[0, 0]
        if not rounds:
            return say(ax, "no pseudo-label rounds (pseudolabel.rounds = 0): no pool to show")
        if not total:
            return say(ax, f"0 pseudo-labels selected after round{'s' if len(rounds) > 1 else ''} "
                           f"{', '.join(rounds)}: no unlabeled video passed the selection")
        bottom = np.zeros(len(rounds))
        for c in classes:
            h = np.array([pool[r].get(c, 0) for r in rounds], float)
            ax.bar([f"after round {r}" for r in rounds], h, 0.6, bottom=bottom, label=c, edgecolor="white", linewidth=0.3)
            bottom += h
        ax.set_ylabel("pseudo-labels per fold model")
        ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left")


def probe(probes: dict[str, dict], stem: str | os.PathLike) -> None:
    """expMAE linear probe (OOF weighted F1, mean ± sd over fold shuffles): pretrained vs random weights
    (vs the init checkpoint when there is one), one group per probed encoder (image, video)."""
    tags = [("pretrained", "expMAE"), ("random_init", "random weights"), ("init", "init checkpoint")]
    with figure(stem, 1.9) as (_, axes):
        ax = axes[0, 0]
        ok = {k: p for k, p in probes.items() if (p.get("pretrained") or {}).get("f1") is not None}
        if not ok:
            why = "; ".join(f"{k}: {(p.get('pretrained') or {}).get('error', 'no score')}" for k, p in probes.items())
            return say(ax, f"no expMAE probe score ({why})" if probes else "no expMAE probe (mae.enabled: false)")
        shown = [(tag, label) for tag, label in tags if any((p.get(tag) or {}).get("f1") is not None for p in ok.values())]
        width = 0.8 / len(shown)
        for i, (tag, label) in enumerate(shown):
            xs = [j + (i - (len(shown) - 1) / 2) * width for j, p in enumerate(ok.values())
                  if (p.get(tag) or {}).get("f1") is not None]
            got = [p[tag] for p in ok.values() if (p.get(tag) or {}).get("f1") is not None]
            ax.bar(xs, [g["f1"] for g in got], width, yerr=[g.get("f1_std") or 0 for g in got], label=label,
                   capsize=2, edgecolor="black", linewidth=0.4)
        ax.set_xticks(range(len(ok)), list(ok))
        ax.set_ylabel("weighted F1 (probe, OOF)")
        ax.set_xlabel("encoder (mean ± sd over fold shuffles)")
        ax.legend(loc="lower right")


def curve_label(runs: int, folds: int | None, seeds: int | None) -> str:
    """'mean of 5 folds × 3 seeds': the curves of a seed ensemble are its folds x seeds fold models."""
    if folds and seeds and runs == folds * seeds:
        return f"mean of {folds} folds × {seeds} seed{'s' if seeds > 1 else ''}"
    return f"mean of {runs} fold models"


CURVE_KEYS = (("train", "-", "training loss"), ("inner", ":", "inner split (early stopping)"),
              ("val", "--", "held-out fold"))


def curves(models: dict[str, dict], stem: str | os.PathLike) -> None:
    """Per model (one panel each; models: name -> {"curves", "folds", "seeds"}): mean over its fold models of
    the training loss, the early-stopping inner split's and the held-out fold's; dotted: mean epoch kept.
    One legend for the line styles; each panel's title says what its mean is over."""
    items = [(n, m) for n, m in models.items() if m["curves"] and m["curves"][0].get("train")]
    cols = 2 if len(items) > 1 else 1
    rows = max(1, -(-len(items) // cols))
    with figure(stem, 0.5 + 1.6 * rows, rows, cols) as (fig, axes):
        for ax in axes.flat[len(items):]:
            ax.axis("off")
        if not items:
            return say(axes[0, 0], "no training curves recorded")
        for ax, (name, m) in zip(axes.flat, items):
            curve_panel(ax, name, m["curves"], m.get("folds"), m.get("seeds"))
        handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines() if not h.get_label().startswith("_")}
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=3, frameon=False)


def curve_panel(ax, name: str, folds: list[dict], n_folds: int | None, n_seeds: int | None) -> None:
    runs = 0
    for key, style, label in CURVE_KEYS:
        got = [f[key] for f in folds if f.get(key)]
        if got:
            n = min(map(len, got))
            ax.plot(np.arange(1, n + 1), np.mean([r[:n] for r in got], 0), style, label=label)
            runs = max(runs, len(got))
    kept = [f["best_epoch"] for f in folds if f.get("best_epoch")]
    if kept:
        ax.axvline(float(np.mean(kept)), color="grey", lw=0.8, ls=":", label="_kept")
    ax.set_title(f"{name}\n{curve_label(runs, n_folds, n_seeds)}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")


def intervals(rounds: dict[str, dict[str, dict]], stem: str | os.PathLike) -> None:
    """One panel per round (stacked): each model's OOF weighted F1 (its seed ensemble's, the dot), its 95%
    bootstrap interval over videos (the bar) and every seed's own score (the ticks)."""
    order = sorted(rounds, key=int)
    n = max(len(ms) for ms in rounds.values())
    with figure(stem, (0.5 + 0.16 * n) * len(order), len(order), 1) as (_, axes):
        for ax, r in zip(axes.flat, order):
            names = sorted(rounds[r], key=lambda k: (rounds[r][k]["kind"] != "single", k))
            for i, name in enumerate(names):
                m = rounds[r][name]
                v, ci = m.get("weighted_f1"), m.get("weighted_f1_ci")
                if v is None or v != v:
                    continue
                color = "tab:blue" if m["kind"] == "single" else "tab:orange"
                if ci:
                    ax.plot(ci, [i, i], color=color, lw=2, alpha=0.6)
                ax.plot([v], [i], "o", color=color, ms=3)
                seeds = [x for x in (s.get("weighted_f1") for s in m.get("per_seed") or []) if x is not None]
                ax.plot(seeds, [i] * len(seeds), "|", color="black", ms=5)
            ax.set_yticks(range(len(names)), names)
            ax.set_xlabel("weighted F1 (out of fold): ensemble, 95% CI, seeds")
            ax.set_title(f"round {r}")

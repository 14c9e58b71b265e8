"""PNG figures for the Snakemake report: confusion matrix, pseudo-label pool per round, training curves,
weighted F1 with its interval bars and seed spread.
matplotlib is imported only inside figure() (Agg backend) to keep job start-up low."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def figure(path: str | os.PathLike, figsize: tuple[float, float], rows: int = 1, cols: int = 1,
           tight: bool = False) -> Iterator[tuple[object, np.ndarray]]:
    """The one matplotlib setup/save of the report: yields (figure, axes [rows, cols]); on exit the
    figure is written to `path` (atomically, 110 dpi) and closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from expmae.io import atomic_path

    fig, axes = plt.subplots(rows, cols, figsize=figsize, squeeze=False)
    try:
        yield fig, axes
        if tight:
            fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def confusion_png(cm: list[list[int]], classes: list[str], title: str, path: str | os.PathLike) -> None:
    """Counts with the row-normalised share as colour (rows = true class)."""
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    with figure(path, (1.0 + 0.75 * len(classes), 0.8 + 0.7 * len(classes))) as (_, axes):
        _confusion(axes[0, 0], cm, share, classes, title)


def _confusion(ax, cm: np.ndarray, share: np.ndarray, classes: list[str], title: str) -> None:
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)


def pseudo_png(pool: dict[str, dict[str, int]], classes: list[str], path: str | os.PathLike) -> None:
    """Stacked bars: pseudo-labels selected after each round, by class."""
    rounds = sorted(pool, key=int)
    with figure(path, (1.5 + 0.9 * max(1, len(rounds)), 3.2)) as (_, axes):
        ax = axes[0, 0]
        bottom = np.zeros(len(rounds))
        for c in classes:
            h = np.array([pool[r].get(c, 0) for r in rounds], float)
            ax.bar([f"after round {r}" for r in rounds], h, bottom=bottom, label=c)
            bottom += h
        if not rounds:
            ax.text(0.5, 0.5, "no pseudo-label rounds (pseudolabel.rounds = 0)", ha="center", transform=ax.transAxes)
        ax.set_ylabel("pseudo-labelled videos")
        ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")


def curves_png(curves: dict[str, list[dict]], path: str | os.PathLike) -> None:
    """Per model (one panel each): mean over folds of the training loss, of the early-stopping inner
    split's loss and of the held-out fold's loss; a dotted line at the mean epoch kept."""
    items = [(n, c) for n, c in curves.items() if c and c[0].get("train")]
    cols = min(3, max(1, len(items)))
    rows = max(1, -(-len(items) // cols))
    with figure(path, (3.4 * cols, 2.8 * rows), rows, cols, tight=True) as (_, axes):
        for ax in axes.flat[len(items):]:
            ax.axis("off")
        for ax, (name, folds) in zip(axes.flat, items):
            _curve_panel(ax, name, folds)


def _curve_panel(ax, name: str, folds: list[dict]) -> None:
    for key, style in (("train", "-"), ("inner", ":"), ("val", "--")):
        runs = [f[key] for f in folds if f.get(key)]
        if runs:
            n = min(map(len, runs))
            ax.plot(np.mean([r[:n] for r in runs], 0), style, label=f"{key} (mean of {len(runs)} folds)")
    kept = [f["best_epoch"] for f in folds if f.get("best_epoch")]
    if kept:
        ax.axvline(float(np.mean(kept)) - 1, color="grey", lw=0.8, ls=":")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize=6)


def intervals_png(rounds: dict[str, dict[str, dict]], path: str | os.PathLike) -> None:
    """One panel per round: each model's out-of-fold weighted F1 (its seed ensemble's, the dot), its 95%
    bootstrap interval over videos (the bar) and every seed's own score (the small ticks)."""
    order = sorted(rounds, key=int)
    n = max(len(ms) for ms in rounds.values())
    with figure(path, (4.2 * len(order), 0.9 + 0.32 * n), 1, len(order), tight=True) as (_, axes):
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
                ax.plot([v], [i], "o", color=color)
                seeds = [s.get("weighted_f1") for s in m.get("per_seed") or []]
                ax.plot([x for x in seeds if x is not None], [i] * len([x for x in seeds if x is not None]), "|",
                        color="black", ms=8)
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_xlabel("weighted F1 (out-of-fold)")
            ax.set_title(f"round {r}: seed ensemble, 95% interval, single seeds", fontsize=8)

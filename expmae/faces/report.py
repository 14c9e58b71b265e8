"""QC report over face shards: a summary table and a crop montage per shard.

python -m expmae.faces.report --faces-dirs results/faces/s00000 results/faces/s00001 --out results/qc
(--faces is an alias of --faces-dirs)

Writes into --out:
    faces_summary.tsv   one row per shard plus an "ALL" row: videos, ok, crops, frame
                        counts, and one column per failure kind (text before ':')
    faces_failures.tsv  every video that is not ok: shard, name, reason
    montage_{shard}.png crops sampled evenly over the shard, video name under each
                        (into --montage-dir when given; the Snakemake rule uses
                        results/qc/faces_montages/, a report() folder);
                        the grey line marks the template's eye height, so tilted or
                        misaligned crops stand out
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from expmae.io import atomic_path, write_text

from .align import template
from .store import load_faces

COLS = 8
LABEL_H = 12


def summary_row(shard: str, qc: pd.DataFrame) -> dict:
    kinds = qc.loc[~qc["ok"], "reason"].str.split(":").str[0]
    row = {"shard": shard, "videos": len(qc), "ok": int(qc["ok"].sum()), "failed": int((~qc["ok"]).sum()),
           "crops": int(qc["n_crops"].sum()), "frames_decoded": int(qc["frames_decoded"].sum()),
           "frames_with_face": int(qc["frames_with_face"].sum()),
           "face_frame_rate": round(float(qc["frames_with_face"].sum() / max(qc["frames_decoded"].sum(), 1)), 4),
           "mean_score": round(float(qc.loc[qc["ok"], "mean_score"].mean()), 4) if qc["ok"].any() else float("nan"),
           "no_audio": int((~qc["has_audio"] & qc["frames_decoded"].gt(0)).sum()),
           "decord_fallback": int((qc["decoder"] == "decord").sum()) if "decoder" in qc else 0}
    row.update({f"reason:{k}": int(n) for k, n in kinds.value_counts().items()})
    return row


def montage(crops: np.ndarray, frames: pd.DataFrame, n: int = 48) -> np.ndarray | None:
    """RGB grid of up to n crops spread evenly over the shard's rows."""
    if len(crops) == 0:
        return None
    rows = np.unique(np.linspace(0, len(crops) - 1, min(n, len(crops))).round().astype(int))
    name_of = dict(zip(frames["crop_row"], frames["name"]))
    S = crops.shape[1]
    eye_y = int(round(template(S)[:2, 1].mean()))  # margin-free template; close enough as a guide
    ncol = min(COLS, len(rows))
    nrow = -(-len(rows) // ncol)
    tile_h, tile_w = S + LABEL_H, S + 2
    grid = np.full((nrow * tile_h, ncol * tile_w, 3), 255, np.uint8)
    for k, r in enumerate(rows):
        tile = np.array(crops[r])
        tile[eye_y] = (0.6 * tile[eye_y] + 0.4 * 128).astype(np.uint8)
        y, x = (k // ncol) * tile_h, (k % ncol) * tile_w
        grid[y:y + S, x:x + S] = tile
        label = str(name_of.get(r, ""))[-(S // 6):]
        cv2.putText(grid, label, (x + 1, y + S + LABEL_H - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return grid


def build_report(faces_dirs: list[str], out: str, n_montage: int = 48, montage_dir: str | None = None) -> pd.DataFrame:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    mont_dir = Path(montage_dir) if montage_dir else out_dir
    mont_dir.mkdir(parents=True, exist_ok=True)
    rows, failures, all_qc = [], [], []
    for d in sorted(faces_dirs):
        shard = Path(d).name
        crops, frames, qc = load_faces(d)
        rows.append(summary_row(shard, qc))
        all_qc.append(qc)
        bad = qc.loc[~qc["ok"], ["name", "reason"]]
        failures += [{"shard": shard, **r} for r in bad.to_dict("records")]
        grid = montage(crops, frames, n_montage)
        if grid is not None:
            ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
            with atomic_path(mont_dir / f"montage_{shard}.png", suffix=".png") as tmp:
                tmp.write_bytes(png.tobytes())
    if all_qc:
        rows.append(summary_row("ALL", pd.concat(all_qc, ignore_index=True)))
    summary = pd.DataFrame(rows).fillna({c: 0 for c in pd.DataFrame(rows).columns if c.startswith("reason:")})
    reason_cols = sorted(c for c in summary.columns if c.startswith("reason:"))
    summary[reason_cols] = summary[reason_cols].astype(int)
    summary = summary[[c for c in summary.columns if c not in reason_cols] + reason_cols]
    write_text(out_dir / "faces_summary.tsv", summary.to_csv(sep="\t", index=False))
    write_text(out_dir / "faces_failures.tsv",
               pd.DataFrame(failures, columns=["shard", "name", "reason"]).to_csv(sep="\t", index=False))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.faces.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces-dirs", "--faces", nargs="+", required=True, help="shard folders written by expmae.faces")
    ap.add_argument("--out", required=True, help="report folder (e.g. results/qc)")
    ap.add_argument("--montage-crops", type=int, default=48, help="crops per shard montage")
    ap.add_argument("--montage-dir", default=None, help="folder for montage_{shard}.png (default: --out)")
    args = ap.parse_args(argv)
    summary = build_report(args.faces_dirs, args.out, args.montage_crops, args.montage_dir)
    print(summary.tail(1).to_string(index=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

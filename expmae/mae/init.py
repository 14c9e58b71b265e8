"""Start MAE pretraining from a public checkpoint (config `mae.init` / `mae_video.init`).

    arch = checkpoint_arch("/models/mae_pretrain_vit_large.pth", "mae")   # what the weights say
    cfg = MAEConfig.from_dict({"init": ..., "img_size": 112})              # uses it (sizes.resolve)
    report = apply_init(MAE(cfg), cfg)                                     # loads the weights

The checkpoint's layout is mapped onto ours (keymap.py); its position table is interpolated
(bicubic, as facebookresearch/mae's interpolate_pos_embed) when the model's grid differs, and
stored with the encoder then; a table equal to the model's own fixed sin-cos is not stored. A
missing or differently sized decoder is initialised fresh. A mismatch that cannot be mapped
(kind, patch size, width, depth, channels, a missing encoder weight) raises InitError (a ValueError that
stops a command with one line) naming the config key and both shapes; so does a file that cannot be
read (a pickle that weights_only refuses, a truncated or damaged file). An image checkpoint given to the
video MAE is inflated first (inflate.py: kernel over the tubelet, image table repeated over time). The
report (source path, format, sha256; mapped, interpolated, fresh, ignored) goes to
results/<section>/meta.json and the encoder file's metadata.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import torch

from expmae import weights
from expmae.io import WEIGHTS_DIGEST, file_sha256

from ._vit import interpolate_pos, interpolate_pos_video
from .keymap import Mapped, map_checkpoint, weights_file

_CACHE: dict[tuple[str, int, int], tuple[Mapped, bool, str]] = {}


class InitError(SystemExit, ValueError):
    """A `mae.init` / `mae_video.init` checkpoint that cannot be used: one line naming the config key and the
    file. A SystemExit, so a job or command stops with that line and no traceback; a ValueError, so callers
    that report configuration errors (parse time, tests) catch it as one."""

    def __init__(self, section: str, path: str | Path, why: str) -> None:
        super().__init__(f"config key {section}.init: {path}: {why}")


def _why(err: BaseException) -> str:
    """What a failed read of a public checkpoint means, in one line."""
    text = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        return ("refused by torch.load(weights_only=True): the file pickles Python objects besides tensors, and "
                "loading those would run code; save the state dict alone (torch.save(model.state_dict(), f)) or "
                "convert it to safetensors")
    if isinstance(err, EOFError) or any(s in text for s in ("central directory", "truncated", "incomplete",
                                                            "unexpected EOF", "HeaderTooLarge", "MetadataIncomplete")):
        return f"truncated or damaged ({text}); copy the file again"
    if isinstance(err, (ValueError, KeyError)):
        return text
    return f"not a readable checkpoint ({type(err).__name__}: {text})"


def load_mapped(path: str | Path, section: str) -> tuple[Mapped, str, bool]:
    """The mapped checkpoint at `path`, its sha256 (cached per file version) and whether it is an
    image checkpoint for the video MAE (inflated, see inflate.py); a video one for `mae` is refused.
    Any failure to read or map it is an InitError naming the config key and the file."""
    p = Path(path)
    if not p.exists():
        raise InitError(section, p, "not found (a local file or folder; runs never download)")
    try:
        f = weights_file(p)
        key = (str(p.resolve()), f.stat().st_mtime_ns, f.stat().st_size)
    except OSError as e:
        raise InitError(section, p, str(e).splitlines()[0]) from None
    if key not in _CACHE:
        _check_recorded(f, section, p)
        try:
            m, video = map_checkpoint(p)
            sha = file_sha256(f)
        except InitError:
            raise
        except Exception as e:  # noqa: BLE001 — unpickling, zip, safetensors, layout: each becomes one line
            raise InitError(section, p, _why(e)) from None
        _CACHE.clear()  # one checkpoint at a time (a ViT-L is 1.2 GB, memory-mapped)
        _CACHE[key] = (m, video, sha)
    m, video, sha = _CACHE[key]
    if video and section != "mae_video":
        raise InitError(section, p, f"is a video checkpoint ({m.format}, patch projection {list(m.embed_shape)}); "
                        f"{section} needs an image one")
    return m, sha, section == "mae_video" and not video


def _check_recorded(f: Path, section: str, p: Path) -> None:
    """A weight file that records its sha256 (an expmae encoder: expmae.weights.save) is verified before
    use: a flipped byte or a cut-short copy is refused, naming the key and the file. Public checkpoints
    record none and are read as they are."""
    if f.suffix != ".safetensors":
        return
    try:
        recorded = WEIGHTS_DIGEST in weights.metadata(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return  # an unreadable header: map_checkpoint names the problem
    why = weights.check(f)[0] if recorded else ""
    if why:
        raise InitError(section, p, f"{why}; refused (nothing was computed from it)")


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    return len({k.split(".")[1] for k in state if k.startswith(prefix + ".") and k.endswith("norm1.weight")})


def checkpoint_arch(path: str | Path, section: str) -> dict[str, Any]:
    """Architecture keys the checkpoint fixes (None where it does not say), plus sha256 and, for
    error messages, `_shapes` (which tensor said what)."""
    m, sha, inflate = load_mapped(path, section)
    if m.format == "expmae-encoder":
        from expmae.encoder_format import read_encoder_info

        arch = read_encoder_info(weights_file(Path(path)))["model_config"]
        if inflate:  # an image encoder's decoder never fits the video one; the tubelet is the video's
            from .sizes import ENCODER_KEYS

            arch = {k: v for k, v in arch.items() if k in ENCODER_KEYS}
        return {**arch, "sha256": sha, "_shapes": {}}
    st, cfg = m.state, m.config
    video = section == "mae_video" and not inflate
    D, C = m.embed_shape[0], m.embed_shape[1]
    if C != 3:
        raise InitError(section, path, f"the checkpoint's patch projection {list(m.embed_shape)} takes "
                        f"{C} channels; the model takes 3 (RGB)")
    proj = "tube_embed.weight" if video else "patch_embed.proj.weight"
    arch: dict[str, Any] = {"embed_dim": D, "patch_size": m.embed_shape[-1], "depth": _count(st, "blocks"),
                            "mlp_ratio": st["blocks.0.mlp.fc1.weight"].shape[0] / D if "blocks.0.mlp.fc1.weight" in st
                            else None, "num_heads": cfg.get("num_attention_heads") or cfg.get("num_heads")}
    shape = f"{proj} {list(m.embed_shape)}"
    arch["_shapes"] = {"embed_dim": shape, "patch_size": shape, "tubelet": shape,
                       "depth": f"{arch['depth']} blocks", "num_heads": "its config", "mlp_ratio": "blocks.0.mlp.fc1"}
    if video:
        arch["tubelet"] = m.embed_shape[2]
    if "decoder_embed.weight" in st and not inflate:
        arch["decoder_dim"] = st["decoder_embed.weight"].shape[0]
        arch["decoder_depth"] = _count(st, "decoder_blocks")
        arch["decoder_num_heads"] = cfg.get("decoder_num_attention_heads") or cfg.get("decoder_num_heads") \
            or _decoder_heads(section, arch)
    return {**arch, "sha256": sha}


def _decoder_heads(section: str, arch: dict[str, Any]) -> int:
    """A decoder's heads when the checkpoint does not say: the named size's (same decoder width),
    else the MAE convention (32-wide heads: 512 -> 16) or VideoMAE's (64-wide: 384 -> 6)."""
    from .sizes import match_size, sizes_for

    named = match_size(section, arch)
    if named and sizes_for(section)[named]["decoder_dim"] == arch["decoder_dim"]:
        return int(sizes_for(section)[named]["decoder_num_heads"])
    width = 64 if section == "mae_video" else 32
    return max(1, arch["decoder_dim"] // width) if arch["decoder_dim"] % width == 0 else 1


# ---------------------------------------------------------------------------- loading
def _prefixes(keys: Any) -> list[str]:
    return sorted({k.split(".")[0] for k in keys})


def apply_init(model: Any, cfg: Any) -> dict[str, Any]:
    """Load cfg.init into `model` (an MAE / VideoMAE built from cfg) -> the init report."""
    section = cfg._section
    video = section == "mae_video"
    m, sha, inflate = load_mapped(cfg.init, section)
    if inflate:
        from .inflate import to_video

        m = to_video(m, cfg)
    target = model.state_dict()
    enc = model.encoder_prefixes
    bad = [(k, list(v.shape), list(target[k].shape)) for k, v in m.state.items()
           if k in target and k.startswith(enc) and v.shape != target[k].shape]
    if bad:
        k, a, b = bad[0]
        raise InitError(section, cfg.init, f"{k} has shape {a} in the checkpoint, {b} in the model "
                         f"({len(bad)} tensors differ)")
    missing = [k for k in target if k.startswith(enc) and k not in m.state]
    if missing:
        raise InitError(section, cfg.init, f"the checkpoint ({m.format}) lacks encoder weights {missing[:4]}")
    dec = {k: v for k, v in m.state.items() if k in target and not k.startswith(enc)}
    dec_ok = bool(dec) and all(k in dec and dec[k].shape == target[k].shape for k in target if not k.startswith(enc))
    load = {k: v for k, v in m.state.items() if k.startswith(enc) and k in target}
    notes = list(m.notes)
    if dec_ok:
        load.update(dec)
    elif dec:
        notes.append("the checkpoint's decoder does not match the configured one: decoder initialised fresh")
    model.load_state_dict({**target, **{k: v.to(target[k].dtype) for k, v in load.items()}}, strict=True)
    interpolated = _load_pos(model, m, cfg, video, notes)
    unused = sorted(k for k in m.state if k not in load)
    return {"path": str(cfg.init), "format": m.format, "sha256": sha, "mapped": _prefixes(load), "n_mapped": len(load),
            "fresh": _prefixes(k for k in target if k not in load), "interpolated": interpolated,
            "ignored": (m.ignored + unused)[:20], "n_ignored": len(m.ignored) + len(unused), "notes": notes}


def _load_pos(model: Any, m: Mapped, cfg: Any, video: bool, notes: list[str]) -> list[str]:
    ours = model.pos_embed
    if m.pos_embed is None:
        notes.append("position table not in the checkpoint: the model's fixed sin-cos")
        return []
    table = m.pos_embed.float()
    if not video and table.shape[1] == ours.shape[1] and table.shape[-1] == ours.shape[-1]:
        if torch.allclose(table, ours, atol=1e-4):
            notes.append("position table: the checkpoint's equals the model's fixed sin-cos (not stored)")
            return []
        model.set_pos_embed(table)
        return ["pos_embed: the checkpoint's table (same grid) replaces the fixed sin-cos"]
    if video and table.shape == ours.shape:
        model.set_pos_embed(table)
        return [m.pos_note or "pos_embed: the checkpoint's table (same grid)"]
    if video:
        frames0 = m.config.get("num_frames")
        T0 = int(frames0) // cfg.tubelet if frames0 else cfg.grid[0]
        new = interpolate_pos_video(table, T0, cfg.grid[0], cfg.img_size // cfg.patch_size)
        what = f"{table.shape[1]} -> {new.shape[1]} tokens (trilinear)"
    else:
        new = interpolate_pos(table, cfg.img_size // cfg.patch_size)
        g0, g = math.isqrt(table.shape[1] - 1), math.isqrt(ours.shape[1] - 1)
        what = f"{g0}x{g0} -> {g}x{g} (bicubic)"
    model.set_pos_embed(new)
    return [f"pos_embed: {what}"]

"""Public MAE / VideoMAE checkpoints -> this package's parameter names (model.MAE, video.VideoMAE).

    format                 file                                   keys (one block i)
    facebookresearch-mae   mae_pretrain_vit_*.pth ({"model": sd})  patch_embed.proj, cls_token, pos_embed,
                           mae_visualize_vit_*.pth (+ decoder)     blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,
                                                                   mlp.fc2}, norm; decoder_*, mask_token
    timm                   vit_*_patch16_224.mae (.safetensors     the same encoder keys, no decoder
                           or .pth state dict)
    transformers-vit_mae   ViTMAEForPreTraining / ViTMAEModel      [vit.]embeddings.{cls_token,position_embeddings,
                           folder (config.json + safetensors)      patch_embeddings.projection}, [vit.]encoder.layer.i.
                                                                   {attention.attention.query|key|value, ...}, layernorm
    transformers-videomae  VideoMAEForPreTraining / VideoMAEModel  [videomae.]embeddings.patch_embeddings.projection
                           folder                                  (Conv3d), ...attention.attention.q_bias / v_bias
    videomae-pth           MCG-NJU VideoMAE / MAE-DFER style .pth  encoder.patch_embed.proj (Conv3d), encoder.blocks.i.
                           ({"model": sd, "args": ...})            attn.{qkv,q_bias,v_bias,proj}, encoder.norm,
                                                                   encoder_to_decoder, decoder.{blocks,norm,head}
    expmae-encoder         a previous run's encoder.safetensors    ours already

VideoMAE's attention has biases on q and v only: the key bias of our fused qkv is zero. Position
embeddings are returned apart ("pos_embed", our layout: image [1, 1+L, D] with the cls row, video
[1, L, D]); the decoder's fixed sin-cos table is recomputed for the model's grid, never mapped.
Files are read with safetensors or torch.load(weights_only=True) only.
"""
from __future__ import annotations

import argparse
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

Tensors = dict[str, torch.Tensor]


@dataclass
class Mapped:
    """A checkpoint in our names: `state` (encoder [+ decoder]), `pos_embed` apart, what was dropped."""
    format: str
    state: Tensors
    pos_embed: torch.Tensor | None
    config: dict[str, Any] = field(default_factory=dict)  # transformers config.json / VideoMAE args, if any
    ignored: list[str] = field(default_factory=list)      # checkpoint keys not used (heads, tables recomputed)
    notes: list[str] = field(default_factory=list)
    embed_shape: tuple[int, ...] = ()  # the patch projection as stored: [D, C, p, p] or Conv3d [D, C, t, p, p]
    pos_note: str = ""  # how pos_embed was made from the file's table, when not as stored (inflate.py)


def weights_file(path: Path) -> Path:
    """The tensor file of an init path: the file itself, or a transformers folder's weights."""
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path} has neither model.safetensors nor pytorch_model.bin")
    return path


def read_tensors(path: Path) -> tuple[Tensors, dict[str, Any], str]:
    """-> (state dict, config (config.json or the pth's args), container: folder | safetensors | expmae
    (our encoder file) | pth (a bare state dict) | pth-wrapped ({"model": state dict, ...}))."""
    f = weights_file(path)
    cfg: dict[str, Any] = {}
    if path.is_dir() and (path / "config.json").exists():
        cfg = json.loads((path / "config.json").read_text())
    if f.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        from expmae.encoder_format import ENCODER_FORMAT

        with safe_open(str(f), framework="pt") as fh:
            ours = (fh.metadata() or {}).get("format") == ENCODER_FORMAT
        return load_file(str(f)), cfg, "folder" if path.is_dir() else "expmae" if ours else "safetensors"
    with torch.serialization.safe_globals([argparse.Namespace]):  # MAE / VideoMAE training checkpoints keep args
        # mmap needs the zip format; a legacy (torch < 1.6) file is read into memory instead
        obj = torch.load(str(f), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(f))
    container = "folder" if path.is_dir() else "pth"
    for key in ("model", "module", "state_dict", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            args = obj.get("args")
            cfg = cfg or (vars(args) if isinstance(args, argparse.Namespace) else dict(args or {}))
            obj, container = obj[key], "pth-wrapped"
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{f} holds no state dict of tensors")
    return dict(obj), cfg, container


def detect(sd: Tensors, container: str) -> tuple[str, bool]:
    """-> (format name, whether it is a video checkpoint)."""
    if container == "expmae":
        return "expmae-encoder", "tube_embed.weight" in sd
    hf = next((k for k in sd if k.endswith("embeddings.patch_embeddings.projection.weight")), None)
    if hf is not None:
        return ("transformers-videomae", True) if sd[hf].ndim == 5 else ("transformers-vit_mae", False)
    pe = sd.get("encoder.patch_embed.proj.weight", sd.get("patch_embed.proj.weight"))
    if pe is not None and pe.ndim == 5:
        return "videomae-pth", True
    if pe is not None and pe.ndim == 4 and "cls_token" in sd:
        return ("facebookresearch-mae" if container == "pth-wrapped" else "timm"), False
    raise ValueError(f"unrecognised checkpoint layout (first keys {sorted(sd)[:6]})")


# ---------------------------------------------------------------------------- transformers layers
_HF_LAYER = {  # our block key -> candidate transformers keys (legacy names first, v5 names second)
    "norm1.weight": ("layernorm_before.weight",), "norm1.bias": ("layernorm_before.bias",),
    "norm2.weight": ("layernorm_after.weight",), "norm2.bias": ("layernorm_after.bias",),
    "attn.proj.weight": ("attention.output.dense.weight", "attention.o_proj.weight"),
    "attn.proj.bias": ("attention.output.dense.bias", "attention.o_proj.bias"),
    "mlp.fc1.weight": ("intermediate.dense.weight", "mlp.fc1.weight"),
    "mlp.fc1.bias": ("intermediate.dense.bias", "mlp.fc1.bias"),
    "mlp.fc2.weight": ("output.dense.weight", "mlp.fc2.weight"),
    "mlp.fc2.bias": ("output.dense.bias", "mlp.fc2.bias"),
}
_QKV = {"q": ("attention.attention.query", "attention.q_proj"), "k": ("attention.attention.key", "attention.k_proj"),
        "v": ("attention.attention.value", "attention.v_proj")}


def _pick(sd: Tensors, used: set[str], pre: str, names: tuple[str, ...]) -> torch.Tensor | None:
    for n in names:
        if pre + n in sd:
            used.add(pre + n)
            return sd[pre + n]
    return None


def hf_block(sd: Tensors, used: set[str], pre: str, out: str, res: Tensors) -> bool:
    """One transformers ViT layer at prefix `pre` -> our timm Block keys at `out` (q/k/v fused)."""
    w = [_pick(sd, used, pre, (n + ".weight" for n in _QKV[c])) for c in "qkv"]  # type: ignore[arg-type]
    if any(t is None for t in w):
        return False
    res[out + "attn.qkv.weight"] = torch.cat(w)  # type: ignore[arg-type]
    b = []
    for c, qv in (("q", "q_bias"), ("k", None), ("v", "v_bias")):
        names = tuple(n + ".bias" for n in _QKV[c]) + ((f"attention.attention.{qv}",) if qv else ())
        b.append(_pick(sd, used, pre, names))
    res[out + "attn.qkv.bias"] = torch.cat([t if t is not None else torch.zeros(w[0].shape[0]) for t in b])  # type: ignore[union-attr]
    for ours, theirs in _HF_LAYER.items():
        t = _pick(sd, used, pre, theirs)
        if t is not None:
            res[out + ours] = t
    return True


def _layers(sd: Tensors, pattern: str) -> list[str]:
    """Distinct layer prefixes matching `pattern` (a regex with one group: the index), in order."""
    idx = {int(m.group(1)): m.group(0) for k in sd for m in [re.match(pattern, k)] if m}
    return [idx[i] for i in sorted(idx)]


def from_transformers(sd: Tensors, video: bool) -> tuple[Tensors, torch.Tensor | None, set[str]]:
    used: set[str] = set()
    root = "videomae." if video else "vit."
    if not any(k.startswith(root) for k in sd):
        root = ""  # a bare VideoMAEModel / ViTMAEModel
    res: Tensors = {}
    for i, pre in enumerate(_layers(sd, rf"^{re.escape(root)}encoder\.layers?\.(\d+)\.")):
        hf_block(sd, used, pre, f"blocks.{i}.", res)
    emb = root + "embeddings."
    proj = sd[emb + "patch_embeddings.projection.weight"]
    used |= {emb + "patch_embeddings.projection.weight", emb + "patch_embeddings.projection.bias"}
    if video:  # Conv3d [D, C, t, p, p] -> Linear on (t, p, q, c)-ordered tubes
        res["tube_embed.weight"] = proj.permute(0, 2, 3, 4, 1).reshape(proj.shape[0], -1)
        res["tube_embed.bias"] = sd[emb + "patch_embeddings.projection.bias"]
    else:
        res["patch_embed.proj.weight"] = proj
        res["patch_embed.proj.bias"] = sd[emb + "patch_embeddings.projection.bias"]
        res["cls_token"] = sd[emb + "cls_token"]
        used.add(emb + "cls_token")
    for k in (root + "layernorm.weight", root + "layernorm.bias"):
        if k in sd:
            res["norm." + k.rsplit(".", 1)[1]] = sd[k]
            used.add(k)
    pos = sd.get(emb + "position_embeddings")
    used.add(emb + "position_embeddings")
    dec = "decoder."
    for i, pre in enumerate(_layers(sd, r"^decoder\.decoder_(?:layers|encoder\.layer)\.(\d+)\.")):
        hf_block(sd, used, pre, f"decoder_blocks.{i}.", res)
    names = {"decoder_norm": ("decoder.norm", "decoder.decoder_norm"), "decoder_pred": ("decoder.head", "decoder.decoder_pred"),
             "decoder_embed": ("encoder_to_decoder", "decoder.decoder_embed")}
    for ours, theirs in names.items():
        for t in theirs:
            for p in ("weight", "bias"):
                if f"{t}.{p}" in sd:
                    res[f"{ours}.{p}"] = sd[f"{t}.{p}"]
                    used.add(f"{t}.{p}")
    for k in ("mask_token", dec + "mask_token"):
        if k in sd:
            res["mask_token"] = sd[k]
            used.add(k)
    used.add(dec + "decoder_pos_embed")
    return res, pos, used


# ---------------------------------------------------------------------------- timm-style layouts
def from_timm_layout(sd: Tensors, video: bool) -> tuple[Tensors, torch.Tensor | None, set[str]]:
    """facebookresearch-mae / timm / MCG-NJU VideoMAE: timm Block names, VideoMAE's q/v biases."""
    used: set[str] = set()
    enc = "encoder." if "encoder.patch_embed.proj.weight" in sd else ""
    res: Tensors = {}
    for k, v in sd.items():
        if k.startswith(enc + "blocks.") or (not enc and k.startswith("decoder_blocks.")):
            res[k[len(enc):]] = v
            used.add(k)
        elif enc and k.startswith("decoder.blocks."):
            res["decoder_" + k[len("decoder."):]] = v
            used.add(k)
    for blk in {k.rsplit(".attn.", 1)[0] for k in list(res) if ".attn." in k}:  # VideoMAE q/v-only biases
        q, v = res.pop(blk + ".attn.q_bias", None), res.pop(blk + ".attn.v_bias", None)
        if blk + ".attn.qkv.bias" not in res:
            D = res[blk + ".attn.qkv.weight"].shape[0] // 3
            res[blk + ".attn.qkv.bias"] = torch.cat([q if q is not None else torch.zeros(D), torch.zeros(D),
                                                     v if v is not None else torch.zeros(D)])
    proj = sd[enc + "patch_embed.proj.weight"]
    used |= {enc + "patch_embed.proj.weight", enc + "patch_embed.proj.bias", enc + "pos_embed", "pos_embed"}
    if video:
        res["tube_embed.weight"] = proj.permute(0, 2, 3, 4, 1).reshape(proj.shape[0], -1)
        res["tube_embed.bias"] = sd[enc + "patch_embed.proj.bias"]
    else:
        res["patch_embed.proj.weight"], res["patch_embed.proj.bias"] = proj, sd[enc + "patch_embed.proj.bias"]
        res["cls_token"] = sd["cls_token"]
        used.add("cls_token")
    for p in ("weight", "bias"):
        for ours, theirs in (("norm", enc + "norm"), ("decoder_norm", "decoder.norm"), ("decoder_norm", "decoder_norm"),
                             ("decoder_pred", "decoder.head"), ("decoder_pred", "decoder_pred"),
                             ("decoder_embed", "encoder_to_decoder"), ("decoder_embed", "decoder_embed")):
            if f"{theirs}.{p}" in sd:
                res[f"{ours}.{p}"] = sd[f"{theirs}.{p}"]
                used.add(f"{theirs}.{p}")
    if "mask_token" in sd:
        res["mask_token"] = sd["mask_token"]
        used.add("mask_token")
    used.add("decoder_pos_embed")
    return res, sd.get(enc + "pos_embed"), used


def map_checkpoint(path: str | Path) -> tuple[Mapped, bool]:
    """Read and map a checkpoint (see the module table) -> (mapped, is_video). Raises ValueError on
    a layout it cannot map."""
    path = Path(path)
    sd, cfg, container = read_tensors(path)
    fmt, video = detect(sd, container)
    if fmt == "expmae-encoder":
        state, pos, used = dict(sd), sd.get("pos_embed"), set(sd)
        state.pop("pos_embed", None)
    elif fmt.startswith("transformers"):
        state, pos, used = from_transformers(sd, video)
    else:
        state, pos, used = from_timm_layout(sd, video)
    scale = [k for k in sd if re.search(r"\.(gamma_[12]|ls[12]\.gamma)$", k)]
    if scale:
        raise ValueError(f"layer scale ({scale[0]}) is not supported: the blocks have none")
    proj = next(v for k, v in sd.items() if k.endswith(("patch_embed.proj.weight", "patch_embeddings.projection.weight",
                                                           "tube_embed.weight")))
    m = Mapped(fmt, state, pos, cfg, ignored=sorted(k for k in sd if k not in used), embed_shape=tuple(proj.shape))
    if fmt == "expmae-encoder" and video:  # our Linear [D, t*p*p*C]: the encoder file's header has t, p
        m.embed_shape = ()
    if any(k.endswith("attn.q_bias") for k in sd) or any(k.endswith("attention.q_bias") for k in sd):
        m.notes.append("q/v-only attention biases (VideoMAE): the key bias is zero")
    eps = cfg.get("layer_norm_eps")
    if eps is not None and abs(float(eps) - 1e-6) > 1e-9:
        m.notes.append(f"checkpoint LayerNorm eps {eps}; the model uses 1e-6")
    return m, video

"""Named MAE sizes (the timm / facebookresearch-mae pattern) and how a config section's architecture
is resolved: named size < the init checkpoint's architecture < explicit keys.

    mae:       {size: large, init: /models/mae_pretrain_vit_large.pth, img_size: 224}
    mae_video: {size: auto, init: /models/videomae-base}   # auto: whatever the checkpoint is

Encoder widths follow the ViT family (MAE's ViT-B/L/H; VideoMAE's ViT-S/B/L); decoders are those of
the MAE paper (512 x 8, 16 heads) and of VideoMAE (half the encoder width, 4 blocks, 64-wide heads).
`micro` is the demo's own small ViT. Torch-free: the workflow's parse may import it.
"""
from __future__ import annotations

from typing import Any, Mapping

ENC = dict(patch_size=16, mlp_ratio=4.0)
IMAGE_SIZES: dict[str, dict[str, Any]] = {
    "micro": dict(ENC, embed_dim=128, depth=4, num_heads=4, decoder_dim=96, decoder_depth=2, decoder_num_heads=3),
    "tiny": dict(ENC, embed_dim=192, depth=12, num_heads=3, decoder_dim=128, decoder_depth=4, decoder_num_heads=4),
    "small": dict(ENC, embed_dim=384, depth=12, num_heads=6, decoder_dim=256, decoder_depth=4, decoder_num_heads=8),
    "base": dict(ENC, embed_dim=768, depth=12, num_heads=12, decoder_dim=512, decoder_depth=8, decoder_num_heads=16),
    "large": dict(ENC, embed_dim=1024, depth=24, num_heads=16, decoder_dim=512, decoder_depth=8, decoder_num_heads=16),
    "huge": dict(ENC, patch_size=14, embed_dim=1280, depth=32, num_heads=16, decoder_dim=512, decoder_depth=8,
                 decoder_num_heads=16),
}
VID = dict(ENC, tubelet=2)
VIDEO_SIZES: dict[str, dict[str, Any]] = {
    "micro": dict(VID, embed_dim=128, depth=4, num_heads=4, decoder_dim=96, decoder_depth=2, decoder_num_heads=3),
    "small": dict(VID, embed_dim=384, depth=12, num_heads=6, decoder_dim=192, decoder_depth=4, decoder_num_heads=3),
    "base": dict(VID, embed_dim=768, depth=12, num_heads=12, decoder_dim=384, decoder_depth=4, decoder_num_heads=6),
    "large": dict(VID, embed_dim=1024, depth=24, num_heads=16, decoder_dim=512, decoder_depth=4, decoder_num_heads=8),
}
AUTO, FALLBACK = "auto", "micro"  # size auto: the init checkpoint's architecture; without init: micro
ENCODER_KEYS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio")  # a checkpoint fixes these
DECODER_KEYS = ("decoder_dim", "decoder_depth", "decoder_num_heads")
VIDEO_KEYS = ("tubelet",)


def sizes_for(section: str) -> dict[str, dict[str, Any]]:
    return VIDEO_SIZES if section == "mae_video" else IMAGE_SIZES


def arch_keys(section: str) -> tuple[str, ...]:
    return ENCODER_KEYS + DECODER_KEYS + (VIDEO_KEYS if section == "mae_video" else ())


def match_size(section: str, arch: Mapping[str, Any]) -> str | None:
    """The named size whose encoder (patch, width, depth) is the checkpoint's, if any."""
    for name, s in sizes_for(section).items():
        if all(arch.get(k) == s[k] for k in ("patch_size", "embed_dim", "depth")):
            return name
    return None


def resolve(section: str, d: Mapping[str, Any], ckpt: Mapping[str, Any] | None) -> dict[str, Any]:
    """Architecture keys of `section` from its params `d` (explicit keys: not None) and the
    architecture read from its init checkpoint `ckpt` (None: no init).

    Raises ValueError naming the config key when an explicit key or size disagrees with the
    checkpoint where the weights could not be mapped (patch, width, depth, heads, tubelet).
    Explicit decoder widths that differ from the checkpoint's decoder mean a fresh decoder."""
    sizes = sizes_for(section)
    size = d.get("size") or AUTO
    if size != AUTO and size not in sizes:
        raise ValueError(f"config key {section}.size: unknown size {size!r}; choose one of {[AUTO, *sizes]}")
    explicit = {k: d[k] for k in arch_keys(section) if d.get(k) is not None}
    if ckpt is None:
        return _heads_follow(sizes[FALLBACK if size == AUTO else size], explicit)
    fixed = ENCODER_KEYS + (VIDEO_KEYS if section == "mae_video" else ())
    if size != AUTO:
        for k in ("patch_size", "embed_dim", "depth"):
            if sizes[size][k] != ckpt.get(k):
                raise ValueError(f"config key {section}.size: {size} has {k} {sizes[size][k]}, but the {section}.init "
                                 f"checkpoint has {k} {ckpt.get(k)} ({_shape_note(ckpt, k)}); set size: auto")
    named = size if size != AUTO else match_size(section, ckpt)
    arch = {**sizes[named or FALLBACK], **{k: v for k, v in ckpt.items() if v is not None and k in arch_keys(section)}}
    if named is None and ckpt.get("num_heads") is None:
        arch.pop("num_heads")  # a head count cannot be read off the weights
    for k in fixed:
        if k in explicit and k in arch and explicit[k] != arch[k]:
            raise ValueError(f"config key {section}.{k}: {explicit[k]}, but the {section}.init checkpoint has "
                             f"{k} {arch[k]} ({_shape_note(ckpt, k)}): its weights cannot be mapped")
    arch = _heads_follow(arch, explicit)
    if arch.get("num_heads") is None:
        raise ValueError(f"config key {section}.num_heads: the {section}.init checkpoint (embed_dim "
                         f"{arch['embed_dim']}, depth {arch['depth']}) matches no named size and does not say its "
                         "attention heads; set it")
    return arch


def _heads_follow(base: Mapping[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """base < explicit; an explicit decoder width without explicit heads gets derived heads (0)."""
    out = {**base, **explicit}
    if "decoder_dim" in explicit and "decoder_num_heads" not in explicit and explicit["decoder_dim"] != base.get("decoder_dim"):
        out["decoder_num_heads"] = 0  # MAEConfig: 32-wide heads
    return out


def _shape_note(ckpt: Mapping[str, Any], key: str) -> str:
    shapes = ckpt.get("_shapes", {})
    return shapes.get(key, "from its weights")

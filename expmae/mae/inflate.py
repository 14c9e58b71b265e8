"""A video MAE started from an image MAE checkpoint ("inflation", as I3D inflates 2D kernels).

    mae_video: {init: /models/mae_pretrain_vit_large.pth}   # any image format mae.init accepts
    mae_video: {init: mae}                                  # this run's image expMAE (results/mae/)

The blocks and the final norm are the same modules in both models and are copied as they are.
What differs is the token embedding:
  patch projection  the image kernel W [D, C, p, p] becomes the tube projection over t frames,
                    W / t on every frame (tube pixels in the (dt, dy, dx, c) order of
                    VideoMAE.patchify). A still tube then gives exactly the image patch's embedding.
  position table    the image table without its cls row, interpolated to the video grid (bicubic,
                    as mae.init does) and repeated over the T' time slots. It is stored with the
                    encoder; the encoder gets no time position (the decoder's fixed table has one).
  cls token         dropped (VideoMAE has none); the image decoder is not used (a fresh one).
So a still clip gives, in every time slot, the tokens the image encoder gives for that frame
without its cls token (tests/test_mae_init.py checks it). Everything dropped or made new is listed
in the init report (results/mae_video/meta.json).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from expmae.npnet import sincos_pos_embed_2d

from ._vit import interpolate_pos
from .keymap import Mapped

ENCODER = ("blocks.", "norm.")  # shared by both models, copied as they are


def tube_kernel(weight: torch.Tensor, tubelet: int) -> torch.Tensor:
    """Image patch kernel [D, C, p, p] -> tube projection [D, t*p*p*C] (pixels ordered dt, dy, dx, c)."""
    D = weight.shape[0]
    per_frame = weight.permute(0, 2, 3, 1).reshape(D, 1, -1)  # [D, 1, p*p*C] in (dy, dx, c) order
    return (per_frame.expand(D, tubelet, per_frame.shape[-1]) / tubelet).reshape(D, -1)


def video_table(image_table: torch.Tensor | None, dim: int, grid: int, slots: int) -> tuple[torch.Tensor, str]:
    """The image position table [1, 1+g0*g0, D] (None: the image MAE's fixed 2D sin-cos) ->
    video table [1, T'*g*g, D] and what was done."""
    if image_table is None:
        table = torch.from_numpy(sincos_pos_embed_2d(dim, grid)).float().unsqueeze(0)  # as model.MAE's
        what = f"the image MAE's fixed 2D sin-cos ({grid}x{grid})"
    else:
        g0 = math.isqrt(image_table.shape[1] - 1)
        table = image_table.float() if g0 == grid else interpolate_pos(image_table, grid)
        what = f"the image table ({g0}x{g0}{'' if g0 == grid else f' -> {grid}x{grid}, bicubic'})"
    return table[:, 1:].repeat(1, slots, 1), f"pos_embed: {what} without the cls row, repeated over {slots} time slots"


def to_video(m: Mapped, cfg: Any) -> Mapped:
    """An image checkpoint mapped to our image names -> the same weights in the video model's names
    (cfg: the VideoMAEConfig being built). Patch size and width are checked by sizes.resolve and
    apply_init's shape check, like any other init."""
    w, b = m.state.get("patch_embed.proj.weight"), m.state.get("patch_embed.proj.bias")
    if w is None:
        raise ValueError("config key mae_video.init: the image checkpoint has no patch_embed.proj.weight")
    state = {"tube_embed.weight": tube_kernel(w.float(), cfg.tubelet),
             "tube_embed.bias": b.float() if b is not None else torch.zeros(w.shape[0])}
    state.update({k: v for k, v in m.state.items() if k.startswith(ENCODER)})
    dropped = sorted(k for k in m.state if k not in state and not k.startswith("patch_embed."))
    slots, grid = cfg.grid[0], cfg.img_size // cfg.patch_size
    pos, pos_note = video_table(m.pos_embed, w.shape[0], grid, slots)
    notes = [*m.notes, f"inflated from an image checkpoint ({m.format}): patch_embed.proj [D, C, p, p] / "
             f"{cfg.tubelet} on each of the tube's {cfg.tubelet} frames -> tube_embed",
             "cls_token and the image decoder dropped (the video decoder starts fresh)"]
    return Mapped(f"{m.format} (image, inflated)", state, pos, m.config, ignored=[*m.ignored, *dropped],
                  notes=notes, embed_shape=m.embed_shape, pos_note=pos_note)

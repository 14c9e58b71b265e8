"""What the image MAE (model.py) and the video MAE (video.py) share: timm's ViT block stack, the
lightweight pretraining decoder, the weight init, the masked-patch loss, token gathers, the
encoder-only state dict and the interpolation of position tables (init.py, inflate.py).

Weights must not depend on which file builds them: module creation order (each timm Block draws
its default init from the torch RNG) and the init order below are those of the original models,
so a seed gives the same weights, and the parameter names (checkpoint keys) stay as they were.

Shapes: B batch, L tokens, D encoder width, Dd decoder width, P pixels per patch (or tube).
"""
from __future__ import annotations

import functools
import math
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block

norm_layer = functools.partial(nn.LayerNorm, eps=1e-6)  # as in MAE / timm ViTs


def vit_blocks(dim: int, heads: int, mlp_ratio: float, depth: int) -> nn.ModuleList:
    """`depth` pre-norm timm ViT blocks (qkv bias, LayerNorm eps 1e-6): [B, L, dim] -> [B, L, dim]."""
    return nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth))


def take(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Gather tokens along dim 1: x [B, L, D], ids [B, M] -> [B, M, D].

    A row gather (index_select on the flattened batch) copies whole D-vectors; torch.gather
    with an index expanded over D looks up every element and is ~10x slower on CPU.
    """
    B, L, D = x.shape
    flat = (ids + torch.arange(B, device=ids.device).unsqueeze(1) * L).reshape(-1)  # [B*M]
    return x.reshape(B * L, D).index_select(0, flat).view(B, ids.shape[1], D)


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, norm_pix: bool) -> torch.Tensor:
    """Mean squared error over the given (masked) patches: pred, target [B, M, P] -> scalar.

    norm_pix normalises each target patch by its mean and unbiased variance (+1e-6), as in MAE.
    layer_norm (biased variance) computes the same thing in one fused kernel once its eps and
    output are rescaled by (P-1)/P.
    """
    target = target.float()
    if norm_pix:
        P = target.shape[-1]
        scale = torch.full((P,), ((P - 1) / P) ** 0.5, device=target.device)  # folded into the kernel
        target = F.layer_norm(target, (P,), weight=scale, eps=1e-6 * (P - 1) / P)
    return F.mse_loss(pred.float(), target)


def interpolate_pos(table: torch.Tensor, g: int) -> torch.Tensor:
    """Image table [1, 1+g0*g0, D] -> [1, 1+g*g, D]: cls row kept, bicubic over the grid (as MAE)."""
    D, g0 = table.shape[-1], math.isqrt(table.shape[1] - 1)
    grid = table[:, 1:].reshape(1, g0, g0, D).permute(0, 3, 1, 2).float()
    out = F.interpolate(grid, size=(g, g), mode="bicubic", align_corners=False)
    return torch.cat([table[:, :1].float(), out.permute(0, 2, 3, 1).reshape(1, g * g, D)], dim=1)


def interpolate_pos_video(table: torch.Tensor, T0: int, T: int, g: int) -> torch.Tensor:
    """Video table [1, T0*g0*g0, D] -> [1, T*g*g, D]: trilinear over (time slot, row, col)."""
    D = table.shape[-1]
    g0 = math.isqrt(table.shape[1] // T0)
    if T0 * g0 * g0 != table.shape[1]:
        raise ValueError(f"a video position table of {table.shape[1]} tokens does not split into {T0} time slots")
    grid = table.reshape(1, T0, g0, g0, D).permute(0, 4, 1, 2, 3).float()
    out = F.interpolate(grid, size=(T, g, g), mode="trilinear", align_corners=False)
    return out.permute(0, 2, 3, 4, 1).reshape(1, T * g * g, D)


class MAEBackbone(nn.Module):
    """Block stack + decoder + init + encoder-only weights; a subclass adds its token embedding.

    A subclass's __init__ creates its embedding modules, then calls build_encoder and
    build_decoder (in that order), then init_weights.
    """

    encoder_prefixes: tuple[str, ...] = ()  # the encoder's parameters; everything else is the decoder
    pos_embed_stored = False  # True once an init checkpoint's table replaced the fixed sin-cos one

    def build_encoder(self, dim: int, heads: int, mlp_ratio: float, depth: int) -> None:
        self.blocks = vit_blocks(dim, heads, mlp_ratio, depth)
        self.norm = norm_layer(dim)

    def build_decoder(self, dim: int, dec_dim: int, heads: int, mlp_ratio: float, depth: int, out_dim: int,
                      pos_embed: torch.Tensor, embed_bias: bool = True) -> None:
        """The pretraining-only decoder: encoder tokens [B, K, D] -> Dd, plus a shared mask token,
        fixed position table `pos_embed` [1, L, Dd] (a non-persistent buffer), blocks, norm, and a
        pixel head Dd -> out_dim."""
        self.decoder_embed = nn.Linear(dim, dec_dim, bias=embed_bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("decoder_pos_embed", pos_embed, persistent=False)
        self.decoder_blocks = vit_blocks(dec_dim, heads, mlp_ratio, depth)
        self.decoder_norm = norm_layer(dec_dim)
        self.decoder_pred = nn.Linear(dec_dim, out_dim)

    def init_embeddings(self) -> None:
        """Init of the subclass's own embedding parameters, run first (default: nothing)."""

    def init_weights(self) -> None:
        # As in MAE: tokens N(0, .02), Linear xavier-uniform with zero bias, LayerNorm (1, 0).
        self.init_embeddings()
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def run_blocks(self, x: torch.Tensor, blocks: nn.ModuleList) -> torch.Tensor:
        for blk in blocks:
            x = blk(x)
        return x

    def set_pos_embed(self, table: torch.Tensor) -> None:
        """Replace the fixed sin-cos position table (same shape) by a checkpoint's; it is then
        stored with the encoder ("pos_embed", see expmae/encoder_format.py)."""
        if table.shape != self.pos_embed.shape:
            raise ValueError(f"position table {list(table.shape)} does not fit the model's {list(self.pos_embed.shape)}")
        self.pos_embed = table.detach().to(self.pos_embed)  # still the non-persistent buffer
        self.pos_embed_stored = True

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        sd = {k: v for k, v in self.state_dict().items() if k.startswith(self.encoder_prefixes)}
        if self.pos_embed_stored:
            sd["pos_embed"] = self.pos_embed
        return sd

    def load_encoder_state_dict(self, sd: Mapping[str, torch.Tensor]) -> None:
        """Load encoder-only weights (+ a stored position table); anything missing must belong
        to the decoder."""
        sd = dict(sd)
        if "pos_embed" in sd:
            self.set_pos_embed(sd.pop("pos_embed"))
        missing, unexpected = self.load_state_dict(sd, strict=False)
        bad = [k for k in missing if k.startswith(self.encoder_prefixes)]
        if bad or unexpected:
            raise ValueError(f"{type(self).__name__} encoder weights do not match the model: "
                             f"missing {bad[:5]}, unexpected {unexpected[:5]}")

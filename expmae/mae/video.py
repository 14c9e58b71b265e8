"""Video MAE (VideoMAE-style, Tong et al. 2022): space-time tubes with tube masking.

A clip of T frames is cut into tubes of t x p x p pixels (default 2 x 16 x 16); the same
spatial positions are masked in every time slot ("tube masking", 90 %), so the model cannot
copy a masked patch from the neighbouring frame and has to model motion and expression
dynamics. No cls token (as in VideoMAE); fixed 1D sin-cos position embedding over all tubes.
pretrain.py trains it when the params say `"kind": "video"` (config `mae_video:`); the
encoder-only state (tube_embed, blocks, norm) is what checkpoint.save_encoder stores.

Shapes: B batch, C channels, T frames, H=W=img_size, t tubelet, p patch; T'=T/t, N=h*w spatial
positions, L=T'*N tubes, K=T'*round(N*(1-ratio)) kept tubes, P=t*p*p*C pixels per tube.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn

from ._vit import MAEBackbone, masked_patch_loss, take
from expmae.encoder_format import VIDEO_ENCODER_PREFIXES
from .model import MAEConfig


@dataclass(frozen=True, kw_only=True)
class VideoMAEConfig(MAEConfig):
    """The image MAE's config plus time (tubelet frames per tube, num_frames per clip); the keys of
    config section `mae_video` get their defaults from the schema in from_dict, as in MAEConfig."""
    _section: ClassVar[str] = "mae_video"
    tubelet: int
    num_frames: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_frames % self.tubelet:
            raise ValueError(f"mae_video.num_frames {self.num_frames} is not a multiple of mae_video.tubelet {self.tubelet}")

    @property
    def grid(self) -> tuple[int, int]:
        """(T' time slots, N spatial positions)."""
        return self.num_frames // self.tubelet, (self.img_size // self.patch_size) ** 2


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed sinusoid table -> [1, n, dim]."""
    pos = np.arange(n, dtype=np.float64)[:, None]
    div = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None]
    tab = pos / div
    tab[:, 0::2], tab[:, 1::2] = np.sin(tab[:, 0::2]), np.cos(tab[:, 1::2])
    return torch.from_numpy(tab).float().unsqueeze(0)


class VideoMAE(MAEBackbone):
    encoder_prefixes = VIDEO_ENCODER_PREFIXES

    def __init__(self, cfg: VideoMAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        Tn, N = cfg.grid
        D, Dd, P = cfg.embed_dim, cfg.decoder_dim, cfg.tubelet * cfg.patch_size**2 * cfg.in_chans
        self.tube_embed = nn.Linear(P, D)  # == Conv3d with stride = kernel, applied to kept tubes only
        self.register_buffer("pos_embed", sincos_1d(Tn * N, D), persistent=False)  # [1, L, D]
        self.build_encoder(D, cfg.num_heads, cfg.mlp_ratio, cfg.depth)  # blocks, norm
        self.build_decoder(D, Dd, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.decoder_depth, P,
                           sincos_1d(Tn * N, Dd), embed_bias=False)  # as VideoMAE: no decoder_embed bias
        self.init_weights()  # tube_embed is a Linear: xavier like the rest

    def patchify(self, clips: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, L, P], tubes in (time slot, row, col) order, pixels (dt, dy, dx, c)."""
        B, C, T, H, W = clips.shape
        t, p = self.cfg.tubelet, self.cfg.patch_size
        x = clips.reshape(B, C, T // t, t, H // p, p, W // p, p)
        x = torch.einsum("bcTthpwq->bThwtpqc", x)
        return x.reshape(B, (T // t) * (H // p) * (W // p), t * p * p * C)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, P] -> [B, C, T, H, W] (inverse of patchify)."""
        c = self.cfg
        Tn, hw = c.num_frames // c.tubelet, c.img_size // c.patch_size
        x = x.reshape(x.shape[0], Tn, hw, hw, c.tubelet, c.patch_size, c.patch_size, c.in_chans)
        x = torch.einsum("bThwtpqc->bcTthpwq", x)
        return x.reshape(x.shape[0], c.in_chans, c.num_frames, c.img_size, c.img_size)

    def tube_mask_ids(self, noise: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Spatial noise [B, N] -> (ids_shuffle [B, L], ids_restore [B, L], mask [B, L], K kept).

        One spatial mask per clip, repeated over the T' time slots; kept tubes come first.
        """
        B, N = noise.shape
        Tn = self.cfg.grid[0]
        keep = max(1, int(round(N * (1.0 - ratio))))
        order = torch.argsort(noise, dim=1)  # [B, N]
        offs = torch.arange(Tn, device=noise.device).view(1, Tn, 1) * N
        kept = (order[:, None, :keep] + offs).reshape(B, -1)  # [B, T'*keep]
        dropped = (order[:, None, keep:] + offs).reshape(B, -1)
        ids_shuffle = torch.cat([kept, dropped], dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(B, Tn * N, device=noise.device)
        mask[:, : kept.shape[1]] = 0
        return ids_shuffle, ids_restore, torch.gather(mask, 1, ids_restore), kept.shape[1]

    @property
    def noise_len(self) -> int:
        """Masking noise per sample: one value per spatial position (tube masking)."""
        return self.cfg.grid[1]

    def forward(self, clips: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None,
                full_pred: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """clips [B, C, T, H, W] (normalised) -> (loss on masked tubes, pred [B, L, P] or None, mask [B, L]).

        Same contract as model.MAE.forward (mask 1 = masked); full_pred=True also predicts every
        tube, for reconstructions.
        """
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        tubes = self.patchify(clips)  # [B, L, P]
        B, L, P = tubes.shape
        noise = torch.rand(B, self.cfg.grid[1], device=clips.device) if noise is None else noise
        ids_shuffle, ids_restore, mask, K = self.tube_mask_ids(noise, ratio)
        x = self.decoder_embed(self.forward_encoder(tubes, ids_shuffle[:, :K]))  # [B, K, Dd]
        x = torch.cat([x, self.mask_token.expand(B, L - K, -1)], dim=1)
        x = self.run_blocks(take(x, ids_restore) + self.decoder_pos_embed, self.decoder_blocks)  # [B, L, Dd] clip order
        ids_masked = ids_shuffle[:, K:]
        if full_pred:
            x = self.decoder_norm(x)
            full = self.decoder_pred(x)  # [B, L, P]
            pred = take(full, ids_masked)
        else:
            full = None
            pred = self.decoder_pred(self.decoder_norm(take(x, ids_masked)))  # [B, L-K, P]
        return masked_patch_loss(pred, take(tubes, ids_masked), self.cfg.norm_pix_loss), full, mask

    def forward_encoder(self, tubes: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Visible tubes only: tubes [B, L, P], ids_keep [B, K] -> latent [B, K, D] after the final norm."""
        x = self.tube_embed(take(tubes, ids_keep))  # [B, K, D]
        x = x + self.pos_embed[0].index_select(0, ids_keep.reshape(-1)).view_as(x)
        return self.norm(self.run_blocks(x, self.blocks))

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """All tubes, no masking: [B, C, T, H, W] -> mean of tube tokens after the final norm [B, D]."""
        x = self.tube_embed(self.patchify(clips)) + self.pos_embed
        return self.norm(self.run_blocks(x, self.blocks)).mean(dim=1)

"""Image masked autoencoder (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners").

ViT encoder that sees only the ~25 % visible patches, a light decoder that sees all patch
positions (visible tokens + a shared mask token), and a per-patch normalised pixel loss on
the masked patches only. Built from timm's ViT `Block` and `PatchEmbed`; follows
facebookresearch/mae in spirit. Position embeddings are fixed 2D sin-cos (not learned), so
they are a non-persistent buffer recomputed from the config and never stored in checkpoints.

Shapes: B batch, C=3 channels, H=W=img_size, p=patch_size, L=(H/p)^2 patches, K kept patches,
D encoder width, Dd decoder width.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

from expmae import npnet

# Parameter-name prefixes that make up the encoder (everything else is pretraining-only decoder).
ENCODER_PREFIXES = ("patch_embed.", "cls_token", "blocks.", "norm.")


@dataclass(frozen=True)
class MAEConfig:
    _section: ClassVar[str] = "mae"  # config.yaml section named in errors
    img_size: int = 112
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    decoder_dim: int = 96
    decoder_depth: int = 2
    decoder_num_heads: int = 0  # 0 = derive from decoder_dim (32-wide heads)
    mlp_ratio: float = 4.0
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"{self._section}.img_size {self.img_size} is not a multiple of {self._section}.patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{self._section}.embed_dim {self.embed_dim} is not divisible by {self._section}.num_heads {self.num_heads}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"{self._section}.mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.decoder_num_heads <= 0:
            object.__setattr__(self, "decoder_num_heads", _default_heads(self.decoder_dim))
        if self.decoder_dim % self.decoder_num_heads:
            raise ValueError(f"{self._section}.decoder_dim {self.decoder_dim} not divisible by {self.decoder_num_heads} heads")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MAEConfig":
        """Build from the config.yaml `mae:` section (training keys such as epochs are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


def _default_heads(dim: int) -> int:
    for head_dim in (32, 64, 16, 48, 8):
        if dim % head_dim == 0:
            return dim // head_dim
    return 1


# Named sizes, like timm.create_model names. Widths/depths follow the ViT family; the decoder
# is the MAE paper's "lightweight" choice scaled down with the encoder.
MAE_SIZES: dict[str, dict[str, Any]] = {
    "mae_tiny": dict(embed_dim=192, depth=12, num_heads=3, decoder_dim=128, decoder_depth=4, decoder_num_heads=4),
    "mae_small": dict(embed_dim=384, depth=12, num_heads=6, decoder_dim=256, decoder_depth=4, decoder_num_heads=8),
    "mae_base": dict(embed_dim=768, depth=12, num_heads=12, decoder_dim=512, decoder_depth=8, decoder_num_heads=16),
}


def create_mae(name: str, **overrides: Any) -> "MAE":
    """`create_mae("mae_base", img_size=112)` -> MAE; unknown names list the choices."""
    if name not in MAE_SIZES:
        raise KeyError(f"unknown MAE size {name!r}; choose one of {sorted(MAE_SIZES)}")
    return MAE(MAEConfig(**{**MAE_SIZES[name], **overrides}))


def _take(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Gather tokens along dim 1: x [B, L, D], ids [B, M] -> [B, M, D].

    A row gather (index_select on the flattened batch) copies whole D-vectors; torch.gather
    with an index expanded over D looks up every element and is ~10x slower on CPU.
    """
    B, L, D = x.shape
    flat = (ids + torch.arange(B, device=ids.device).unsqueeze(1) * L).reshape(-1)  # [B*M]
    return x.reshape(B * L, D).index_select(0, flat).view(B, ids.shape[1], D)


def sincos_pos_embed_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding -> [1, (1+)grid*grid, dim] (row 0 zeros for the cls token)."""
    return torch.from_numpy(npnet.sincos_pos_embed_2d(dim, grid, cls_token)).float().unsqueeze(0)


class EncoderWeights:
    """Encoder-only weights of an MAE (what features and checkpoints' encoder.safetensors need).
    `encoder_prefixes` names the encoder's parameters; everything else is the decoder."""

    encoder_prefixes: tuple[str, ...] = ()

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(self.encoder_prefixes)}

    def load_encoder_state_dict(self, sd: Mapping[str, torch.Tensor]) -> None:
        """Load encoder-only weights; anything missing must belong to the decoder."""
        missing, unexpected = self.load_state_dict(dict(sd), strict=False)
        bad = [k for k in missing if k.startswith(self.encoder_prefixes)]
        if bad or unexpected:
            raise ValueError(f"{type(self).__name__} encoder weights do not match the model: "
                             f"missing {bad[:5]}, unexpected {unexpected[:5]}")


class MAE(EncoderWeights, nn.Module):
    encoder_prefixes = ENCODER_PREFIXES

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, Dd, L = cfg.embed_dim, cfg.decoder_dim, cfg.num_patches
        grid = cfg.img_size // cfg.patch_size
        norm = functools.partial(nn.LayerNorm, eps=1e-6)

        # --- encoder ---
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(D, grid), persistent=False)  # [1, 1+L, D]
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(cfg.depth)
        )
        self.norm = norm(D)

        # --- decoder (pretraining only) ---
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(Dd, grid), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(Dd, cfg.decoder_num_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm)
            for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = norm(Dd)
        self.decoder_pred = nn.Linear(Dd, cfg.patch_size**2 * cfg.in_chans)
        assert self.pos_embed.shape[1] == 1 + L
        self._init_weights()

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> "MAE":
        return cls(MAEConfig.from_dict(d))

    def _init_weights(self) -> None:
        # As in MAE: patch projection initialised like a Linear layer (xavier on the flattened
        # kernel), tokens N(0, .02), Linear xavier-uniform, LayerNorm (1, 0).
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ patches
    @property
    def noise_len(self) -> int:
        """Masking noise per sample: one value per patch."""
        return self.cfg.num_patches

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, L, p*p*C], patch pixels in (row, col, channel) order."""
        p, c = self.cfg.patch_size, self.cfg.in_chans
        B, _, H, W = imgs.shape
        h, w = H // p, W // p
        # Via channels-last: each copy then moves contiguous runs of p*c values, which is
        # faster than one permute with the channel (stride H*W) innermost.
        x = imgs.permute(0, 2, 3, 1).contiguous()  # [B, H, W, C]
        x = x.reshape(B, h, p, w, p * c).transpose(2, 3)  # [B, h, w, p, p*c]
        return x.reshape(B, h * w, p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, p*p*C] -> [B, C, H, W] (inverse of patchify)."""
        p, c = self.cfg.patch_size, self.cfg.in_chans
        B, L, _ = x.shape
        h = w = int(round(L**0.5))
        assert h * w == L, f"{L} patches do not form a square grid"
        x = x.reshape(B, h, w, p, p * c).transpose(2, 3)  # [B, h, p, w, p*c]
        return x.reshape(B, h * p, w * p, c).permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------ masking
    @staticmethod
    def mask_ids(noise: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """noise [B, L] -> (ids_shuffle [B, L], ids_restore [B, L], mask [B, L] 1 = masked, K kept).

        Per-sample random masking by sorting noise: the K patches with the smallest noise are
        kept, K = round(L * (1 - mask_ratio)); ids_restore = argsort(ids_shuffle) undoes the shuffle.
        """
        B, L = noise.shape
        keep = max(1, int(round(L * (1.0 - mask_ratio))))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(B, L, device=noise.device)
        mask[:, :keep] = 0
        return ids_shuffle, ids_restore, torch.gather(mask, 1, ids_restore), keep

    @classmethod
    def random_masking(
        cls, x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, L, D] -> kept tokens [B, K, D], mask [B, L] (1 = masked), ids_restore [B, L]."""
        B, L, D = x.shape
        noise = torch.rand(B, L, device=x.device) if noise is None else noise
        ids_shuffle, ids_restore, mask, keep = cls.mask_ids(noise, mask_ratio)
        return _take(x, ids_shuffle[:, :keep]), mask.to(x.dtype), ids_restore

    # ------------------------------------------------------------------ forward
    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Patchified pixels [B, N, p*p*C] -> tokens [B, N, D] with PatchEmbed's own weights.

        PatchEmbed's conv has stride = kernel, i.e. it is one linear map per patch. Applying it
        as a Linear to already-selected patches lets the encoder embed only the visible 25 %
        instead of convolving the whole image and then throwing 75 % of the tokens away.
        """
        w = self.patch_embed.proj.weight  # [D, C, p, p] -> [D, p*p*C] in patchify's (p, q, c) order
        return F.linear(patches, w.permute(0, 2, 3, 1).reshape(w.shape[0], -1), self.patch_embed.proj.bias)

    def forward_encoder(self, patches: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Visible patches only: patches [B, L, P], ids_keep [B, K] -> latent [B, 1+K, D]."""
        x = self.embed_patches(_take(patches, ids_keep))  # [B, K, D]
        x = x + self.pos_embed[0, 1:].index_select(0, ids_keep.reshape(-1)).view_as(x)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)  # [B, 1+K, D]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent [B, 1+K, D] -> decoded patch tokens [B, L, Dd] in image order (cls dropped)."""
        x = self.decoder_embed(latent)  # [B, 1+K, Dd]
        B, K1, Dd = x.shape
        L = ids_restore.shape[1]
        x_ = torch.cat([x[:, 1:], self.mask_token.expand(B, L + 1 - K1, -1)], dim=1)  # [B, L, Dd] shuffled
        x = torch.cat([x[:, :1], _take(x_, ids_restore)], dim=1) + self.decoder_pos_embed  # [B, 1+L, Dd]
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_norm(x)[:, 1:]

    def loss_fn(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the given (masked) patches: pred, target [B, M, P] -> scalar.

        norm_pix_loss normalises each target patch by its mean and unbiased variance (+1e-6), as in
        MAE. layer_norm (biased variance) computes the same thing in one fused kernel once its eps
        and output are rescaled by (P-1)/P.
        """
        target = target.float()
        if self.cfg.norm_pix_loss:
            P = target.shape[-1]
            scale = torch.full((P,), ((P - 1) / P) ** 0.5, device=target.device)  # folded into the kernel
            target = F.layer_norm(target, (P,), weight=scale, eps=1e-6 * (P - 1) / P)
        return F.mse_loss(pred.float(), target)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None,
        full_pred: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """imgs [B, C, H, W] (normalised) -> (loss, pred [B, L, P] or None, mask [B, L] 1 = masked).

        Training needs predictions of the masked patches only, so the pixel head runs on those;
        full_pred=True also predicts every patch (for reconstructions).
        """
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        patches = self.patchify(imgs)  # [B, L, P]
        B, L, _ = patches.shape
        noise = torch.rand(B, L, device=imgs.device) if noise is None else noise
        ids_shuffle, ids_restore, mask, keep = self.mask_ids(noise, ratio)
        dec = self.forward_decoder(self.forward_encoder(patches, ids_shuffle[:, :keep]), ids_restore)  # [B, L, Dd]
        ids_masked = ids_shuffle[:, keep:]  # [B, L-K]
        if ids_masked.shape[1]:
            loss = self.loss_fn(self.decoder_pred(_take(dec, ids_masked)), _take(patches, ids_masked))
        else:  # mask_ratio 0: nothing to reconstruct
            loss = dec.sum() * 0.0
        return loss, (self.decoder_pred(dec) if full_pred else None), mask

    # ------------------------------------------------------------------ features
    def encode(self, imgs: torch.Tensor) -> torch.Tensor:
        """All patches, no masking: [B, C, H, W] -> mean of patch tokens after the final norm [B, D]."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 1:].mean(dim=1)

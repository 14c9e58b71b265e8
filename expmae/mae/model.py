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
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed

from expmae import npnet
from expmae.config import defaults

from . import sizes
from ._vit import MAEBackbone, masked_patch_loss, take
from expmae.encoder_format import IMAGE_ENCODER_PREFIXES


@dataclass(frozen=True, kw_only=True)
class MAEConfig:
    """Image MAE architecture. The keys of config section `mae` have no defaults here: from_dict
    fills missing ones from the config schema (expmae.config), the one source of defaults, and
    the architecture from `size` / the `init` checkpoint (sizes.resolve). in_chans,
    decoder_num_heads and mlp_ratio are not config keys: architecture constants (or the
    checkpoint's). init / init_sha256: where the weights start (init.apply_init); not
    architecture, so not in to_dict (the encoder file's model_config), but in the pretraining
    fingerprint (a changed init file retrains)."""
    _section: ClassVar[str] = "mae"  # config.yaml section: named in errors, source of defaults
    img_size: int
    patch_size: int
    in_chans: int = 3
    embed_dim: int
    depth: int
    num_heads: int
    decoder_dim: int
    decoder_depth: int
    decoder_num_heads: int = 0  # 0 = derive from decoder_dim (32-wide heads)
    mlp_ratio: float = 4.0
    mask_ratio: float
    norm_pix_loss: bool
    init: str | None = None
    init_sha256: str | None = None

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
        """Build from a config section (`mae:`; video: `mae_video:`): missing keys get the schema's
        defaults, the architecture comes from size < init checkpoint < explicit keys (a conflict
        with the checkpoint raises ValueError naming the key), training keys such as epochs are
        ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        merged = {**defaults(cls._section), **d}
        ckpt = None
        if merged.get("init"):
            from .init import checkpoint_arch

            ckpt = checkpoint_arch(merged["init"], cls._section)
            merged["init_sha256"] = ckpt["sha256"]
        arch = sizes.resolve(cls._section, merged, ckpt)
        return cls(**{k: v for k, v in {**merged, **arch}.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("init"), d.pop("init_sha256")
        return d

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


def _default_heads(dim: int) -> int:
    for head_dim in (32, 64, 16, 48, 8):
        if dim % head_dim == 0:
            return dim // head_dim
    return 1


# Named sizes, like timm.create_model names (config: mae.size; sizes.py has the table).
MAE_SIZES: dict[str, dict[str, Any]] = {f"mae_{k}": v for k, v in sizes.IMAGE_SIZES.items()}


def create_mae(name: str, **overrides: Any) -> "MAE":
    """`create_mae("mae_base", img_size=112)` -> MAE; unknown names list the choices; keys neither
    the size nor the overrides set get the `mae` section's schema defaults."""
    if name not in MAE_SIZES:
        raise KeyError(f"unknown MAE size {name!r}; choose one of {sorted(MAE_SIZES)}")
    return MAE(MAEConfig.from_dict({**MAE_SIZES[name], **overrides}))


def sincos_pos_embed_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding -> [1, (1+)grid*grid, dim] (row 0 zeros for the cls token)."""
    return torch.from_numpy(npnet.sincos_pos_embed_2d(dim, grid, cls_token)).float().unsqueeze(0)


POOLS = ("mean", "cls")


class MAE(MAEBackbone):
    encoder_prefixes = IMAGE_ENCODER_PREFIXES

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, Dd, L = cfg.embed_dim, cfg.decoder_dim, cfg.num_patches
        grid = cfg.img_size // cfg.patch_size
        # --- encoder ---
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(D, grid), persistent=False)  # [1, 1+L, D]
        self.build_encoder(D, cfg.num_heads, cfg.mlp_ratio, cfg.depth)  # blocks, norm
        # --- decoder (pretraining only): decoder_embed, mask_token, decoder_{pos_embed,blocks,norm,pred} ---
        self.build_decoder(D, Dd, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.decoder_depth,
                           cfg.patch_size**2 * cfg.in_chans, sincos_pos_embed_2d(Dd, grid))
        assert self.pos_embed.shape[1] == 1 + L
        self.init_weights()

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> "MAE":
        return cls(MAEConfig.from_dict(d))

    def init_embeddings(self) -> None:
        # As in MAE: the patch projection is initialised like a Linear layer (xavier on the
        # flattened kernel), the cls token N(0, .02); the rest: MAEBackbone.init_weights.
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)

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
        return take(x, ids_shuffle[:, :keep]), mask.to(x.dtype), ids_restore

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
        x = self.embed_patches(take(patches, ids_keep))  # [B, K, D]
        x = x + self.pos_embed[0, 1:].index_select(0, ids_keep.reshape(-1)).view_as(x)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)  # [B, 1+K, D]
        return self.norm(self.run_blocks(x, self.blocks))

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent [B, 1+K, D] -> decoded patch tokens [B, L, Dd] in image order (cls dropped)."""
        x = self.decoder_embed(latent)  # [B, 1+K, Dd]
        B, K1, Dd = x.shape
        L = ids_restore.shape[1]
        x_ = torch.cat([x[:, 1:], self.mask_token.expand(B, L + 1 - K1, -1)], dim=1)  # [B, L, Dd] shuffled
        x = torch.cat([x[:, :1], take(x_, ids_restore)], dim=1) + self.decoder_pos_embed  # [B, 1+L, Dd]
        return self.decoder_norm(self.run_blocks(x, self.decoder_blocks))[:, 1:]

    def loss_fn(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE over the given (masked) patches: pred, target [B, M, P] -> scalar (see masked_patch_loss)."""
        return masked_patch_loss(pred, target, self.cfg.norm_pix_loss)

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
            loss = self.loss_fn(self.decoder_pred(take(dec, ids_masked)), take(patches, ids_masked))
        else:  # mask_ratio 0: nothing to reconstruct
            loss = dec.sum() * 0.0
        return loss, (self.decoder_pred(dec) if full_pred else None), mask

    # ------------------------------------------------------------------ features
    def encode(self, imgs: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """All patches, no masking: [B, C, H, W] -> [B, D] after the final norm: pool "mean" =
        mean of the patch tokens, "cls" = the cls token."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = self.norm(self.run_blocks(torch.cat([cls, x], dim=1), self.blocks))
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        return x[:, 0] if pool == "cls" else x[:, 1:].mean(dim=1)

"""expMAE model invariants: masking keeps its count and restores, patchify, the loss against its
reference formula, the registry's config and encode; the video MAE's tube masking and clip rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from expmae.mae import MAE, MAEConfig, create_mae
from fixtures.mae_tiny import S, TINY, VTINY

torch.set_num_threads(1)


@pytest.mark.parametrize("L_side,ratio", [(4, 0.75), (7, 0.75), (4, 0.9), (7, 0.5)])
def test_masking_keeps_round_count_and_restore_inverts(L_side: int, ratio: float) -> None:
    L, B, D = L_side * L_side, 3, 5
    x = torch.randn(B, L, D)
    noise = torch.rand(B, L)
    kept, mask, ids_restore = MAE.random_masking(x, ratio, noise)
    K = round(L * (1 - ratio))
    assert kept.shape == (B, K, D)
    assert (mask.sum(1) == L - K).all()
    # kept tokens are exactly the unmasked ones, and ids_restore undoes the shuffle
    ids_shuffle = torch.argsort(noise, dim=1)
    for b in range(B):
        assert torch.equal(kept[b], x[b, ids_shuffle[b, :K]])
        assert set(ids_shuffle[b, :K].tolist()) == set(torch.nonzero(mask[b] == 0).flatten().tolist())
    shuffled = torch.gather(x, 1, ids_shuffle.unsqueeze(-1).expand(-1, -1, D))
    assert torch.equal(torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D)), x)
    # different samples get different masks
    assert not torch.equal(mask[0], mask[1])


def test_patchify_roundtrip_and_layout() -> None:
    m = MAE(MAEConfig(**TINY))
    imgs = torch.randn(2, 3, S, S)
    p = m.patchify(imgs)
    assert p.shape == (2, (S // 8) ** 2, 8 * 8 * 3)
    assert torch.equal(m.unpatchify(p), imgs)
    # patch 1 is the second patch of the first row, pixels in (row, col, channel) order
    assert torch.equal(p[0, 1].reshape(8, 8, 3), imgs[0, :, :8, 8:16].permute(1, 2, 0))


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_matches_reference_formula(norm_pix: bool) -> None:
    """The fast path (embed visible patches only, head on masked patches) equals the textbook MAE loss."""
    torch.manual_seed(0)
    m = MAE(MAEConfig(**{**TINY, "norm_pix_loss": norm_pix})).eval()
    imgs, noise = torch.randn(3, 3, S, S), torch.rand(3, (S // 8) ** 2)
    loss, pred, mask = m(imgs, noise=noise, full_pred=True)
    # reference: conv patch embedding of the whole image, then mask tokens; loss over all patches x mask
    x = m.patch_embed(imgs) + m.pos_embed[:, 1:]
    kept, mask_ref, ids_restore = MAE.random_masking(x, 0.75, noise)
    x = torch.cat([(m.cls_token + m.pos_embed[:, :1]).expand(3, -1, -1), kept], 1)
    for blk in m.blocks:
        x = blk(x)
    pred_ref = m.decoder_pred(m.forward_decoder(m.norm(x), ids_restore))
    target = m.patchify(imgs)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss_ref = (((pred_ref - target) ** 2).mean(-1) * mask_ref).sum() / mask_ref.sum()
    assert torch.equal(mask, mask_ref)
    torch.testing.assert_close(pred, pred_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)


def test_registry_config_and_encode() -> None:
    m = create_mae("mae_tiny", img_size=32, patch_size=8)
    assert (m.cfg.embed_dim, m.cfg.depth, m.cfg.num_heads) == (192, 12, 3)
    with pytest.raises(KeyError):
        create_mae("mae_giant")
    m2 = MAE.from_config({**TINY, "epochs": 5, "lr": 1.0})  # training keys are ignored
    z = m2.eval().encode(torch.randn(3, 3, S, S))
    assert z.shape == (3, 32) and torch.isfinite(z).all()
    assert all(k.startswith(("patch_embed", "cls_token", "blocks", "norm")) for k in m2.encoder_state_dict())
    assert "pos_embed" not in m2.state_dict()  # fixed sin-cos: recomputed, never stored


@pytest.mark.parametrize("ratio", [0.9, 0.75, 0.5])
def test_video_mae_tube_masking_and_patchify(ratio: float) -> None:
    from expmae.mae.video import VideoMAE, VideoMAEConfig

    m = VideoMAE(VideoMAEConfig.from_dict({**VTINY, "mask_ratio": ratio}))  # + mae_video schema defaults
    clips = torch.randn(3, 3, 4, S, S)
    tubes = m.patchify(clips)
    assert tubes.shape == (3, 2 * 16, 2 * 8 * 8 * 3) and torch.equal(m.unpatchify(tubes), clips)
    # tube (slot 1, row 0, col 1) holds frames 2-3, rows 0-7, cols 8-15
    assert torch.equal(tubes[0, 16 + 1].reshape(2, 8, 8, 3), clips[0, :, 2:4, :8, 8:16].permute(1, 2, 3, 0))
    noise = torch.rand(3, m.noise_len, generator=torch.Generator().manual_seed(1))
    loss, pred, mask = m(clips, noise=noise, full_pred=True)
    per_slot = mask.reshape(3, 2, 16)
    assert torch.equal(per_slot[:, 0], per_slot[:, 1])  # same spatial mask in every time slot
    assert (per_slot[:, 0].sum(1) == 16 - round(16 * (1 - ratio))).all()
    assert abs(mask.mean().item() - ratio) <= 1 / 16
    assert not torch.equal(mask[0], mask[1])  # per-clip masks
    assert pred is not None and pred.shape == tubes.shape
    loss.backward()
    assert torch.isfinite(loss) and m.tube_embed.weight.grad is not None
    assert m.eval().encode(clips).shape == (3, 32)
    assert all(k.startswith(("tube_embed", "blocks", "norm")) for k in m.encoder_state_dict())


def test_clip_rows_resample_and_pad() -> None:
    from expmae.mae.clips import build_clip_samples, clip_rows, video_clips

    assert clip_rows(np.array([7]), 4).tolist() == [7, 7, 7, 7]  # one crop: a still clip
    short = clip_rows(np.array([3, 4, 5]), 8)  # fewer crops than frames: repeat in time order, all used
    assert len(short) == 8 and set(short) == {3, 4, 5} and (np.diff(short) >= 0).all()
    assert clip_rows(np.arange(20), 4).tolist() == [0, 6, 13, 19]  # more crops: even spread, ends kept
    frames = pd.DataFrame({"name": ["b", "a", "b", "a"], "frame_index": [5, 2, 1, 0], "crop_row": [0, 1, 2, 3]})
    names, rows = video_clips(frames, 2)
    assert names == ["a", "b"] and rows.tolist() == [[3, 1], [2, 0]]  # sorted by frame_index, not row order
    s = build_clip_samples([frames, frames.iloc[:0]], 2)
    assert s.shape == (2, 3) and (s[:, 0] == 0).all()

"""mae.init / mae_video.init: public checkpoint layouts -> our encoders give the same tokens, position
tables are interpolated, and every mismatch that cannot be mapped is refused naming the key."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from expmae.mae.checkpoint import load_encoder, save_encoder
from expmae.mae.init import apply_init
from expmae.mae.model import MAE, MAEConfig, sincos_pos_embed_2d
from expmae.mae.video import VideoMAE, VideoMAEConfig

S = 32  # crop side; patch 8 -> a 4x4 grid
TOL = 1e-5


def build(cfg: MAEConfig) -> tuple[MAE, dict]:
    model = (VideoMAE if isinstance(cfg, VideoMAEConfig) else MAE)(cfg)
    return model, apply_init(model, cfg)


def vit_mae_folder(tmp_path, **kw):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    torch.manual_seed(0)
    c = ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                     decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                     decoder_intermediate_size=128, image_size=S, patch_size=8, layer_norm_eps=1e-6, **kw)
    m = ViTMAEForPreTraining(c).eval()
    m.save_pretrained(tmp_path / "vitmae")
    return m, tmp_path / "vitmae"


def test_transformers_vit_mae_same_tokens(tmp_path) -> None:
    theirs, folder = vit_mae_folder(tmp_path)
    cfg = MAEConfig.from_dict({"init": str(folder), "img_size": S})  # widths, heads: from config.json
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size, cfg.decoder_dim) == (32, 2, 2, 8, 32)
    ours, rep = build(cfg)
    assert rep["format"] == "transformers-vit_mae" and rep["fresh"] == [] and len(rep["sha256"]) == 64
    imgs, noise = torch.randn(2, 3, S, S), torch.rand(2, 16)
    with torch.no_grad():
        ref = theirs.vit(imgs, noise=noise).last_hidden_state  # [B, 1+K, D], K = 4
        got = ours.eval().forward_encoder(ours.patchify(imgs), torch.argsort(noise, dim=1)[:, :4])
    assert got.shape == ref.shape and (got - ref).abs().max() <= TOL


def test_transformers_videomae_same_tokens(tmp_path) -> None:
    from transformers import VideoMAEConfig as HFConfig, VideoMAEForPreTraining

    torch.manual_seed(0)
    c = HFConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                 decoder_intermediate_size=128, image_size=S, patch_size=8, num_frames=4, tubelet_size=2,
                 use_mean_pooling=False, layer_norm_eps=1e-6)
    theirs = VideoMAEForPreTraining(c).eval()
    with torch.no_grad():  # random q/v biases, so the mapping of VideoMAE's q/v-only biases is checked
        for layer in theirs.videomae.encoder.layer:
            layer.attention.attention.query.bias.normal_()
            layer.attention.attention.value.bias.normal_()
    theirs.save_pretrained(tmp_path / "videomae")
    cfg = VideoMAEConfig.from_dict({"init": str(tmp_path / "videomae"), "img_size": S, "num_frames": 4})
    assert (cfg.embed_dim, cfg.tubelet, cfg.patch_size, cfg.num_heads) == (32, 2, 8, 2)
    ours, rep = build(cfg)
    assert rep["format"] == "transformers-videomae" and rep["fresh"] == []
    assert any("q/v-only" in n for n in rep["notes"])
    clips = torch.randn(2, 3, 4, S, S)  # ours [B, C, T, H, W]; theirs [B, T, C, H, W]
    masked = torch.zeros(2, 32, dtype=torch.bool)
    keep = torch.stack([torch.randperm(16)[:4] for _ in range(2)])
    for t in range(2):  # tube masking: the same spatial positions in both time slots
        masked[:, t * 16:(t + 1) * 16] = True
        masked.scatter_(1, keep + t * 16, False)
    with torch.no_grad():
        ref = theirs.videomae(clips.transpose(1, 2), bool_masked_pos=masked).last_hidden_state  # [B, K, D]
        ids_keep = torch.stack([torch.nonzero(~row).squeeze(1) for row in masked])  # clip order, as theirs
        got = ours.eval().forward_encoder(ours.patchify(clips), ids_keep)
    assert got.shape == ref.shape and (got - ref).abs().max() <= TOL


def test_timm_layout_same_tokens_and_stored_pos_table(tmp_path) -> None:
    import timm

    from expmae.npnet import MAEImageEncoder

    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(img_size=S, patch_size=8, embed_dim=32, depth=2,
                                                           num_heads=2, num_classes=0).eval()
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    cfg = MAEConfig.from_dict({"init": str(tmp_path / "vit.safetensors"), "img_size": S, "num_heads": 2})
    ours, rep = build(cfg)
    assert rep["format"] == "timm" and "decoder_blocks" in rep["fresh"] and "blocks" in rep["mapped"]
    assert rep["interpolated"]  # timm's learned table is not sin-cos: used as it is and stored
    x = torch.randn(3, 3, S, S)
    with torch.no_grad():
        ref = vit.forward_features(x)  # [B, 1+L, D] after the final norm
        assert (ours.eval().encode(x, pool="cls") - ref[:, 0]).abs().max() <= TOL
        assert (ours.encode(x) - ref[:, 1:].mean(1)).abs().max() <= TOL
    save_encoder(tmp_path / "enc.safetensors", ours, {"init": rep})
    back, _ = load_encoder(tmp_path / "enc.safetensors")
    crops = np.random.default_rng(0).integers(0, 256, (2, S, S, 3), dtype=np.uint8)
    from expmae.imaging import to_tensor

    with torch.no_grad():
        z = back.encode(to_tensor(torch.from_numpy(crops), S)).numpy()
    np.testing.assert_allclose(MAEImageEncoder.from_file(tmp_path / "enc.safetensors").encode(crops), z, atol=1e-4)


def fb_checkpoint(tmp_path, decoder: bool, img: int = S, name: str = "fb.pth") -> tuple[MAE, str]:
    torch.manual_seed(1)
    src = MAE(MAEConfig.from_dict({"img_size": img, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2,
                                   "decoder_dim": 32, "decoder_depth": 1}))
    sd = {k: v for k, v in src.state_dict().items() if decoder or k.startswith(src.encoder_prefixes)}
    sd["pos_embed"] = src.pos_embed.clone()  # facebookresearch/mae stores its fixed tables
    if decoder:
        sd["decoder_pos_embed"] = src.decoder_pos_embed.clone()
    torch.save({"model": sd}, tmp_path / name)
    return src, str(tmp_path / name)


@pytest.mark.parametrize("decoder", [False, True])
def test_facebookresearch_layout(tmp_path, decoder: bool) -> None:
    src, path = fb_checkpoint(tmp_path, decoder)
    cfg = MAEConfig.from_dict({"init": path, "img_size": S, "num_heads": 2, "decoder_dim": 32, "decoder_depth": 1})
    ours, rep = build(cfg)
    assert rep["format"] == "facebookresearch-mae" and not rep["interpolated"]
    assert ("decoder_blocks" in rep["fresh"]) is not decoder
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        assert (ours.eval().encode(x) - src.eval().encode(x)).abs().max() <= TOL
        if decoder:
            noise = torch.rand(2, 16)
            assert (ours(x, noise=noise)[0] - src(x, noise=noise)[0]).abs() <= TOL


def test_pos_embed_interpolation(tmp_path) -> None:
    """A 64 px checkpoint (8x8 grid) into a 32 px model (4x4): bicubic, cls row kept."""
    src, path = fb_checkpoint(tmp_path, False, img=64)
    ours, rep = build(MAEConfig.from_dict({"init": path, "img_size": S, "num_heads": 2}))
    assert rep["interpolated"] == ["pos_embed: 8x8 -> 4x4 (bicubic)"]
    grid = src.pos_embed[:, 1:].reshape(1, 8, 8, 32).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(ours.pos_embed[0, 1:], want.permute(0, 2, 3, 1).reshape(16, 32))
    torch.testing.assert_close(ours.pos_embed[0, 0], src.pos_embed[0, 0])
    assert "pos_embed" in ours.encoder_state_dict()  # stored: the encoder file carries it


def videomae_pth(tmp_path, name: str = "checkpoint-299.pth") -> tuple[VideoMAE, str]:
    """An MCG-NJU VideoMAE pretraining checkpoint written from one of our models (q/v biases only)."""
    torch.manual_seed(2)
    src = VideoMAE(VideoMAEConfig.from_dict({"img_size": S, "patch_size": 8, "num_frames": 4, "embed_dim": 32,
                                             "depth": 2, "num_heads": 2, "decoder_dim": 32, "decoder_depth": 1}))
    sd: dict[str, torch.Tensor] = {}
    for k, v in src.state_dict().items():
        if k == "tube_embed.weight":  # Linear on (t, p, q, c) tubes -> Conv3d [D, C, t, p, p]
            sd["encoder.patch_embed.proj.weight"] = v.reshape(32, 2, 8, 8, 3).permute(0, 4, 1, 2, 3).contiguous()
        elif k == "tube_embed.bias":
            sd["encoder.patch_embed.proj.bias"] = v
        elif k.endswith("attn.qkv.bias"):
            with torch.no_grad():
                v[32:64] = 0  # VideoMAE has no key bias
            pre = ("encoder." if k.startswith("blocks") else "decoder.") + k.removeprefix("decoder_")[:-len("qkv.bias")]
            sd[pre + "q_bias"], sd[pre + "v_bias"] = v[:32].clone(), v[64:].clone()
        elif k.startswith(("blocks.", "norm.")):
            sd["encoder." + k] = v
        elif k.startswith("decoder_blocks."):
            sd["decoder." + k.removeprefix("decoder_")] = v
        else:
            sd[{"decoder_embed.weight": "encoder_to_decoder.weight", "decoder_norm.weight": "decoder.norm.weight",
                "decoder_norm.bias": "decoder.norm.bias", "decoder_pred.weight": "decoder.head.weight",
                "decoder_pred.bias": "decoder.head.bias"}.get(k, k)] = v
    args = argparse.Namespace(model="pretrain_videomae_small_patch16_224", num_frames=4, decoder_depth=1)
    torch.save({"model": sd, "epoch": 299, "args": args}, tmp_path / name)
    return src, str(tmp_path / name)


def test_videomae_pth(tmp_path) -> None:
    src, path = videomae_pth(tmp_path)
    cfg = VideoMAEConfig.from_dict({"init": path, "img_size": S, "num_frames": 4, "num_heads": 2})
    ours, rep = build(cfg)
    assert rep["format"] == "videomae-pth" and rep["fresh"] == [] and rep["n_ignored"] == 0
    clips, noise = torch.randn(2, 3, 4, S, S), torch.rand(2, 16)
    with torch.no_grad():
        assert (ours.eval().encode(clips) - src.eval().encode(clips)).abs().max() <= TOL
        assert (ours(clips, noise=noise)[0] - src(clips, noise=noise)[0]).abs() <= TOL


def test_refusals_name_the_key(tmp_path) -> None:
    _, fb = fb_checkpoint(tmp_path, False)
    _, vid = videomae_pth(tmp_path)
    base = {"init": fb, "img_size": S, "num_heads": 2}
    cases = [({**base, "patch_size": 4}, r"mae\.patch_size: 4.*patch_size 8.*\[32, 3, 8, 8\]"),
             ({**base, "embed_dim": 64}, r"mae\.embed_dim: 64.*embed_dim 32"),
             ({**base, "depth": 3}, r"mae\.depth: 3.*depth 2"),
             ({**base, "size": "base"}, r"mae\.size: base has patch_size 16|mae\.size: base has embed_dim 768"),
             ({"init": fb, "img_size": S}, r"mae\.num_heads: .*matches no named size"),
             ({**base, "init": vid}, r"mae\.init: .* is a video checkpoint"),
             ({**base, "init": str(tmp_path / "nope.pth")}, r"mae\.init: .*not found")]
    for params, msg in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=msg):
            MAEConfig.from_dict(params)
    sd = torch.load(fb, weights_only=True)["model"]
    gray = {**sd, "patch_embed.proj.weight": sd["patch_embed.proj.weight"][:, :1]}
    torch.save({"model": gray}, tmp_path / "gray.pth")
    with pytest.raises(ValueError, match=r"mae\.init: .*\[32, 1, 8, 8\] takes 1 channels"):
        MAEConfig.from_dict({**base, "init": str(tmp_path / "gray.pth")})
    torch.save({"model": {k: v for k, v in sd.items() if k != "norm.weight"}}, tmp_path / "nonorm.pth")
    cfg = MAEConfig.from_dict({**base, "init": str(tmp_path / "nonorm.pth")})
    with pytest.raises(ValueError, match=r"mae\.init: .*lacks encoder weights \['norm\.weight'\]"):
        build(cfg)
    with pytest.raises(ValueError, match=r"mae_video\.patch_size: 4.*patch_size 8"):  # inflation checks widths too
        VideoMAEConfig.from_dict({"init": fb, "img_size": S, "num_frames": 4, "num_heads": 2, "patch_size": 4})


@pytest.mark.parametrize("fmt", ["facebookresearch", "expmae"])
def test_video_mae_inflated_from_an_image_mae(tmp_path, fmt: str) -> None:
    """mae_video.init = an image MAE checkpoint: a still clip gives, in every time slot, the image
    encoder's tokens for that frame without its cls token (blocks copied, kernel / tubelet per frame,
    the image position table repeated over time); cls and the image decoder are dropped."""
    src, path = fb_checkpoint(tmp_path, decoder=True, img=64)  # an 8x8 table -> the model's 4x4
    if fmt == "expmae":
        path = str(tmp_path / "image_encoder.safetensors")
        save_encoder(path, src, {"seed": 1})
    cfg = VideoMAEConfig.from_dict({"init": path, "img_size": S, "num_frames": 4, "num_heads": 2})
    assert (cfg.embed_dim, cfg.depth, cfg.patch_size, cfg.tubelet) == (32, 2, 8, 2)  # from the image + video size
    ours, rep = build(cfg)
    assert rep["format"].endswith("(image, inflated)") and "decoder_blocks" in rep["fresh"]
    assert any("cls_token" in n for n in rep["notes"]) and "repeated over 2 time slots" in rep["interpolated"][0]
    img = torch.randn(2, 3, S, S)
    clip = img[:, :, None].expand(-1, -1, 4, -1, -1).contiguous()  # [B, C, T, H, W], a still clip
    if fmt == "facebookresearch":  # a stored table: interpolated as mae.init does
        grid = torch.nn.functional.interpolate(src.pos_embed[:, 1:].reshape(1, 8, 8, 32).permute(0, 3, 1, 2), (4, 4),
                                               mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 16, 32)
    else:  # our encoder file without a stored table: the image MAE's fixed sin-cos at the model's grid
        grid = sincos_pos_embed_2d(32, 4)[:, 1:]
    with torch.no_grad():
        want = src.eval().norm(src.run_blocks(src.embed_patches(src.patchify(img)) + grid, src.blocks))  # no cls
        x = ours.eval().tube_embed(ours.patchify(clip)) + ours.pos_embed
        got = ours.norm(ours.run_blocks(x, ours.blocks)).reshape(2, 2, 16, 32)  # [B, T', N, D]
        for t in range(2):
            assert (got[:, t] - want).abs().max() <= TOL
        ours(clip)  # and it trains: a forward with masking runs


@pytest.mark.slow
def test_demo_writes_public_format_init_checkpoints(tmp_path) -> None:
    """The demo's generic checkpoints load through mae.init / mae_video.init (as the demo preset
    uses them): facebookresearch layout at 128 px -> 112 px crops (interpolated), VideoMAE .pth."""
    import json

    from expmae.demo.mae_init import write_init

    paths = write_init(tmp_path, seed=0, image_steps=2, video_steps=2)
    stamp = (tmp_path / "init" / "init.json").stat().st_mtime_ns
    assert write_init(tmp_path, seed=0, image_steps=2, video_steps=2) == paths  # kept, not rewritten
    assert (tmp_path / "init" / "init.json").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "init" / "init.json").read_text())["seed"] == 0
    cfg = MAEConfig.from_dict({"init": str(paths["image"]), "img_size": 112})
    _, rep = build(cfg)
    assert rep["format"] == "facebookresearch-mae" and rep["interpolated"] == ["pos_embed: 8x8 -> 7x7 (bicubic)"]
    vcfg = VideoMAEConfig.from_dict({"init": str(paths["video"]), "img_size": 64, "num_frames": 16})
    assert (vcfg.embed_dim, vcfg.depth, vcfg.num_heads, vcfg.decoder_num_heads) == (128, 4, 4, 3)  # micro
    _, vrep = build(vcfg)
    assert vrep["format"] == "videomae-pth" and vrep["fresh"] == [] and vrep["n_ignored"] == 0


def test_an_expmae_encoder_init_is_verified_before_use(tmp_path) -> None:
    """mae.init naming an expmae encoder file (its sha256 recorded when written): one flipped byte is refused,
    naming the key and the file, before any weight is used (it was mapped silently)."""
    torch.manual_seed(0)
    src = MAE(MAEConfig.from_dict({"img_size": S, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}))
    path = tmp_path / "enc.safetensors"
    save_encoder(path, src, {"seed": 0})
    params = {"init": str(path), "img_size": S, "num_heads": 2}
    build(MAEConfig.from_dict(params))  # intact: used
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0x01  # a bit in the last tensor's data
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"mae\.init: .*bad\.safetensors: .*refused"):
        build(MAEConfig.from_dict({**params, "init": str(bad)}))

"""The demo's own public-format MAE checkpoints: the paper's "ImageNet MAE -> continued on faces"
recipe in miniature, so `mae.init` / `mae_video.init` run in every `make run`.

    python -m expmae.demo --out data/demo     # also writes data/demo/init/*.pth (a few seconds)

A short generic MAE pretraining (100 steps each) on non-face photographs that scikit-image ships
(coffee, a cat, a rocket, galaxies, cells, textures; no face), random resized crops and flips:
  image  micro ViT at 128 px (8x8 patches): saved like facebookresearch/mae's
         mae_pretrain_vit_*.pth ({"model": encoder + pos_embed}, encoder only), so the workflow's
         112 px face crops exercise the position-table interpolation (8x8 -> 7x7) and a fresh decoder;
  video  micro VideoMAE at 64 px, 16 frames: clips are slow random pans / zooms over the same
         photographs, 75 % tube masking (a 4x4 grid keeps 4 positions; 90 % would keep 2); saved
         like MCG-NJU VideoMAE's checkpoint-*.pth (encoder.* / decoder.*,
         q/v-only attention biases, {"model", "epoch", "args"}).
Deterministic for a seed (init.json records seed, steps, losses, seconds; an existing set for the
same seed and steps is kept). CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "coins", "moon",
          "clock", "colorwheel", "brick", "grass", "gravel", "cell")
IMAGE_FILE, VIDEO_FILE = "mae_pretrain_vit_micro.pth", "videomae_micro_checkpoint.pth"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def photos() -> list[torch.Tensor]:
    """The generic photographs as float [3, H, W] in [0, 1] (gray ones repeated over RGB)."""
    from skimage import data

    out = []
    for name in IMAGES:
        im = np.asarray(getattr(data, name)(), dtype=np.float32)
        im = im / 255.0 if im.max() > 1.0 else im
        im = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im[..., :3]
        out.append(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1))
    return out


def random_box(g: torch.Generator, H: int, W: int, scale: tuple[float, float]) -> tuple[int, int, int]:
    """A square box (y, x, side) covering `scale` of the shorter side's square."""
    s = min(H, W) * math.sqrt(float(torch.empty(1).uniform_(*scale, generator=g)))
    side = max(8, int(s))
    y = int(torch.randint(0, H - side + 1, (1,), generator=g))
    x = int(torch.randint(0, W - side + 1, (1,), generator=g))
    return y, x, side


def crop(im: torch.Tensor, y: float, x: float, side: float, size: int) -> torch.Tensor:
    c = im[:, int(y):int(y) + int(side), int(x):int(x) + int(side)]
    return F.interpolate(c[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]


def image_batch(ims: list[torch.Tensor], g: torch.Generator, n: int, size: int) -> torch.Tensor:
    """n random resized crops (scale 0.1-1, as MAE's 0.2-1 on smaller photos) -> [n, 3, S, S]."""
    out = []
    for _ in range(n):
        im = ims[int(torch.randint(0, len(ims), (1,), generator=g))]
        out.append(crop(im, *random_box(g, im.shape[1], im.shape[2], (0.1, 1.0)), size))
    return (torch.stack(out) - MEAN) / STD


def clip_batch(ims: list[torch.Tensor], g: torch.Generator, n: int, size: int, frames: int) -> torch.Tensor:
    """n clips: a box moving and zooming linearly over a photograph -> [n, 3, T, S, S]."""
    out = []
    for _ in range(n):
        im = ims[int(torch.randint(0, len(ims), (1,), generator=g))]
        H, W = im.shape[1:]
        a, b = random_box(g, H, W, (0.1, 0.6)), random_box(g, H, W, (0.1, 0.6))
        ts = torch.linspace(0, 1, frames) * float(torch.empty(1).uniform_(0.05, 0.3, generator=g))  # slow motion
        fr = []
        for t in ts.tolist():
            side = a[2] + t * (b[2] - a[2])
            y, x = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
            fr.append(crop(im, min(y, H - side), min(x, W - side), side, size))
        out.append(((torch.stack(fr) - MEAN) / STD).transpose(0, 1))  # [3, T, S, S]
    return torch.stack(out)


def pretrain(model: torch.nn.Module, bank: torch.Tensor, batch: int, steps: int, lr: float, seed: int) -> list[float]:
    """AdamW (0.9, 0.95), wd 0.05 on matrices, linear warmup then cosine (MAE's recipe, short) on
    random batches of a precomputed bank of crops / clips (making them costs more than a step)."""
    from expmae.mae.pretrain import param_groups

    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=lr, betas=(0.9, 0.95))
    warm, losses = max(1, steps // 10), []
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for grp in opt.param_groups:
            grp["lr"] = lr * f
        x = bank[torch.randint(0, len(bank), (batch,), generator=g)]
        if float(torch.rand(1, generator=g)) < 0.5:
            x = x.flip(-1)
        loss = model(x, noise=torch.rand(batch, model.noise_len, generator=g))[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def videomae_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our VideoMAE state -> MCG-NJU VideoMAE pretraining keys. Its attention has no key bias; a
    key bias adds the same q.b_k to every logit of a query, which softmax ignores: dropping it is exact."""
    cfg = model.cfg
    D = cfg.embed_dim
    sd: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        v = v.detach().clone()
        enc = not k.startswith(("decoder_", "mask_token"))
        pre = "encoder." if enc else "decoder."
        name = k.removeprefix("decoder_") if k.startswith("decoder_blocks") else k
        if k == "tube_embed.weight":  # Linear on (t, p, q, c) tubes -> Conv3d [D, C, t, p, p]
            sd["encoder.patch_embed.proj.weight"] = v.reshape(D, cfg.tubelet, cfg.patch_size, cfg.patch_size,
                                                              3).permute(0, 4, 1, 2, 3).contiguous()
        elif k == "tube_embed.bias":
            sd["encoder.patch_embed.proj.bias"] = v
        elif k.endswith("attn.qkv.bias"):
            d = v.shape[0] // 3
            base = pre + name[: -len("qkv.bias")]
            sd[base + "q_bias"], sd[base + "v_bias"] = v[:d].clone(), v[2 * d:].clone()
        elif k in ("decoder_embed.weight", "mask_token"):
            sd["encoder_to_decoder.weight" if k == "decoder_embed.weight" else k] = v
        elif k.startswith(("decoder_norm", "decoder_pred")):
            sd["decoder." + ("norm" if k.startswith("decoder_norm") else "head") + k[k.index("."):]] = v
        else:
            sd[pre + name] = v
    return sd


def write_init(out: str | Path, seed: int = 0, image_steps: int = 100, video_steps: int = 100) -> dict[str, Path]:
    """Write <out>/init/{IMAGE_FILE, VIDEO_FILE} -> their paths."""
    from expmae.io import atomic_path, write_json
    from expmae.mae.model import MAE, MAEConfig
    from expmae.mae.video import VideoMAE, VideoMAEConfig

    folder = Path(out) / "init"
    paths = {"image": folder / IMAGE_FILE, "video": folder / VIDEO_FILE}
    stamp = {"seed": seed, "image_steps": image_steps, "video_steps": video_steps}
    done = folder / "init.json"  # a pure function of the seed and steps: written once
    if done.exists() and all(p.exists() for p in paths.values()) and \
            {k: v for k, v in json.loads(done.read_text()).items() if k in stamp} == stamp:
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small crops: one thread is faster than two fighting over them
    ims, g = photos(), torch.Generator().manual_seed(seed)
    banks = image_batch(ims, g, 256, 128), clip_batch(ims, g, 48, 64, 16)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    img = MAE(MAEConfig.from_dict({"size": "micro", "img_size": 128}))
    img_loss = pretrain(img, banks[0], 32, image_steps, 1.5e-3, seed)
    enc = {**img.encoder_state_dict(), "pos_embed": img.pos_embed.clone()}  # MAE stores its fixed table
    torch.manual_seed(seed)
    vid = VideoMAE(VideoMAEConfig.from_dict({"size": "micro", "img_size": 64, "num_frames": 16, "mask_ratio": 0.75}))
    vid_loss = pretrain(vid, banks[1], 8, video_steps, 1.5e-3, seed + 1)
    args = argparse.Namespace(model="pretrain_videomae_micro_patch16_64", num_frames=16, tubelet_size=2,
                              input_size=64, mask_ratio=0.9, decoder_depth=vid.cfg.decoder_depth)
    for path, obj in ((paths["image"], {"model": enc}),
                      (paths["video"], {"model": videomae_layout(vid), "epoch": video_steps, "args": args})):
        with atomic_path(path, suffix=".pth") as tmp:
            torch.save(obj, tmp)
    write_json(done, {**stamp, "images": list(IMAGES), "seconds": round(time.perf_counter() - t0, 1),
                      "loss": {"image": [img_loss[0], img_loss[-1]], "video": [vid_loss[0], vid_loss[-1]]}})
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description="write the demo's generic MAE / VideoMAE init checkpoints")
    ap.add_argument("--out", default="data/demo")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    paths = write_init(a.out, a.seed)
    print(f"wrote {', '.join(map(str, paths.values()))} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

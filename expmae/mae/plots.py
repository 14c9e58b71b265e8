"""Diagnostic figures of MAE pretraining: the loss curve and face reconstructions."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from expmae.io import atomic_path  # noqa: E402

from expmae.imaging import denormalize, to_tensor  # noqa: E402
from .model import MAE  # noqa: E402

if TYPE_CHECKING:
    from .video import VideoMAE


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def loss_plot(path: str | Path, step_losses: list[float], steps_per_epoch: int) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if step_losses:
        ax.plot(np.arange(1, len(step_losses) + 1), step_losses, lw=0.8, alpha=0.6, label="step")
        if steps_per_epoch:
            n_ep = len(step_losses) // steps_per_epoch
            means = [np.mean(step_losses[e * steps_per_epoch : (e + 1) * steps_per_epoch]) for e in range(n_ep)]
            ax.plot(np.arange(1, n_ep + 1) * steps_per_epoch, means, "o-", label="epoch mean")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no training steps (no face crops)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("masked-patch MSE (normalised pixels)")
    ax.set_title("MAE pretraining loss")
    _save(fig, path)


@torch.no_grad()
def reconstruct(model: MAE, crops: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [k, S, S, 3] -> (original, masked, reconstruction), each float [k, H, W, 3] in [0, 1].

    Visible patches are pasted from the input; with norm_pix_loss the predicted (normalised)
    masked patches are mapped back with each target patch's own mean/std, as in the MAE demo.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = to_tensor(crops, model.cfg.img_size).to(device)  # [k, 3, H, W]
    noise = torch.rand(x.shape[0], model.cfg.num_patches, generator=torch.Generator().manual_seed(seed)).to(device)
    _, pred, mask = model(x, noise=noise, full_pred=True)  # [k, L, p*p*3], [k, L]
    pred = pred.float()
    target = model.patchify(x)
    if model.cfg.norm_pix_loss:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    m = mask.unsqueeze(-1)  # [k, L, 1], 1 = masked
    masked = model.unpatchify(target * (1 - m))
    recon = model.unpatchify(target * (1 - m) + pred * m)
    model.train(was_training)
    to_np = lambda t: denormalize(t).cpu().numpy()  # noqa: E731
    masked_img = to_np(masked)
    masked_img[model.unpatchify(m.expand_as(target)).permute(0, 2, 3, 1).cpu().numpy() > 0.5] = 0.5  # grey
    return to_np(x), masked_img, to_np(recon)


def _placeholder(path: str | Path, text: str) -> None:
    """A small PNG saying why there is no figure (the rule's output must still exist)."""
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    _save(fig, path)


def recon_plot(path: str | Path, model: MAE, crops: torch.Tensor | None, seed: int) -> None:
    if crops is None or len(crops) == 0:
        return _placeholder(path, "no face crops to reconstruct")
    rows = reconstruct(model, crops, seed)
    k = len(crops)
    fig, axes = plt.subplots(3, k, figsize=(1.4 * k, 4.4), squeeze=False)
    for r, (imgs, title) in enumerate(zip(rows, ["original", "masked", "reconstructed"])):
        for c in range(k):
            axes[r, c].imshow(imgs[c])
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(title)
    _save(fig, path)


@torch.no_grad()
def reconstruct_clips(model: "VideoMAE", clips: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [k, T, S, S, 3] -> (original, masked, reconstruction), each float [k, T, H, W, 3] in [0, 1]."""
    from .clips import clip_tensor

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = clip_tensor(clips.numpy(), model.cfg.img_size).to(device)  # [k, 3, T, H, W]
    noise = torch.rand(x.shape[0], model.noise_len, generator=torch.Generator().manual_seed(seed)).to(device)
    _, pred, mask = model(x, noise=noise, full_pred=True)  # [k, L, P], [k, L]
    pred, target = pred.float(), model.patchify(x)
    if model.cfg.norm_pix_loss:  # back to pixels with each target tube's own mean/std
        pred = pred * (target.var(-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(-1, keepdim=True)
    m = mask.unsqueeze(-1)  # [k, L, 1], 1 = masked

    def frames(t: torch.Tensor) -> np.ndarray:  # [k, 3, T, H, W] -> [k, T, H, W, 3] in [0, 1]
        k, _, T = t.shape[:3]
        return denormalize(t.transpose(1, 2).flatten(0, 1)).reshape(k, T, *t.shape[3:], 3).cpu().numpy()

    masked = frames(model.unpatchify(target * (1 - m)))
    grey = model.unpatchify(m.expand_as(target))[:, 0].cpu().numpy() > 0.5  # [k, T, H, W]
    masked[grey] = 0.5
    recon = frames(model.unpatchify(target * (1 - m) + pred * m))
    model.train(was_training)
    return frames(x), masked, recon


def video_recon_plot(path: str | Path, model: "VideoMAE", clips: torch.Tensor | None, seed: int, n_frames: int = 4) -> None:
    """Per clip three rows (original / tube-masked / reconstructed) of n_frames frames spread over the clip."""
    if clips is None or len(clips) == 0:
        return _placeholder(path, "no face clips to reconstruct")
    rows = reconstruct_clips(model, clips, seed)
    k, T = rows[0].shape[:2]
    ts = np.unique(np.linspace(0, T - 1, min(n_frames, T)).round().astype(int))
    fig, axes = plt.subplots(3 * k, len(ts), figsize=(1.4 * len(ts), 1.45 * 3 * k), squeeze=False)
    for c in range(k):
        for r, (imgs, title) in enumerate(zip(rows, ["original", "masked", "recon"])):
            ax_row = axes[3 * c + r]
            for j, t in enumerate(ts):
                ax_row[j].imshow(imgs[c, t])
                ax_row[j].set_xticks([])
                ax_row[j].set_yticks([])
                if c == 0 and r == 0:
                    ax_row[j].set_title(f"frame {t}", fontsize=8)
            ax_row[0].set_ylabel(f"clip {c} {title}", fontsize=8)
    _save(fig, path)


def probe_plot(path: str | Path, res: dict) -> None:
    """Bar chart of the linear-probe F1: pretrained vs random-init encoder (mean +- std over fold shuffles)."""
    fig, ax = plt.subplots(figsize=(4, 3))
    tags = ["pretrained", "random_init"]
    f1 = [res.get(t, {}).get("f1") for t in tags]
    if any(v is None for v in f1):
        ax.axis("off")
        ax.text(0.5, 0.5, "probe not computed:\n" + str(res.get("pretrained", {}).get("error", "")),
                ha="center", va="center", wrap=True, fontsize=8)
    else:
        err = [res[t]["f1_std"] for t in tags]
        ax.bar(["pretrained", "random init"], f1, yerr=err, color=["tab:blue", "tab:grey"], capsize=4)
        for i, (v, e) in enumerate(zip(f1, err)):
            ax.text(i, v + e + 0.01, f"{v:.3f}", ha="center", va="bottom")
        ax.set_ylim(0, min(1.0, max(f1) + max(err) + 0.12))
        ax.set_ylabel("weighted F1 (out of fold)")
    ax.set_title(f"{res.get('kind', 'image')} MAE linear probe, {res.get('n_videos', 0)} labeled videos", fontsize=9)
    _save(fig, path)

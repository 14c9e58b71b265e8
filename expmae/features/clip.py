"""open_clip encoders: the image tower on face crops and the text tower on transcripts.

`model` is a local folder (open_clip_config.json + weights, loaded as local-dir:), an
'hf-hub:org/repo' id already in the local cache, or a built-in architecture name with
`pretrained` = a local weights file (or a tag whose weights are already cached).
Features are the L2-normalised joint-space embeddings (dim = the model's embed_dim).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from expmae.imaging import to_tensor

from .registry import Extractor, register, resolve_model


def load_open_clip(p: dict[str, Any], key: str, device: str) -> tuple[Any, str]:
    """-> (open_clip model in eval mode on device, the open_clip model name used)."""
    import open_clip

    model, pretrained = str(p["model"]), str(p.get("pretrained") or "")
    if model.startswith("hf-hub:"):
        name = f"local-dir:{resolve_model(model[len('hf-hub:'):], f'{key}.model')}"
    elif model.startswith(("/", ".", "~", "local-dir:")):
        name = f"local-dir:{resolve_model(model.removeprefix('local-dir:'), f'{key}.model')}"
    else:  # built-in architecture name
        name = model
        if pretrained and ("/" in pretrained or pretrained.endswith((".bin", ".pt", ".safetensors"))):
            pretrained = str(resolve_model(pretrained, f"{key}.pretrained", kind="weights file"))
        elif not pretrained and not p.get("random_init"):
            raise SystemExit(f"config key {key}.pretrained: give a local weights file for {model!r} "
                             "(or set random_init: true for a smoke test)")
    try:
        m = open_clip.create_model(name, pretrained=pretrained or None, device=device)
    except Exception as err:  # noqa: BLE001 — a download attempt offline, a bad config: one clear message
        raise SystemExit(f"config key {key}.model: cannot load open_clip model {model!r} offline "
                         f"({type(err).__name__}: {str(err)[:200]}). Point {key}.model at a local folder "
                         f"(or {key}.pretrained at a local weights file).") from None
    return m.eval(), name


@register("clip_image", model="ViT-B-32")
class ClipImage(Extractor):
    """open_clip image encoder on face crops, mean over a video's frames."""

    modality = "visual"
    needs = "face crops"
    dims = "embed_dim"
    gpu = True
    defaults: dict[str, Any] = {"pretrained": "", "batch_size": 128, "cpu_batch_size": 8}  # see run.batch_size

    def load(self) -> None:
        import torch

        self.model, self.name = load_open_clip(self.p, self.key, self.device)
        v = self.model.visual
        size = v.image_size
        self.size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = getattr(v, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        self.std = getattr(v, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        with torch.inference_mode():
            self.dim = int(self.model.encode_image(torch.zeros(1, 3, self.size, self.size, device=self.device)).shape[-1])

    def encode(self, items: np.ndarray) -> np.ndarray:
        import torch

        x = to_tensor(items, self.size, self.mean, self.std, self.device)     # [B, 3, H, W]
        with torch.inference_mode(), self.autocast():
            z = self.model.encode_image(x, normalize=True)                     # [B, D]
        return z.float().cpu().numpy()


@register("clip_text", model="ViT-B-32")
class ClipText(Extractor):
    """open_clip text encoder on transcripts (truncated to the model's context length)."""

    modality = "text"
    needs = "transcript (CSV, else ASR)"
    dims = "embed_dim"
    gpu = True
    defaults: dict[str, Any] = {"pretrained": "", "batch_size": 64}

    def load(self) -> None:
        import open_clip

        self.model, self.name = load_open_clip(self.p, self.key, self.device)
        self.tok = open_clip.get_tokenizer(self.name)
        self.dim = int(self.model.text_projection.shape[-1]) if getattr(self.model, "text_projection", None) is not None \
            else int(self.encode(["x"]).shape[-1])

    def encode(self, items: Sequence[str]) -> np.ndarray:
        import torch

        t = self.tok(list(items)).to(self.device)                              # [B, context_length]
        with torch.inference_mode(), self.autocast():
            z = self.model.encode_text(t, normalize=True)                      # [B, D]
        return z.float().cpu().numpy()

"""Any timm image model on face crops: pooled pre-logits features (num_classes=0), mean over frames.

`model` is a timm architecture name; weights come from `pretrained`: a local file
(.safetensors / .pth / .bin, via pretrained_cfg_overlay), a local folder or cached hf-hub id
('hf-hub:org/repo'), or "" with random_init: true (smoke tests only). Input size and
normalisation follow the model's pretrained config (timm.data.resolve_model_data_config).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from expmae.imaging import to_tensor

from .registry import Extractor, register, resolve_model


@register("timm", model="resnet50")
class TimmImage(Extractor):
    """timm image model on face crops (pooled features), mean over a video's frames."""

    modality = "visual"
    needs = "face crops"
    dims = "num_features"
    gpu = True
    defaults: dict[str, Any] = {"pretrained": "", "batch_size": 128, "img_size": 0, "cpu_batch_size": 8}

    def load(self) -> None:
        import timm

        name, src = str(self.p["model"]), str(self.p.get("pretrained") or "")
        kw: dict[str, Any] = {"num_classes": 0}
        if self.p.get("img_size"):
            kw["img_size"] = int(self.p["img_size"])
        if name.startswith("hf-hub:"):
            path = resolve_model(name[len("hf-hub:"):], f"{self.key}.model")
            name, kw["pretrained"] = f"local-dir:{path}", True
        elif src:
            path = resolve_model(src, f"{self.key}.pretrained", kind="weights")
            kw["pretrained"] = True
            if path.is_dir():  # a folder with config.json + weights (timm hub layout)
                name = f"local-dir:{path}"
            else:
                kw["pretrained_cfg_overlay"] = {"file": str(path)}
        elif not self.p.get("random_init"):
            raise SystemExit(f"config key {self.key}.pretrained: give a local weights file for timm model {name!r} "
                             "(or set random_init: true for a smoke test)")
        try:
            self.model = timm.create_model(name, **kw).to(self.device).eval()
        except Exception as err:  # noqa: BLE001
            raise SystemExit(f"config key {self.key}.model: cannot build timm model {self.p['model']!r} offline "
                             f"({type(err).__name__}: {str(err)[:200]}). Point {self.key}.pretrained at a local file.") from None
        cfg = timm.data.resolve_model_data_config(self.model)
        self.size = int(cfg["input_size"][-1])
        self.mean, self.std = cfg["mean"], cfg["std"]
        self.dim = int(self.model.num_features)

    def encode(self, items: np.ndarray) -> np.ndarray:
        import torch

        x = to_tensor(items, self.size, self.mean, self.std, self.device)     # [B, 3, H, W]
        with torch.inference_mode(), self.autocast():
            z = self.model(x)                                                  # [B, num_features]
        return z.float().cpu().numpy()

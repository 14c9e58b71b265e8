"""openSMILE functionals (eGeMAPSv02: 88 dims, ComParE_2016: 6373 dims), one vector per video.

openSMILE works on one signal at a time on CPU, so `encode` loops; the runner still batches
decoding. The extractor object is built once per job.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .registry import Extractor, register


@register("egemaps", dims="88", feature_set="eGeMAPSv02")
@register("compare", dims="6373", feature_set="ComParE_2016")
@register("opensmile", doc="openSMILE functionals of any feature set (param feature_set)")
class OpenSmile(Extractor):
    """openSMILE functionals (eGeMAPSv02 | ComParE_2016 | ...)."""

    modality = "audio"
    needs = "audio 16 kHz"
    dims = "88 (eGeMAPSv02) | 6373 (ComParE_2016)"
    defaults: dict[str, Any] = {"feature_set": "eGeMAPSv02", "sample_rate": 16000, "batch_size": 32}

    def load(self) -> None:
        import opensmile

        fs_name = self.p["feature_set"]
        try:
            fs = getattr(opensmile.FeatureSet, fs_name)
        except AttributeError:
            names = [f.name for f in opensmile.FeatureSet]
            raise SystemExit(f"config key {self.key}.feature_set: unknown openSMILE set {fs_name!r}; one of {names}")
        self.smile = opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.Functionals)
        self.feature_names = list(self.smile.feature_names)
        self.dim = len(self.feature_names)
        self.model_id = f"opensmile:{fs_name}"

    def encode(self, items: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(items), self.dim), np.float32)
        for i, wav in enumerate(items):
            v = self.smile.process_signal(wav, self.p["sample_rate"]).to_numpy(np.float32).reshape(-1)
            out[i] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        return out

"""Hidden-state pooling shared by the transformers encoders (hf_audio's speech models, hf_text's text
models): the layer choice and the mean over the real (unpadded) positions. One home, so the audio and
text vectors of a `layer` setting mean the same thing."""
from __future__ import annotations

from typing import Any, Sequence


def select_layer(hidden_states: Sequence[Any], layer: int | list[int]) -> Any:
    """One hidden layer ([B, T, D]) or the mean of several; -1 = last. hidden_states[0] is the input embedding."""
    if isinstance(layer, list):
        return sum(hidden_states[i] for i in layer) / len(layer)
    return hidden_states[layer]


def masked_mean(hidden: Any, valid: Any) -> Any:
    """hidden [B, T, D], valid [B, T] (bool or 0/1) -> mean over the valid positions [B, D] (float32); a row
    without any valid position is zeros, not NaN."""
    m = valid.unsqueeze(-1).to(hidden.dtype)
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).float()

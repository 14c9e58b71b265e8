"""transformers speech encoders: wav2vec2, HuBERT, WavLM (any AutoModel audio encoder) and the
Whisper encoder. One vector per video: mean over the real (unpadded) frames of one layer.

Batching: a batch of waveforms is padded to its longest member; the runner sorts videos by
length first so little compute goes to padding. On CPU the default is one clip per call
(`cpu_batch_size: 1`): a 2-6 s clip already keeps the cores' matmuls busy, and bigger batches
only add padding and memory traffic (benchmarks.bench_extractors; figures in benchmarks/README.md).
`batch_size` applies on GPU. The pooled frames are those that cover real audio (the model's
conv-stack output lengths), so padding never leaks into the mean.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .hidden import masked_mean, select_layer
from .registry import Extractor, register, resolve_model


# Both families: batch_size is the GPU setting; on CPU one clip per call (see the module docstring).
AUDIO_DEFAULTS: dict[str, Any] = {"layer": -1, "sample_rate": 16000, "max_seconds": 30.0, "batch_size": 8,
                                  "cpu_batch_size": 1}


class SpeechEncoder(Extractor):
    """What both families share: the model folder (never a download), its feature extractor, the encoder
    on the job's device in eval mode and its width. A family says which encoder to load (`encoder`) and
    which config key holds the width (`width_key`)."""

    modality = "audio"
    needs = "audio 16 kHz"
    gpu = True
    defaults = AUDIO_DEFAULTS
    width_key = "hidden_size"

    def encoder(self, path: Any) -> Any:
        raise NotImplementedError

    def load(self) -> None:
        from transformers import AutoFeatureExtractor

        self.path = resolve_model(self.p["model"], f"{self.key}.model")
        self.fe = AutoFeatureExtractor.from_pretrained(self.path)
        self.model = self.encoder(self.path).to(self.device).eval()
        self.dim = int(getattr(self.model.config, self.width_key))


@register("wav2vec2", model="facebook/wav2vec2-base")
@register("hubert", model="facebook/hubert-base-ls960")
@register("wavlm", model="microsoft/wavlm-base-plus")
@register("hf_audio", doc="any transformers audio encoder (AutoModel + AutoFeatureExtractor)")
class HFAudio(SpeechEncoder):
    """transformers speech encoder (wav2vec2 / HuBERT / WavLM), layer choice, masked mean over time."""

    dims = "hidden_size"

    def encoder(self, path: Any) -> Any:
        from transformers import AutoModel

        return AutoModel.from_pretrained(path)

    def load(self) -> None:
        super().load()
        # Group-norm models (wav2vec2-base) are trained without an attention mask: zero padding only.
        self.use_mask = bool(getattr(self.fe, "return_attention_mask", False))

    def encode(self, items: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        sr = self.p["sample_rate"]
        b = self.fe(list(items), sampling_rate=sr, padding=True, return_attention_mask=True, return_tensors="pt")
        x = b["input_values"].to(self.device)                                   # [B, T]
        am = b["attention_mask"].to(self.device)                                # [B, T]
        with torch.inference_mode(), self.autocast():
            out = self.model(x, attention_mask=am if self.use_mask else None, output_hidden_states=True)
        h = select_layer(out.hidden_states, self.p["layer"])                    # [B, T', D]
        lengths = self.model._get_feat_extract_output_lengths(am.sum(-1))       # [B] frames covering real audio
        valid = torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None]
        return masked_mean(h, valid).cpu().numpy()


@register("whisper", model="openai/whisper-base")
class WhisperEncoder(SpeechEncoder):
    """Whisper encoder (log-mel, 30 s window), layer choice, mean over the frames of real audio."""

    dims = "d_model"
    width_key = "d_model"

    def encoder(self, path: Any) -> Any:
        from transformers import WhisperModel

        return WhisperModel.from_pretrained(path).encoder  # the decoder is not needed

    def encode(self, items: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        # Whisper always sees a 30 s window (padding="max_length"): the win of batching is largest here.
        b = self.fe(list(items), sampling_rate=self.p["sample_rate"], return_tensors="pt")
        x = b["input_features"].to(self.device)                                 # [B, mels, 3000]
        with torch.inference_mode(), self.autocast():
            out = self.model(x, output_hidden_states=True)
        h = select_layer(out.hidden_states, self.p["layer"])                    # [B, 1500, D]
        hop, stride = self.fe.hop_length, 2                                     # conv2 halves the mel frames
        n = torch.tensor([max(1, -(-len(w) // (hop * stride))) for w in items], device=h.device)
        valid = torch.arange(h.shape[1], device=h.device)[None] < n[:, None]
        return masked_mean(h, valid).cpu().numpy()

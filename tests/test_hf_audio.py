"""expmae.features.hf_audio: both speech families load through one SpeechEncoder.load (the model folder,
its feature extractor, the encoder in eval mode on the device, its width), each family choosing only its
encoder and the config key of its width."""
from __future__ import annotations

import numpy as np
import pytest

from expmae.features import create
from expmae.features.hf_audio import HFAudio, SpeechEncoder, WhisperEncoder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny wav2vec2 (width 24) and a tiny Whisper (d_model 40, hidden_size unset), saved locally."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("speech")
    tf.Wav2Vec2Model(tf.Wav2Vec2Config(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                       conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
                                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                       feat_extract_norm="layer", do_stable_layer_norm=True)).save_pretrained(d / "w2v")
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, return_attention_mask=False
                                ).save_pretrained(d / "w2v")
    tf.WhisperModel(tf.WhisperConfig(d_model=40, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                                     max_source_positions=1500, max_target_positions=16, vocab_size=64, pad_token_id=0,
                                     bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)).save_pretrained(d / "wh")
    tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(d / "wh")
    return d


def test_both_families_share_one_load(folders) -> None:
    assert HFAudio.load is not SpeechEncoder.load and WhisperEncoder.load is SpeechEncoder.load
    assert issubclass(HFAudio, SpeechEncoder) and issubclass(WhisperEncoder, SpeechEncoder)
    w2v = create("wav2vec2", {"model": str(folders / "w2v")}, "features.w2v", "cpu")
    wh = create("whisper", {"model": str(folders / "wh")}, "features.wh", "cpu")
    for ext in (w2v, wh):
        ext.load()
        assert not ext.model.training and ext.path.is_dir()
    assert (w2v.dim, wh.dim) == (24, 40)  # each family's width key: hidden_size, d_model
    assert w2v.use_mask is False  # a group-norm style extractor (no attention mask): zero padding only
    assert type(wh.model).__name__ == "WhisperEncoder"  # the decoder is never loaded


def test_loaded_encoders_pool_to_their_width(folders) -> None:
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 24000)]
    for name, folder in (("wav2vec2", "w2v"), ("whisper", "wh")):
        ext = create(name, {"model": str(folders / folder)}, f"features.{name}", "cpu")
        ext.load()
        X = ext.encode(clips)
        assert X.shape == (2, ext.dim) and X.dtype == np.float32 and np.isfinite(X).all()


def test_a_missing_model_names_the_key(tmp_path) -> None:
    ext = create("whisper", {"model": str(tmp_path / "absent")}, "features.wh", "cpu")
    with pytest.raises(SystemExit, match="features.wh.model"):
        ext.load()

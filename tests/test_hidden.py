"""expmae.features.hidden: the layer choice and masked mean that the speech (hf_audio) and text (hf_text)
encoders share."""
from __future__ import annotations

import torch

from expmae.features.hidden import masked_mean, select_layer


def test_select_layer_one_or_the_mean_of_several() -> None:
    hs = tuple(torch.full((1, 2, 3), float(i)) for i in range(4))  # [0] = the input embedding
    assert select_layer(hs, -1).eq(3).all() and select_layer(hs, 1).eq(1).all()
    assert select_layer(hs, [1, 3]).eq(2).all()


def test_masked_mean_ignores_padding_for_bool_and_integer_masks() -> None:
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    want = torch.tensor([[2.0, 3.0], [7.0, 8.0]])
    assert torch.equal(masked_mean(h, valid), want)  # the speech encoders pass frames-covering-audio flags
    assert torch.equal(masked_mean(h, valid.long()), want)  # the text encoders pass the tokenizer's 0/1 mask
    assert masked_mean(h.half(), valid).dtype == torch.float32  # autocast outputs come back as float32


def test_masked_mean_of_a_row_without_valid_positions_is_zero() -> None:
    out = masked_mean(torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.equal(out, torch.zeros(1, 2))

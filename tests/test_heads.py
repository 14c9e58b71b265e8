"""expmae.train.heads: FBP pooling and its signed square root, FBPHead's algebra against a direct numpy
computation from the module's own weights, the attention head's weights, and one list of head names."""
import itertools

import numpy as np
import pytest
import torch

from expmae import config
from expmae.train import plan
from expmae.train.heads import HEADS, AttentionHead, FBPHead, build_head, fbp_pool


def fbp_numpy(head: FBPHead, xs: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """The eval-mode forward, written out: encoder, projection to o*k, a missing modality's projection
    replaced by its learned vector, for every pair of modalities the elementwise product sum-pooled over
    k, signed square root, L2 normalisation; the pairs' vectors concatenated; linear classifier."""
    W = {k: v.detach().double().numpy() for k, v in head.state_dict().items()}
    k, M = head.factor, len(xs)
    h = []
    for i, x in enumerate(xs):
        e = np.maximum(x @ W[f"enc.{i}.0.weight"].T + W[f"enc.{i}.0.bias"], 0)
        p = e @ W[f"proj.{i}.weight"].T + W[f"proj.{i}.bias"]                       # [B, o*k]
        h.append(np.where(mask[:, i:i + 1] > 0, p, W["missing"][i]))
    zs = []
    for i, j in list(itertools.combinations(range(M), 2)) or [(0, 0)]:
        z = (h[i] * h[j]).reshape(len(x), -1, k).sum(-1)                             # [B, o]
        z = np.sign(z) * np.sqrt(np.abs(z) + 1e-8)
        zs.append(z / np.linalg.norm(z, axis=1, keepdims=True))
    return np.concatenate(zs, 1) @ W["cls.weight"].T + W["cls.bias"]


@pytest.mark.parametrize("dims", [[10], [10, 20], [10, 20, 30]])
def test_fbp_forward_matches_numpy(dims):
    torch.manual_seed(0)
    head = FBPHead(dims, num_classes=6, out_dim=8, factor=3, hidden=16).eval()
    with torch.no_grad():
        head.missing.normal_()  # a learned stand-in, not the zeros it starts from
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(7, d)).astype(np.float32) for d in dims]
    mask = np.ones((7, len(dims)), np.float32)
    mask[2, 0] = 0                    # the first modality missing in one row
    mask[4, -1] = 0                   # the last in another (with one modality: that same one)
    if len(dims) == 3:
        mask[5, 1:] = 0               # two of three missing
    got = head([torch.from_numpy(x) for x in xs], torch.from_numpy(mask)).detach().numpy()
    assert len(head.pairs) == max(1, len(dims) * (len(dims) - 1) // 2)
    np.testing.assert_allclose(got, fbp_numpy(head, [x.astype(np.float64) for x in xs], mask), atol=1e-5, rtol=0)
    # the mask matters: without it, rows with a missing modality change
    full = head([torch.from_numpy(x) for x in xs]).detach().numpy()
    assert not np.allclose(full[2], got[2]) and np.allclose(full[0], got[0])


@pytest.mark.usefixtures("one_torch_thread")
def test_fbp_pool_shapes_and_normalisation():
    a, b = torch.randn(8, 16 * 4), torch.randn(8, 16 * 4)
    z = fbp_pool(a, b, factor=4)
    assert z.shape == (8, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(8))
    # power normalisation keeps the sign of the sum-pooled product
    raw = (a * b).view(8, 16, 4).sum(-1)
    assert torch.equal(torch.sign(z), torch.sign(raw))


@pytest.mark.usefixtures("one_torch_thread")
def test_fbp_head_three_modalities():
    head = FBPHead([10, 20, 30], num_classes=6, out_dim=8, factor=3)
    out = head([torch.randn(5, 10), torch.randn(5, 20), torch.randn(5, 30)])
    assert out.shape == (5, 6) and len(head.pairs) == 3


@pytest.mark.usefixtures("one_torch_thread")
def test_fbp_power_normalisation_is_signed_sqrt():
    a, b = torch.randn(4, 8 * 2), torch.randn(4, 8 * 2)
    raw = (a * b).view(4, 8, 2).sum(-1)
    expect = torch.nn.functional.normalize(torch.sign(raw) * torch.sqrt(raw.abs() + 1e-8), dim=-1)
    torch.testing.assert_close(fbp_pool(a, b, factor=2), expect)


@pytest.mark.usefixtures("one_torch_thread")
def test_attention_head_weights_sum_to_one():
    head = AttentionHead([10, 20, 30], num_classes=6, hidden=16)
    xs = [torch.randn(5, 10), torch.randn(5, 20), torch.randn(5, 30)]
    a, h = head.weights(xs)
    assert a.shape == (5, 3) and h.shape == (5, 3, 16) and head(xs).shape == (5, 6)
    torch.testing.assert_close(a.sum(1), torch.ones(5))


@pytest.mark.usefixtures("one_torch_thread")
def test_unknown_head_names_config_key():
    with pytest.raises(SystemExit, match="fuse.heads"):
        build_head("nope", [4], 6, {})


@pytest.mark.usefixtures("one_torch_thread")
def test_head_names_are_one_list():
    """plan.HEADS is the list: the schema's fuse.heads enum, its default and the trained heads' registry follow it."""
    heads = config.section_schema("fuse")["properties"]["heads"]
    assert heads["items"]["enum"] == list(plan.HEADS)
    assert config.defaults("fuse")["heads"] == list(plan.HEADS) == plan.heads({})
    assert set(HEADS) == set(plan.TRAINED_HEADS) and plan.LATE not in HEADS

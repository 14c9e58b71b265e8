"""FBPHead's algebra against a direct numpy computation from the module's own weights."""
import itertools

import numpy as np
import pytest
import torch

from expmae.train.heads import FBPHead


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

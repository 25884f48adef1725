"""The same MiniLM encoder as an onnxruntime graph, optionally int8-quantised.

Why: the numpy encoder spends most of its time in float32 matrix products and in
element-wise passes (GELU, LayerNorm) that numpy cannot fuse. onnxruntime fuses them
and, with dynamic int8 quantisation of the weights, uses the CPU's integer dot-product
units; on the build machine that is several times faster than numpy.

The graph is written from the safetensors weights with ``onnx.helper`` (no torch, no
export step) and cached as a file, so ``onnx`` is needed once to build it; afterwards only
onnxruntime is. Quantisation moves embeddings slightly (cosine to the float model > 0.99,
checked in the tests); the float graph is available with ``quantize=False``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genguard.text.encoder import MAX_TOKENS, model_dir, padded_batches

_GRAPH_VERSION = "minilm-onnx/2"


def _build_graph(weights_path: Path, out_path: Path) -> None:
    """Write the BERT + mean-pooling graph for the weights at ``weights_path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    w = load_file(str(weights_path))
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    counter = iter(range(1_000_000))

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d
        return name

    def node(op: str, inputs: list[str], **attrs: object) -> str:
        out = f"{op.lower()}_{next(counter)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def f32(name: str) -> np.ndarray:
        return w[name].astype(np.float32)

    hidden = 384
    heads = 12
    head_dim = hidden // heads
    const("word_emb", f32("embeddings.word_embeddings.weight"))
    const("pos_emb", f32("embeddings.position_embeddings.weight"))
    const("type0", f32("embeddings.token_type_embeddings.weight")[0])
    const("zero_i", np.array(0, dtype=np.int64))
    const("one_i", np.array(1, dtype=np.int64))
    const("one_f", np.array(1.0, dtype=np.float32))
    const("neg_big", np.array(-1e9, dtype=np.float32))
    const("scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    const("half", np.array(0.5, dtype=np.float32))
    const("inv_sqrt2", np.array(0.7071067811865476, dtype=np.float32))
    const("shape_qkv", np.array([0, 0, 3, heads, head_dim], dtype=np.int64))
    const("shape_ctx", np.array([0, 0, hidden], dtype=np.int64))
    const("axes_1", np.array([1], dtype=np.int64))
    const("axes_12", np.array([1, 2], dtype=np.int64))
    const("axes_2", np.array([2], dtype=np.int64))

    length = node("Gather", [node("Shape", ["input_ids"]), "one_i"], axis=0)
    positions = node("Range", ["zero_i", length, "one_i"])
    x = node(
        "Add",
        [
            node(
                "Add",
                [node("Gather", ["word_emb", "input_ids"]), node("Gather", ["pos_emb", positions])],
            ),
            "type0",
        ],
    )
    x = node(
        "LayerNormalization",
        [
            x,
            const("emb_ln_w", f32("embeddings.LayerNorm.weight")),
            const("emb_ln_b", f32("embeddings.LayerNorm.bias")),
        ],
        epsilon=1e-12,
        axis=-1,
    )
    mask_f = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_bias = node("Mul", [node("Sub", ["one_f", mask_f]), "neg_big"])
    mask_bias = node("Unsqueeze", [mask_bias, "axes_12"])  # [B, 1, 1, T]

    n_layers = 1 + max(int(k.split(".")[2]) for k in w if k.startswith("encoder.layer."))
    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        qkv_w = np.concatenate(
            [f32(f"{p}.attention.self.{n}.weight") for n in ("query", "key", "value")]
        ).T
        qkv_b = np.concatenate(
            [f32(f"{p}.attention.self.{n}.bias") for n in ("query", "key", "value")]
        )
        qkv = node(
            "Add", [node("MatMul", [x, const(f"l{i}_qkv_w", qkv_w)]), const(f"l{i}_qkv_b", qkv_b)]
        )
        qkv = node("Transpose", [node("Reshape", [qkv, "shape_qkv"])], perm=[2, 0, 3, 1, 4])
        q = node("Gather", [qkv, "zero_i"], axis=0)
        k = node("Gather", [qkv, "one_i"], axis=0)
        v = node("Gather", [qkv, const(f"two_{i}", np.array(2, dtype=np.int64))], axis=0)
        scores = node(
            "Mul", [node("MatMul", [q, node("Transpose", [k], perm=[0, 1, 3, 2])]), "scale"]
        )
        probs = node("Softmax", [node("Add", [scores, mask_bias])], axis=-1)
        ctx = node(
            "Reshape",
            [node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3]), "shape_ctx"],
        )
        attn = node(
            "Add",
            [
                node(
                    "MatMul", [ctx, const(f"l{i}_o_w", f32(f"{p}.attention.output.dense.weight").T)]
                ),
                const(f"l{i}_o_b", f32(f"{p}.attention.output.dense.bias")),
            ],
        )
        h = node(
            "LayerNormalization",
            [
                node("Add", [attn, x]),
                const(f"l{i}_ln1_w", f32(f"{p}.attention.output.LayerNorm.weight")),
                const(f"l{i}_ln1_b", f32(f"{p}.attention.output.LayerNorm.bias")),
            ],
            epsilon=1e-12,
            axis=-1,
        )
        inner = node(
            "Add",
            [
                node("MatMul", [h, const(f"l{i}_f1_w", f32(f"{p}.intermediate.dense.weight").T)]),
                const(f"l{i}_f1_b", f32(f"{p}.intermediate.dense.bias")),
            ],
        )
        erf = node("Erf", [node("Mul", [inner, "inv_sqrt2"])])
        gelu = node("Mul", [node("Mul", [inner, "half"]), node("Add", [erf, "one_f"])])
        ff = node(
            "Add",
            [
                node("MatMul", [gelu, const(f"l{i}_f2_w", f32(f"{p}.output.dense.weight").T)]),
                const(f"l{i}_f2_b", f32(f"{p}.output.dense.bias")),
            ],
        )
        x = node(
            "LayerNormalization",
            [
                node("Add", [ff, h]),
                const(f"l{i}_ln2_w", f32(f"{p}.output.LayerNorm.weight")),
                const(f"l{i}_ln2_b", f32(f"{p}.output.LayerNorm.bias")),
            ],
            epsilon=1e-12,
            axis=-1,
        )

    mask3 = node("Unsqueeze", [mask_f, "axes_2"])
    summed = node("ReduceSum", [node("Mul", [x, mask3]), "axes_1"], keepdims=0)
    count = node("ReduceSum", [mask3, "axes_1"], keepdims=0)
    nodes.append(helper.make_node("Div", [summed, count], ["pooled"]))
    graph = helper.make_graph(
        nodes,
        "minilm",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(out_path))


def _cache_path(cache_dir: Path, weights: Path, quantize: bool) -> Path:
    stat = weights.stat()
    key = f"{_GRAPH_VERSION}|{weights.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{quantize}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"minilm-{'int8' if quantize else 'fp32'}-{digest}.onnx"


def ensure_graph(cache_dir: Path, *, quantize: bool = True) -> Path:
    """Path of the cached graph, building (and quantising) it on first use."""
    weights = model_dir() / "model.safetensors"
    target = _cache_path(cache_dir, weights, quantize)
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    fp32 = _cache_path(cache_dir, weights, False)
    if not fp32.is_file():
        fp32_tmp = fp32.with_suffix(f".{os.getpid()}.tmp")
        _build_graph(weights, fp32_tmp)
        fp32_tmp.replace(fp32)
    if quantize:
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        # The quantizer logs through the root logger; quiet it for the call only, and put
        # the application's level back.
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))
        try:
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        tmp.replace(target)
    return target


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2 on onnxruntime; same interface as :class:`MiniLMEncoder`."""

    dim = 384

    def __init__(
        self, cache_dir: Path, *, quantize: bool = True, threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir()  # ModelUnavailableError with the install hint, before anything else
        path = ensure_graph(cache_dir, quantize=quantize)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._lock = threading.Lock()
        self.quantized = quantize
        self.cache_tag = "onnx-int8" if quantize else "onnx-fp32"

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit vectors for ``texts`` (batches sorted by length, padding masked)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for chunk, ids, mask in padded_batches(self._tokenizer, self._lock, texts, batch_size):
            (pooled,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[chunk] = pooled / np.maximum(norms, 1e-12)
        return out

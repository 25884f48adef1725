"""Synthetic checkpoints with the real SD 1.x single-file key layout, for tests and benches.

The layout mirrors the original LDM checkpoint (``model.diffusion_model.*`` UNet with 12
input blocks, a middle block and 12 output blocks; ``cond_stage_model.transformer.*``
CLIP text encoder; ``first_stage_model.*`` VAE, abridged), with widths scaled by
``channels`` so the same code yields a few-kilobyte test file or a gigabyte-sized bench
file. With ``channels=320, context=768, vocab=49408`` the UNet and text encoder shapes are
those of SD 1.5. Data is random (benign by construction): nothing here can generate images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genguard.merge.safetensors_io import (
    OutputTensor,
    SafetensorsWriter,
    from_float32,
    write_order,
)

Shape = tuple[int, ...]


def _norm(prefix: str, c: int) -> dict[str, Shape]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _linear(prefix: str, out: int, inp: int, bias: bool = True) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {f"{prefix}.weight": (out, inp)}
    if bias:
        shapes[f"{prefix}.bias"] = (out,)
    return shapes


def _conv(prefix: str, out: int, inp: int, k: int = 3) -> dict[str, Shape]:
    return {f"{prefix}.weight": (out, inp, k, k), f"{prefix}.bias": (out,)}


def _resblock(p: str, cin: int, cout: int, temb: int) -> dict[str, Shape]:
    s = {**_norm(f"{p}.in_layers.0", cin), **_conv(f"{p}.in_layers.2", cout, cin)}
    s |= _linear(f"{p}.emb_layers.1", cout, temb)
    s |= {**_norm(f"{p}.out_layers.0", cout), **_conv(f"{p}.out_layers.3", cout, cout)}
    if cin != cout:
        s |= _conv(f"{p}.skip_connection", cout, cin, k=1)
    return s


def _transformer(p: str, c: int, context: int) -> dict[str, Shape]:
    s = {**_norm(f"{p}.norm", c), **_conv(f"{p}.proj_in", c, c, k=1)}
    b = f"{p}.transformer_blocks.0"
    for attn, kv in (("attn1", c), ("attn2", context)):
        s |= _linear(f"{b}.{attn}.to_q", c, c, bias=False)
        s |= _linear(f"{b}.{attn}.to_k", c, kv, bias=False)
        s |= _linear(f"{b}.{attn}.to_v", c, kv, bias=False)
        s |= _linear(f"{b}.{attn}.to_out.0", c, c)
    s |= _linear(f"{b}.ff.net.0.proj", 8 * c, c) | _linear(f"{b}.ff.net.2", c, 4 * c)
    for n in ("norm1", "norm2", "norm3"):
        s |= _norm(f"{b}.{n}", c)
    return s | _conv(f"{p}.proj_out", c, c, k=1)


def _unet(c: int, context: int) -> dict[str, Shape]:
    u = "model.diffusion_model"
    temb = 4 * c
    s = _linear(f"{u}.time_embed.0", temb, c) | _linear(f"{u}.time_embed.2", temb, temb)
    s |= _conv(f"{u}.input_blocks.0.0", c, 4)
    mult = [1, 2, 4, 4]
    chans = [c]  # channels of each skip connection, in input-block order
    ch, i = c, 1
    for level, m in enumerate(mult):
        for _ in range(2):
            s |= _resblock(f"{u}.input_blocks.{i}.0", ch, c * m, temb)
            ch = c * m
            if level < 3:
                s |= _transformer(f"{u}.input_blocks.{i}.1", ch, context)
            chans.append(ch)
            i += 1
        if level < 3:
            s |= _conv(f"{u}.input_blocks.{i}.0.op", ch, ch)
            chans.append(ch)
            i += 1
    s |= _resblock(f"{u}.middle_block.0", ch, ch, temb)
    s |= _transformer(f"{u}.middle_block.1", ch, context)
    s |= _resblock(f"{u}.middle_block.2", ch, ch, temb)
    o = 0
    for level, m in reversed(list(enumerate(mult))):
        for j in range(3):
            skip = chans.pop()
            s |= _resblock(f"{u}.output_blocks.{o}.0", ch + skip, c * m, temb)
            ch = c * m
            sub = 1
            if level < 3:
                s |= _transformer(f"{u}.output_blocks.{o}.1", ch, context)
                sub = 2
            if level > 0 and j == 2:
                s |= _conv(f"{u}.output_blocks.{o}.{sub}.conv", ch, ch)
            o += 1
    return s | _norm(f"{u}.out.0", c) | _conv(f"{u}.out.2", 4, c)


def _text_encoder(width: int, vocab: int, layers: int) -> dict[str, Shape]:
    t = "cond_stage_model.transformer.text_model"
    s: dict[str, Shape] = {
        f"{t}.embeddings.token_embedding.weight": (vocab, width),
        f"{t}.embeddings.position_embedding.weight": (77, width),
    }
    for n in range(layers):
        layer = f"{t}.encoder.layers.{n}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s |= _linear(f"{layer}.self_attn.{proj}", width, width)
        s |= _norm(f"{layer}.layer_norm1", width) | _norm(f"{layer}.layer_norm2", width)
        s |= _linear(f"{layer}.mlp.fc1", 4 * width, width) | _linear(
            f"{layer}.mlp.fc2", width, 4 * width
        )
    return s | _norm(f"{t}.final_layer_norm", width)


def _vae(c: int) -> dict[str, Shape]:
    v = "first_stage_model"
    s = _conv(f"{v}.encoder.conv_in", c, 3) | _conv(f"{v}.encoder.conv_out", 8, c)
    s |= _conv(f"{v}.decoder.conv_in", c, 4) | _conv(f"{v}.decoder.conv_out", 3, c)
    for part in ("encoder", "decoder"):
        s |= _resblock(f"{v}.{part}.mid.block_1", c, c, 1)  # emb layer unused, harmless
    return s | _conv(f"{v}.quant_conv", 8, 8, k=1) | _conv(f"{v}.post_quant_conv", 4, 4, k=1)


def sd1_layout(
    channels: int = 320, context: int = 768, vocab: int = 49408, text_layers: int = 12
) -> dict[str, Shape]:
    """Key -> shape of an SD 1.x-style single-file checkpoint (float tensors only)."""
    return _unet(channels, context) | _text_encoder(context, vocab, text_layers) | _vae(channels)


#: Integer tensor present in real SD 1.x files; merges must copy it untouched.
POSITION_IDS_KEY = "cond_stage_model.transformer.text_model.embeddings.position_ids"


def layout_bytes(layout: dict[str, Shape], itemsize: int = 2) -> int:
    """Size of the float data of a layout at ``itemsize`` bytes per value."""
    return sum(int(np.prod(s)) for s in layout.values()) * itemsize


def sd1_layout_for_size(size_mb: float) -> dict[str, Shape]:
    """An SD 1.x layout whose fp16 size is close to ``size_mb`` (width scaled, /32 steps)."""
    full = layout_bytes(sd1_layout())
    scale = (size_mb * 1024 * 1024 / full) ** 0.5
    channels = max(32, round(320 * scale / 32) * 32)
    context = max(32, round(768 * scale / 32) * 32)
    return sd1_layout(channels, context)


def write_synthetic_checkpoint(
    path: str | Path,
    layout: dict[str, Shape],
    seed: int,
    dtype: str = "F16",
    scale: float = 0.02,
) -> Path:
    """Stream a random checkpoint with ``layout`` to ``path`` (memory: one tensor)."""
    entries = [OutputTensor(k, dtype, s) for k, s in layout.items()]
    entries.append(OutputTensor(POSITION_IDS_KEY, "I64", (1, 77)))
    writer = SafetensorsWriter(path, write_order(entries), reserve=0)
    rng = np.random.default_rng(seed)
    try:
        for e in writer.entries:
            if e.dtype == "I64":
                writer.write(e.key, np.arange(77, dtype=np.int64).reshape(1, 77))
                continue
            values = rng.standard_normal(e.shape, dtype=np.float32) * np.float32(scale)
            writer.write(e.key, from_float32(values, e.dtype))
    except BaseException:
        writer.abort()
        raise
    return writer.finish()

"""Architecture detection and the IN/M/OUT block scheme, alone and inside a merge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from merge_helpers import SD1_KEYS, SDXL_KEYS, random_state
from safetensors.numpy import load_file

from genguard.errors import ConfigError
from genguard.merge import Architecture, block_of, detect_architecture, merge, parse_config
from genguard.merge.synthetic import sd1_layout

Ckpt = Callable[[str, dict[str, np.ndarray]], Path]


@pytest.mark.parametrize(
    ("keys", "arch"),
    [
        (SD1_KEYS, Architecture.SD1),
        (SDXL_KEYS, Architecture.SDXL),
        (
            [
                "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
                "model.diffusion_model.input_blocks.11.0.emb_layers.1.weight",
            ],
            Architecture.SD2,
        ),
        (["model.diffusion_model.input_blocks.8.0.skip_connection.weight"], Architecture.SDXL),
        (["model.diffusion_model.input_blocks.11.0.skip_connection.weight"], Architecture.SD1),
        (["lora_unet_down_blocks_0.alpha", "text_model.weight"], Architecture.UNKNOWN),
    ],
)
def test_detect_architecture(keys, arch: Architecture) -> None:
    assert detect_architecture(keys) is arch


@pytest.mark.parametrize(
    ("key", "arch", "block"),
    [
        ("model.diffusion_model.input_blocks.4.1.proj_in.weight", Architecture.SD1, "IN04"),
        ("model.diffusion_model.input_blocks.11.0.in_layers.0.bias", Architecture.SD2, "IN11"),
        ("model.diffusion_model.time_embed.2.weight", Architecture.SD1, "IN00"),
        ("model.diffusion_model.middle_block.2.out_layers.3.weight", Architecture.SD1, "M00"),
        ("model.diffusion_model.output_blocks.0.0.skip_connection.bias", Architecture.SD1, "OUT00"),
        ("model.diffusion_model.out.2.weight", Architecture.SD1, "OUT11"),
        ("model.diffusion_model.out.2.weight", Architecture.SDXL, "OUT08"),
        ("model.diffusion_model.label_emb.0.2.weight", Architecture.SDXL, "IN00"),
        ("cond_stage_model.transformer.text_model.final_layer_norm.bias", Architecture.SD1, "BASE"),
        ("first_stage_model.decoder.conv_in.weight", Architecture.SD1, "BASE"),
        ("model.diffusion_model.input_blocks.4.1.proj_in.weight", Architecture.UNKNOWN, "BASE"),
    ],
)
def test_block_of(key: str, arch: Architecture, block: str) -> None:
    assert block_of(key, arch) == block


def test_realistic_sd1_layout_covers_all_25_blocks() -> None:
    layout = sd1_layout(channels=8, context=8, vocab=10, text_layers=1)
    assert detect_architecture(layout) is Architecture.SD1
    blocks = {block_of(k, Architecture.SD1) for k in layout}
    assert blocks == {"BASE", *Architecture.SD1.block_names}
    assert len(Architecture.SD1.block_names) == 25 and len(Architecture.SDXL.block_names) == 19


def two_models(make_ckpt: Ckpt, keys: dict) -> tuple[dict, dict, Path, Path]:
    a, b = random_state(keys, 1), random_state(keys, 2)
    return a, b, make_ckpt("a", a), make_ckpt("b", b)


def test_per_block_alpha_list_with_base_first(make_ckpt: Ckpt, tmp_path: Path) -> None:
    a, b, pa, pb = two_models(make_ckpt, SD1_KEYS)
    values = [round(0.04 * i, 2) for i in range(26)]  # BASE, IN00..IN11, M00, OUT00..OUT11
    recipe = {
        "method": "weighted_sum",
        "models": [str(pa), str(pb)],
        "parameters": {"alpha": {"blocks": values}},
    }
    merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)
    out = load_file(str(tmp_path / "o.safetensors"))
    names = ["BASE", *Architecture.SD1.block_names]
    for key in SD1_KEYS:
        alpha = values[names.index(block_of(key, Architecture.SD1))]
        np.testing.assert_allclose(
            out[key], (1 - alpha) * a[key] + alpha * b[key], rtol=1e-5, atol=1e-6, err_msg=key
        )
    # the text encoder used BASE = 0 (kept A), the final out layer used OUT11 = 1.0 (took B)
    te = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    np.testing.assert_array_equal(out[te], a[te])
    np.testing.assert_allclose(
        out["model.diffusion_model.out.2.weight"],
        b["model.diffusion_model.out.2.weight"],
        atol=1e-6,
    )


def test_per_block_dict_on_sdxl_with_default(make_ckpt: Ckpt, tmp_path: Path) -> None:
    a, b, pa, pb = two_models(make_ckpt, SDXL_KEYS)
    recipe = {
        "method": "weighted_sum",
        "models": [str(pa), str(pb)],
        "parameters": {"alpha": {"default": 0.0, "blocks": {"IN08": 1.0, "M00": 0.5}}},
    }
    merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)
    out = load_file(str(tmp_path / "o.safetensors"))
    k_in8 = "model.diffusion_model.input_blocks.8.0.in_layers.2.weight"
    k_mid = "model.diffusion_model.middle_block.0.emb_layers.1.bias"
    k_te = "conditioner.embedders.1.model.ln_final.weight"
    np.testing.assert_allclose(out[k_in8], b[k_in8], atol=1e-6)
    np.testing.assert_allclose(out[k_mid], 0.5 * a[k_mid] + 0.5 * b[k_mid], atol=1e-6)
    np.testing.assert_array_equal(out[k_te], a[k_te])


def test_sd1_block_list_is_rejected_for_sdxl(make_ckpt: Ckpt, tmp_path: Path) -> None:
    _, _, pa, pb = two_models(make_ckpt, SDXL_KEYS)
    recipe = {
        "method": "weighted_sum",
        "models": [str(pa), str(pb)],
        "parameters": {"alpha": {"default": 0.5, "blocks": [0.5] * 25}},
    }
    with pytest.raises(ConfigError, match=r"parameters\.alpha\.blocks: sdxl has 19 blocks"):
        merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)


def test_unknown_block_name_is_reported(make_ckpt: Ckpt, tmp_path: Path) -> None:
    _, _, pa, pb = two_models(make_ckpt, SDXL_KEYS)
    recipe = {
        "method": "weighted_sum",
        "models": [str(pa), str(pb)],
        "parameters": {"alpha": {"default": 0.5, "blocks": {"IN11": 1.0}}},
    }
    with pytest.raises(ConfigError, match=r"unknown block\(s\) IN11 for sdxl"):
        merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)
    assert not (tmp_path / "o.safetensors").exists()


def test_per_model_block_weights_in_task_arithmetic(make_ckpt: Ckpt, tmp_path: Path) -> None:
    base, ft = random_state(SD1_KEYS, 5), random_state(SD1_KEYS, 6)
    csv = ",".join(["0"] * 12 + ["1"] + ["0"] * 12)  # only the middle block, supermerger form
    recipe = {
        "method": "task_arithmetic",
        "base_model": str(make_ckpt("base", base)),
        "models": [
            {
                "model": str(make_ckpt("ft", ft)),
                "parameters": {"weight": {"default": 0.0, "blocks": csv}},
            }
        ],
    }
    merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)
    out = load_file(str(tmp_path / "o.safetensors"))
    mid = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"
    for key in SD1_KEYS:
        np.testing.assert_allclose(out[key], ft[key] if key == mid else base[key], atol=1e-6)

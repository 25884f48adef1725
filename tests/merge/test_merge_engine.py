"""Engine behaviour: missing keys, shape mismatches, policies, metadata, dtypes, cleanup."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from merge_helpers import POSITION_IDS, SD1_KEYS, SDXL_KEYS, random_state
from safetensors import safe_open
from safetensors.numpy import load_file

from genguard.errors import ConfigError
from genguard.merge import (
    MERGE_METHODS,
    MergeInputError,
    SafetensorsFormatError,
    SafetensorsReader,
    merge,
    parse_config,
    register_merge_method,
)
from genguard.merge.synthetic import sd1_layout, write_synthetic_checkpoint

Ckpt = Callable[[str, dict[str, np.ndarray]], Path]
TE = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
MID = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"


def ws(a: Path, b: Path, **extra) -> dict:
    return {"method": "weighted_sum", "models": [str(a), str(b)], **extra}


def test_missing_keys_error_names_keys_and_writes_nothing(make_ckpt: Ckpt, tmp_path: Path):
    a = random_state(SD1_KEYS, 1)
    b = {k: v for k, v in random_state(SD1_KEYS, 2).items() if k != TE}
    out = tmp_path / "o.safetensors"
    with pytest.raises(MergeInputError, match=r"models\.1 lacks 1 key.*mlp\.fc1\.weight"):
        merge(parse_config(ws(make_ckpt("a", a), make_ckpt("b", b))), out)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_missing_keys_copy_base_policy(make_ckpt: Ckpt, tmp_path: Path) -> None:
    a = random_state(SD1_KEYS, 1)
    b = {k: v for k, v in random_state(SD1_KEYS, 2).items() if k != TE}
    b["model_ema.extra"] = np.ones(3, np.float32)  # only in B: dropped, and reported
    recipe = ws(make_ckpt("a", a), make_ckpt("b", b), on_missing="copy_base")
    report = merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)
    out = load_file(str(tmp_path / "o.safetensors"))
    np.testing.assert_array_equal(out[TE], a[TE])
    np.testing.assert_allclose(out[MID], 0.5 * a[MID] + 0.5 * b[MID], atol=1e-6)
    assert report.copied_missing == [TE] and report.dropped == ["model_ema.extra"]
    assert report.merged == len(SD1_KEYS) - 1 and report.copied_non_float == 1
    assert "model_ema.extra" not in out


def test_shape_mismatch_error_and_copy_base(make_ckpt: Ckpt, tmp_path: Path) -> None:
    a = random_state(SD1_KEYS, 1)
    b = random_state(SD1_KEYS, 2) | {MID: np.zeros((5, 6), np.float32)}
    pa, pb = make_ckpt("a", a), make_ckpt("b", b)
    with pytest.raises(MergeInputError, match=r"another shape.*to_q\.weight \[5, 5\] vs \[5, 6\]"):
        merge(parse_config(ws(pa, pb)), tmp_path / "o.safetensors")
    report = merge(
        parse_config(ws(pa, pb, on_shape_mismatch="copy_base")),
        tmp_path / "o.safetensors",
        hash_sources=False,
    )
    assert report.copied_mismatch == [MID]
    np.testing.assert_array_equal(load_file(str(tmp_path / "o.safetensors"))[MID], a[MID])


def test_sd1_and_sdxl_cannot_be_merged(make_ckpt: Ckpt, tmp_path: Path) -> None:
    pa = make_ckpt("sd15", random_state(SD1_KEYS, 1))
    pb = make_ckpt("sdxl", random_state(SDXL_KEYS, 2))
    with pytest.raises(MergeInputError, match=r"sdxl checkpoint but sd15\.safetensors is sd1"):
        merge(parse_config(ws(pa, pb)), tmp_path / "o.safetensors")


def test_metadata_records_recipe_and_source_hashes(make_ckpt: Ckpt, tmp_path: Path) -> None:
    pa, pb = make_ckpt("a", random_state(SD1_KEYS, 1)), make_ckpt("b", random_state(SD1_KEYS, 2))
    report = merge(parse_config(ws(pa, pb, parameters={"alpha": 0.25})), tmp_path / "o.safetensors")
    with safe_open(str(tmp_path / "o.safetensors"), framework="numpy") as f:
        meta = f.metadata()
    recipe = json.loads(meta["genguard.merge.recipe"])
    assert recipe["method"] == "weighted_sum" and recipe["parameters"] == {"alpha": 0.25}
    assert [m["model"] for m in recipe["models"]] == ["a.safetensors", "b.safetensors"]
    sources = json.loads(meta["genguard.sources"])
    for src, path in zip(sources, (pa, pb), strict=True):
        assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["genguard.merge.architecture"] == "sd1" and meta["format"] == "pt"
    assert report.sources == sources


@pytest.mark.parametrize(
    ("dtype", "expected"), [("fp16", "F16"), ("bf16", "BF16"), ("fp32", "F32"), ("auto", "F16")]
)
def test_output_dtypes(make_ckpt: Ckpt, tmp_path: Path, dtype: str, expected: str) -> None:
    a = random_state(SD1_KEYS, 1, np.float16)
    b = random_state(SD1_KEYS, 2, np.float16)
    merge(
        parse_config(ws(make_ckpt("a", a), make_ckpt("b", b), dtype=dtype)),
        tmp_path / "o.safetensors",
        hash_sources=False,
    )
    with SafetensorsReader(tmp_path / "o.safetensors") as r:
        assert r.tensors[MID].dtype == expected
        assert r.tensors[POSITION_IDS].dtype == "I64"  # integers are never converted
        ref = 0.5 * a[MID].astype(np.float32) + 0.5 * b[MID].astype(np.float32)
        np.testing.assert_allclose(r.read_float32(MID), ref, rtol=1e-2, atol=1e-2)
        np.testing.assert_array_equal(r.read_raw(POSITION_IDS), a[POSITION_IDS])


def test_realistic_layout_fp16_to_bf16_roundtrip(tmp_path: Path) -> None:
    layout = sd1_layout(channels=8, context=8, vocab=16, text_layers=1)
    pa = write_synthetic_checkpoint(tmp_path / "a.safetensors", layout, seed=1)
    pb = write_synthetic_checkpoint(tmp_path / "b.safetensors", layout, seed=2, dtype="BF16")
    report = merge(
        parse_config(ws(pa, pb, dtype="fp32", parameters={"alpha": 0.0})),
        tmp_path / "o.safetensors",
        hash_sources=False,
    )
    assert report.architecture == "sd1" and report.merged == len(layout)
    with SafetensorsReader(pa) as ra, SafetensorsReader(tmp_path / "o.safetensors") as ro:
        for key in list(layout)[::50]:  # alpha=0 reproduces A exactly
            np.testing.assert_array_equal(ro.read_float32(key), ra.read_float32(key))


def test_missing_file_and_non_safetensors_input(make_ckpt: Ckpt, tmp_path: Path) -> None:
    pa = make_ckpt("a", random_state(SD1_KEYS, 1))
    with pytest.raises(MergeInputError, match=r"models\.1: .*absent\.safetensors: no such file"):
        merge(parse_config(ws(pa, tmp_path / "absent.safetensors")), tmp_path / "o.safetensors")
    ckpt = tmp_path / "old.ckpt"
    ckpt.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(SafetensorsFormatError, match="convert it to safetensors"):
        merge(parse_config(ws(pa, ckpt)), tmp_path / "o.safetensors")


def test_output_may_not_overwrite_an_input(make_ckpt: Ckpt) -> None:
    pa, pb = make_ckpt("a", random_state(SD1_KEYS, 1)), make_ckpt("b", random_state(SD1_KEYS, 2))
    with pytest.raises(MergeInputError, match="is one of the inputs"):
        merge(parse_config(ws(pa, pb)), pa)


def test_custom_method_registry_and_cleanup_on_failure(make_ckpt: Ckpt, tmp_path: Path) -> None:
    calls: list[str] = []

    @register_merge_method(
        "test_fail_midway", description="fails on the 3rd tensor", min_models=2, max_models=2
    )
    def fail(ctx):
        calls.append(ctx.key)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return ctx.tensors[0]

    try:
        with pytest.raises(ConfigError, match="already registered"):
            register_merge_method("test_fail_midway", description="dup")(fail)
        pa = make_ckpt("a", random_state(SD1_KEYS, 1))
        pb = make_ckpt("b", random_state(SD1_KEYS, 2))
        recipe = {"method": "test_fail_midway", "models": [str(pa), str(pb)]}
        with pytest.raises(RuntimeError, match="boom"):
            merge(parse_config(recipe), tmp_path / "o.safetensors")
        assert len(calls) == 3
        assert not (tmp_path / "o.safetensors").exists()
        assert not list(tmp_path.glob("*.partial"))  # no truncated checkpoint left behind
    finally:
        MERGE_METHODS.remove("test_fail_midway")


def test_progress_reports_bytes_up_to_total(make_ckpt: Ckpt, tmp_path: Path) -> None:
    pa, pb = make_ckpt("a", random_state(SD1_KEYS, 1)), make_ckpt("b", random_state(SD1_KEYS, 2))
    seen: list[tuple[int, int]] = []
    report = merge(
        parse_config(ws(pa, pb)),
        tmp_path / "o.safetensors",
        progress=lambda done, total, key: seen.append((done, total)),
    )
    assert len(seen) == len(SD1_KEYS) + 1
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == seen[-1][1] == report.bytes_written


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_zero_dim_tensors_keep_their_shape(make_ckpt: Ckpt, tmp_path: Path, dtype: str) -> None:
    # SD 2.x/SDXL carry logit_scale; SD 1.x files keep model_ema.decay/num_updates as 0-d.
    a, b = random_state(SD1_KEYS, 1), random_state(SD1_KEYS, 2)
    a["cond_stage_model.model.logit_scale"] = np.array(4.0, np.float32)
    b["cond_stage_model.model.logit_scale"] = np.array(2.0, np.float32)
    a["model_ema.decay"], b["model_ema.decay"] = np.array(0.9999, np.float32), np.array(0.5)
    a["model_ema.num_updates"] = np.array(1000, np.int32)
    b["model_ema.num_updates"] = np.array(7, np.int32)
    b["model_ema.decay"] = b["model_ema.decay"].astype(np.float32)
    recipe = ws(make_ckpt("a", a), make_ckpt("b", b), dtype=dtype)
    report = merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)
    out = load_file(str(tmp_path / "o.safetensors")) if dtype == "fp32" else None
    with SafetensorsReader(tmp_path / "o.safetensors") as r:
        assert r.tensors["cond_stage_model.model.logit_scale"].shape == ()
        assert r.read_float32("cond_stage_model.model.logit_scale") == np.float32(3.0)
        assert r.tensors["model_ema.num_updates"].shape == ()
        assert r.read_raw("model_ema.num_updates") == 1000
    assert report.copied_non_float == 2  # position_ids and num_updates
    if out is not None:
        assert out["model_ema.decay"].shape == ()
        np.testing.assert_allclose(out["model_ema.decay"], 0.5 * 0.9999 + 0.25, rtol=1e-6)


def test_float_position_ids_are_copied_not_merged(make_ckpt: Ckpt, tmp_path: Path) -> None:
    # community SD 1.x files often store position_ids as float32 0..76
    a, b = random_state(SD1_KEYS, 1), random_state(SD1_KEYS, 2)
    a[POSITION_IDS] = np.arange(77, dtype=np.float32).reshape(1, 77)
    b[POSITION_IDS] = np.arange(77, dtype=np.float32).reshape(1, 77) * 0.999
    recipe = ws(make_ckpt("a", a), make_ckpt("b", b), parameters={"alpha": 0.3}, dtype="fp16")
    report = merge(parse_config(recipe), tmp_path / "o.safetensors", hash_sources=False)
    out = load_file(str(tmp_path / "o.safetensors"))
    np.testing.assert_array_equal(out[POSITION_IDS], a[POSITION_IDS])
    assert out[POSITION_IDS].dtype == np.float32  # copied as stored, never cast
    assert report.copied_ids == [POSITION_IDS] and report.merged == len(SD1_KEYS)


@pytest.mark.parametrize("first_is_float", [True, False])
def test_float_and_int_position_ids_mix(make_ckpt: Ckpt, tmp_path: Path, first_is_float) -> None:
    a, b = random_state(SD1_KEYS, 1), random_state(SD1_KEYS, 2)
    (a if first_is_float else b)[POSITION_IDS] = np.arange(77, dtype=np.float32).reshape(1, 77)
    merge(parse_config(ws(make_ckpt("a", a), make_ckpt("b", b))), tmp_path / "o.safetensors")
    out = load_file(str(tmp_path / "o.safetensors"))
    np.testing.assert_array_equal(out[POSITION_IDS], a[POSITION_IDS])


def _kohya_lora() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    state = {}
    for name in (
        "lora_unet_down_blocks_0_attentions_0_proj_in",
        "lora_te_text_model_encoder_layers_0_mlp_fc1",
    ):
        state[f"{name}.lora_down.weight"] = rng.standard_normal((4, 8)).astype(np.float32)
        state[f"{name}.lora_up.weight"] = rng.standard_normal((8, 4)).astype(np.float32)
        state[f"{name}.alpha"] = np.array(4.0, np.float32)
    return state


def _diffusers_lora() -> dict[str, np.ndarray]:
    prefix = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    return {
        f"{prefix}.lora.down.weight": np.ones((4, 8), np.float32),
        f"{prefix}.lora.up.weight": np.ones((8, 4), np.float32),
        f"{prefix}.alpha": np.array(4.0, np.float32),
    }


@pytest.mark.parametrize("lora", [_kohya_lora, _diffusers_lora])
@pytest.mark.parametrize("policy", ["error", "copy_base"])
def test_lora_files_are_refused(make_ckpt: Ckpt, tmp_path: Path, lora, policy: str) -> None:
    pa, pl = make_ckpt("a", random_state(SD1_KEYS, 1)), make_ckpt("style_lora", lora())
    recipe = ws(pa, pl, on_missing=policy, on_shape_mismatch=policy)
    with pytest.raises(MergeInputError, match=r"models\.1 \(style_lora\.safetensors\) is a LoRA"):
        merge(parse_config(recipe), tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()

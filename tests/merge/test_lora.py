"""LoRA bake and extract, checked against independently computed references.

The bake references are computed with torch's own layers: a LoRA/LoCon module is a
``down`` layer followed by an ``up`` layer added to the original layer's output, so
``layer(x; W') == layer(x; W) + scale * up(down(x))`` must hold for any input ``x``; that
checks the formula, the alpha scaling and the conv reshapes without reusing our code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from genguard.cli import main
from genguard.merge.blocks import Architecture
from genguard.merge.lora import (
    LoraError,
    LoraSpec,
    bake,
    extract,
    parse_block_strengths,
    parse_lora_arg,
)
from genguard.merge.synthetic import sd1_layout

U = "model.diffusion_model."
TE = "cond_stage_model.transformer.text_model.encoder.layers.0."
# LDM key -> the kohya module name sd-scripts gives it for SD 1.x (diffusers spelling)
ATTN2_K = U + "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
ATTN2_K_KOHYA = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
CONV = U + "input_blocks.4.0.in_layers.2.weight"  # 3x3 conv
CONV_KOHYA = "lora_unet_down_blocks_1_resnets_0_conv1"
PROJ_IN = U + "output_blocks.5.1.proj_in.weight"  # 1x1 conv in SD 1.x
PROJ_IN_KOHYA = "lora_unet_up_blocks_1_attentions_2_proj_in"
TE_Q = TE + "self_attn.q_proj.weight"
TE_Q_KOHYA = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def sd1_state() -> dict[str, np.ndarray]:
    """A tiny SD 1.x checkpoint with the real single-file key layout."""
    rng = _rng(0)
    layout = sd1_layout(channels=8, context=8, vocab=16, text_layers=1)
    return {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in layout.items()}


@pytest.fixture
def base(tmp_path: Path, sd1_state: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "base.safetensors"
    save_file(sd1_state, str(path))
    return path


def _lora_factors(shape: tuple[int, ...], rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """kohya-shaped (up, down) factors for a weight of ``shape``."""
    rng = _rng(seed)
    if len(shape) == 4:
        down = rng.standard_normal((rank, shape[1], shape[2], shape[3])).astype(np.float32)
        up = rng.standard_normal((shape[0], rank, 1, 1)).astype(np.float32)
    else:
        down = rng.standard_normal((rank, shape[1])).astype(np.float32)
        up = rng.standard_normal((shape[0], rank)).astype(np.float32)
    return up, down


def _kohya(
    tmp_path: Path,
    name: str,
    modules: dict[str, tuple[np.ndarray, np.ndarray, float | None]],
) -> Path:
    state: dict[str, np.ndarray] = {}
    for module, (up, down, alpha) in modules.items():
        state[f"{module}.lora_up.weight"] = up
        state[f"{module}.lora_down.weight"] = down
        if alpha is not None:
            state[f"{module}.alpha"] = np.asarray(alpha, dtype=np.float32)
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    return path


def _four_modules(
    tmp_path: Path, sd1_state: dict[str, np.ndarray]
) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]], dict[str, float]]:
    """A kohya LoRA on a linear, a 3x3 conv, a 1x1 conv and a text-encoder weight."""
    shapes = {k: sd1_state[k].shape for k in (ATTN2_K, CONV, PROJ_IN, TE_Q)}
    names = {ATTN2_K: ATTN2_K_KOHYA, CONV: CONV_KOHYA, PROJ_IN: PROJ_IN_KOHYA, TE_Q: TE_Q_KOHYA}
    alphas = {ATTN2_K: 1.0, CONV: 3.0, PROJ_IN: None, TE_Q: 0.5}  # None: alpha = rank
    ranks = {ATTN2_K: 2, CONV: 4, PROJ_IN: 3, TE_Q: 2}
    factors = {k: _lora_factors(shapes[k], ranks[k], i) for i, k in enumerate(shapes)}
    lora = _kohya(tmp_path, "lora", {names[k]: (*factors[k], alphas[k]) for k in shapes})
    scales = {k: (alphas[k] or ranks[k]) / ranks[k] for k in shapes}
    return lora, factors, scales


def test_bake_formula_per_element(tmp_path: Path, base: Path, sd1_state) -> None:
    """W'[o,i,h,w] = W + s * (alpha/r) * sum_r up[o,r] * down[r,i,h,w], written as einsum."""
    lora, factors, scales = _four_modules(tmp_path, sd1_state)
    out = tmp_path / "out.safetensors"
    report = bake(base, [LoraSpec(lora, 0.7)], out)
    assert report.applied == [4] and report.unmapped == [[]] and report.patched == 4
    baked = load_file(str(out))
    for key, (up, down) in factors.items():
        if down.ndim == 4:
            delta = np.einsum("or,rihw->oihw", up[:, :, 0, 0].astype(np.float64), down)
            delta = delta.reshape(sd1_state[key].shape)  # proj_in: (o, i, 1, 1)
        else:
            delta = np.einsum("or,ri->oi", up.astype(np.float64), down)
            delta = delta.reshape(sd1_state[key].shape)
        expected = sd1_state[key] + 0.7 * scales[key] * delta
        np.testing.assert_allclose(baked[key], expected, rtol=1e-5, atol=1e-5)
    assert sum(not np.array_equal(baked[k], v) for k, v in sd1_state.items()) == 4


@pytest.mark.slow  # imports torch
def test_bake_linear_conv3x3_conv1x1_and_text_encoder_match_torch_layers(
    tmp_path: Path, base: Path, sd1_state: dict[str, np.ndarray]
) -> None:
    import torch
    import torch.nn.functional as F

    def _torch(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).double()

    lora, factors, scales = _four_modules(tmp_path, sd1_state)
    out = tmp_path / "out.safetensors"
    report = bake(base, [LoraSpec(lora, 0.7)], out)
    assert report.applied == [4] and report.unmapped == [[]] and report.patched == 4
    baked = load_file(str(out))
    gen = torch.Generator().manual_seed(1)
    for key, factor in factors.items():
        up, down = (_torch(f) for f in factor)
        w, w2 = _torch(sd1_state[key]), _torch(baked[key])
        scale = 0.7 * scales[key]
        if w.ndim == 4:  # LoCon: a conv with the kernel, then a 1x1 conv
            pad = w.shape[-1] // 2
            xin = torch.randn(2, w.shape[1], 6, 6, generator=gen, dtype=torch.float64)
            ref = F.conv2d(xin, w, padding=pad) + scale * F.conv2d(
                F.conv2d(xin, down, padding=pad), up
            )
            got = F.conv2d(xin, w2, padding=pad)
        else:
            xin = torch.randn(5, w.shape[1], generator=gen, dtype=torch.float64)
            ref = F.linear(xin, w) + scale * F.linear(F.linear(xin, down), up)
            got = F.linear(xin, w2)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    untouched = U + "middle_block.1.proj_out.weight"
    np.testing.assert_array_equal(baked[untouched], sd1_state[untouched])


@pytest.mark.slow  # imports diffusers
def test_peft_and_legacy_diffusers_formats_bake_like_kohya(
    tmp_path: Path, base: Path, sd1_state: dict[str, np.ndarray]
) -> None:
    """diffusers' own kohya converter names the modules; both files must bake the same."""
    import torch
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers

    up, down = _lora_factors(sd1_state[ATTN2_K].shape, 2, 5)
    cup, cdown = _lora_factors(sd1_state[CONV].shape, 2, 6)
    tup, tdown = _lora_factors(sd1_state[TE_Q].shape, 2, 7)
    kohya = _kohya(
        tmp_path,
        "kohya",
        {
            ATTN2_K_KOHYA: (up, down, 2.0),
            CONV_KOHYA: (cup, cdown, 2.0),
            TE_Q_KOHYA: (tup, tdown, 2.0),
        },
    )
    converted, _alphas = _convert_non_diffusers_lora_to_diffusers(
        {k: torch.from_numpy(v) for k, v in load_file(str(kohya)).items()}
    )
    legacy = tmp_path / "legacy.safetensors"  # alpha == rank, so none needs carrying over
    save_file({k: v.numpy() for k, v in converted.items()}, str(legacy))
    peft = tmp_path / "peft.safetensors"
    save_file(
        {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": down,
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": up,
            "unet.down_blocks.1.resnets.0.conv1.lora_A.weight": cdown,
            "unet.down_blocks.1.resnets.0.conv1.lora_B.weight": cup,
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": tdown,
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": tup,
        },
        str(peft),
    )
    results = []
    for lora in (kohya, legacy, peft):
        out = tmp_path / f"out-{lora.stem}.safetensors"
        report = bake(base, [LoraSpec(lora)], out)
        assert report.applied == [3], (lora.stem, report.unmapped)
        results.append(load_file(str(out)))
    for key in (ATTN2_K, CONV, TE_Q):
        assert not np.array_equal(results[0][key], sd1_state[key])
        for other in results[1:]:
            np.testing.assert_allclose(other[key], results[0][key], rtol=0, atol=1e-6)


def test_loha_delta_is_the_hadamard_product(tmp_path: Path, base: Path, sd1_state) -> None:
    rng = _rng(3)
    out_f, in_f, r = sd1_state[ATTN2_K].shape[0], sd1_state[ATTN2_K].shape[1], 2
    shapes = {"w1_a": (out_f, r), "w1_b": (r, in_f), "w2_a": (out_f, r), "w2_b": (r, in_f)}
    w = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    state = {f"{ATTN2_K_KOHYA}.hada_{n}": v for n, v in w.items()}
    state[f"{ATTN2_K_KOHYA}.alpha"] = np.asarray(1.0, dtype=np.float32)
    path = tmp_path / "loha.safetensors"
    save_file(state, str(path))
    out = tmp_path / "out.safetensors"
    bake(base, [LoraSpec(path, 2.0)], out)
    expected = sd1_state[ATTN2_K].astype(np.float64) + 2.0 * (1.0 / r) * (
        (w["w1_a"].astype(np.float64) @ w["w1_b"]) * (w["w2_a"].astype(np.float64) @ w["w2_b"])
    )
    np.testing.assert_allclose(load_file(str(out))[ATTN2_K], expected, rtol=1e-5, atol=1e-5)


def test_two_loras_add_with_their_strengths(tmp_path: Path, base: Path, sd1_state) -> None:
    f1 = _lora_factors(sd1_state[ATTN2_K].shape, 2, 10)
    f2 = _lora_factors(sd1_state[ATTN2_K].shape, 4, 11)
    a = _kohya(tmp_path, "a", {ATTN2_K_KOHYA: (*f1, 2.0)})
    b = _kohya(tmp_path, "b", {ATTN2_K_KOHYA: (*f2, 1.0)})
    out = tmp_path / "out.safetensors"
    bake(base, [LoraSpec(a, 0.5), LoraSpec(b, -1.0)], out)
    expected = sd1_state[ATTN2_K] + 0.5 * (f1[0] @ f1[1]) - 1.0 * 0.25 * (f2[0] @ f2[1])
    np.testing.assert_allclose(load_file(str(out))[ATTN2_K], expected, rtol=1e-5, atol=1e-5)


def test_block_strengths_weight_blocks_like_supermerger(
    tmp_path: Path, base: Path, sd1_state
) -> None:
    # IN04 (attn2.to_k), OUT05 (proj_in) and the text encoder (BASE)
    modules = {
        ATTN2_K_KOHYA: (*_lora_factors(sd1_state[ATTN2_K].shape, 2, 20), 2.0),
        PROJ_IN_KOHYA: (*_lora_factors(sd1_state[PROJ_IN].shape, 2, 21), 2.0),
        TE_Q_KOHYA: (*_lora_factors(sd1_state[TE_Q].shape, 2, 22), 2.0),
    }
    lora = _kohya(tmp_path, "lora", modules)

    def delta(key: str, name: str) -> np.ndarray:
        up, down, _ = modules[name]
        return (up.reshape(up.shape[0], -1) @ down.reshape(2, -1)).reshape(sd1_state[key].shape)

    values = ["1"] * 26  # BASE first, then IN00..IN11, M00, OUT00..OUT11
    values[0], values[1 + 4], values[1 + 13 + 5] = "0.25", "0", "0.5"
    for i, text in enumerate((",".join(values), "BASE=0.25,IN04=0,OUT05=0.5")):
        out = tmp_path / f"out{i}.safetensors"
        bake(base, [LoraSpec(lora, 2.0)], out, block_strengths=text)
        baked = load_file(str(out))
        np.testing.assert_array_equal(baked[ATTN2_K], sd1_state[ATTN2_K])  # strength 0
        np.testing.assert_allclose(
            baked[PROJ_IN],
            sd1_state[PROJ_IN] + 2.0 * 0.5 * delta(PROJ_IN, PROJ_IN_KOHYA),
            atol=1e-5,
        )
        np.testing.assert_allclose(
            baked[TE_Q], sd1_state[TE_Q] + 2.0 * 0.25 * delta(TE_Q, TE_Q_KOHYA), atol=1e-5
        )


def test_block_strength_forms() -> None:
    sd1 = Architecture.SD1
    lbw = parse_block_strengths(",".join(str(i) for i in range(17)), sd1)
    assert lbw["BASE"] == 0 and lbw["IN01"] == 1 and lbw["M00"] == 7 and lbw["OUT11"] == 16
    assert lbw["IN00"] == 1.0 and lbw["OUT00"] == 1.0  # not in the 17-value form
    only_blocks = parse_block_strengths(",".join(["0.5"] * 25), sd1)
    assert only_blocks["BASE"] == 1.0 and only_blocks["OUT11"] == 0.5
    xl = parse_block_strengths(",".join(["0"] * 12), Architecture.SDXL)
    assert xl["OUT05"] == 0 and xl["OUT08"] == 1.0
    from genguard.errors import ConfigError

    for bad, msg in (
        ("1,2,3", "takes 25 values"),
        ("IN99=1", "unknown block IN99"),
        ("M00=y", "not a number"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_block_strengths(bad, sd1)


def test_parse_lora_arg() -> None:
    assert parse_lora_arg("a.safetensors:0.6") == LoraSpec(Path("a.safetensors"), 0.6)
    assert parse_lora_arg("dir/a.safetensors") == LoraSpec(Path("dir/a.safetensors"), 1.0)
    assert parse_lora_arg("C:/a.safetensors") == LoraSpec(Path("C:/a.safetensors"), 1.0)
    assert parse_lora_arg("a.safetensors:-1") == LoraSpec(Path("a.safetensors"), -1.0)


def test_unmapped_modules_are_reported_and_a_foreign_lora_is_refused(
    tmp_path: Path, base: Path, sd1_state
) -> None:
    good = _lora_factors(sd1_state[ATTN2_K].shape, 2, 1)
    stray = _lora_factors((4, 4), 2, 2)
    mixed = _kohya(
        tmp_path, "mixed", {ATTN2_K_KOHYA: (*good, 2.0), "lora_unet_no_such_layer": (*stray, 2.0)}
    )
    report = bake(base, [LoraSpec(mixed)], tmp_path / "o.safetensors")
    assert report.applied == [1] and report.unmapped == [["lora_unet_no_such_layer"]]
    flux = _kohya(tmp_path, "flux", {"lora_unet_double_blocks_0_img_attn_qkv": (*stray, 2.0)})
    with pytest.raises(LoraError, match="another model family"):
        bake(base, [LoraSpec(flux)], tmp_path / "o2.safetensors")
    assert not (tmp_path / "o2.safetensors").exists()


def test_bad_loras_fail_naming_the_key(tmp_path: Path, base: Path, sd1_state) -> None:
    up, down = _lora_factors(sd1_state[ATTN2_K].shape, 2, 1)
    cases = {
        "rank": ({ATTN2_K_KOHYA: (up, down[:1], 2.0)}, "rank mismatch"),
        "shape": ({ATTN2_K_KOHYA: (up[:3], down, 2.0)}, "does not fit"),
        "nan": ({ATTN2_K_KOHYA: (up, np.where(down == down.max(), np.nan, down), 2.0)}, "NaN"),
    }
    for name, (modules, message) in cases.items():
        lora = _kohya(tmp_path, name, modules)
        out = tmp_path / f"{name}.out.safetensors"
        with pytest.raises(LoraError, match=message) as info:
            bake(base, [LoraSpec(lora)], out)
        assert ATTN2_K_KOHYA in str(info.value) and "\n" not in str(info.value)
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    lokr = tmp_path / "lokr.safetensors"
    save_file({f"{ATTN2_K_KOHYA}.lokr_w1": up, f"{ATTN2_K_KOHYA}.lokr_w2": down}, str(lokr))
    with pytest.raises(LoraError, match="LoKr is not supported"):
        bake(base, [LoraSpec(lokr)], tmp_path / "x.safetensors")


def test_nan_in_a_patched_base_tensor_is_refused(tmp_path: Path, sd1_state) -> None:
    state = dict(sd1_state)
    state[ATTN2_K] = state[ATTN2_K].copy()
    state[ATTN2_K][0, 0] = np.inf
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    lora = _kohya(tmp_path, "l", {ATTN2_K_KOHYA: (*_lora_factors(state[ATTN2_K].shape, 2, 0), 2.0)})
    with pytest.raises(LoraError, match=f"bad.safetensors: {ATTN2_K} contains NaN or inf"):
        bake(path, [LoraSpec(lora)], tmp_path / "o.safetensors")


def test_openclip_qkv_lora_patches_its_third_of_in_proj(tmp_path: Path) -> None:
    """SD 2.x: q/k/v LoRAs (HF names) patch the fused in_proj_weight rows."""
    d = 4
    p = "cond_stage_model.model.transformer.resblocks.0."
    rng = _rng(4)
    state = {
        U + "input_blocks.1.1.proj_in.weight": rng.standard_normal((d, d)).astype(np.float32),
        p + "attn.in_proj_weight": rng.standard_normal((3 * d, d)).astype(np.float32),
        p + "attn.in_proj_bias": rng.standard_normal(3 * d).astype(np.float32),
        p + "mlp.c_fc.weight": rng.standard_normal((4 * d, d)).astype(np.float32),
    }
    path = tmp_path / "sd2.safetensors"
    save_file(state, str(path))
    k = _lora_factors((d, d), 2, 8)
    fc = _lora_factors((4 * d, d), 2, 9)
    lora = _kohya(
        tmp_path,
        "te",
        {
            "lora_te_text_model_encoder_layers_0_self_attn_k_proj": (*k, 2.0),
            "lora_te_text_model_encoder_layers_0_mlp_fc1": (*fc, 1.0),
        },
    )
    out = tmp_path / "o.safetensors"
    assert bake(path, [LoraSpec(lora)], out).applied == [2]
    baked = load_file(str(out))
    expected = state[p + "attn.in_proj_weight"].copy()
    expected[d : 2 * d] += k[0] @ k[1]
    np.testing.assert_allclose(baked[p + "attn.in_proj_weight"], expected, atol=1e-5)
    np.testing.assert_allclose(
        baked[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.weight"] + 0.5 * fc[0] @ fc[1], atol=1e-5
    )


def test_sdxl_kohya_names_use_ldm_unet_and_te1_te2(tmp_path: Path) -> None:
    rng = _rng(5)
    keys = {
        U + "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight": (6, 6),
        U + "input_blocks.7.0.op.weight": (6, 6, 3, 3),
        U + "label_emb.0.0.weight": (6, 4),
        "conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight": (8, 4),
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (12, 4),
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.out_proj.weight": (4, 4),
    }
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in keys.items()}
    path = tmp_path / "xl.safetensors"
    save_file(state, str(path))
    names = [
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
        "lora_te1_text_model_encoder_layers_0_mlp_fc1",
        "lora_te2_text_model_encoder_layers_0_self_attn_v_proj",
        "lora_te2_text_model_encoder_layers_0_self_attn_out_proj",
    ]
    lora_keys = list(keys)[:1] + list(keys)[3:]
    modules = {
        n: (*_lora_factors(state[k].shape if "in_proj" not in k else (4, 4), 1, i), 1.0)
        for i, (n, k) in enumerate(zip(names, lora_keys, strict=True))
    }
    lora = _kohya(tmp_path, "xl-lora", modules)
    out = tmp_path / "o.safetensors"
    report = bake(path, [LoraSpec(lora)], out)
    assert report.architecture == "sdxl" and report.applied == [4]
    baked = load_file(str(out))
    fused = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
    up, down, _ = modules[names[2]]
    np.testing.assert_allclose(baked[fused][8:], state[fused][8:] + up @ down, atol=1e-5)
    np.testing.assert_array_equal(baked[fused][:8], state[fused][:8])


# --------------------------------------------------------------------- extract


def _pair(tmp_path: Path, sd1_state, deltas: dict[str, np.ndarray]) -> tuple[Path, Path]:
    base = tmp_path / "base.safetensors"
    tuned = tmp_path / "tuned.safetensors"
    save_file(sd1_state, str(base))
    save_file({k: v + deltas.get(k, 0) for k, v in sd1_state.items()}, str(tuned))
    return tuned, base


def test_extract_recovers_a_known_rank_difference(tmp_path: Path, sd1_state) -> None:
    rng = _rng(30)
    deltas = {}
    for key, r in ((ATTN2_K, 2), (CONV, 3), (TE_Q, 1)):
        shape = sd1_state[key].shape
        a = rng.standard_normal((shape[0], r))
        b = rng.standard_normal((r, int(np.prod(shape[1:]))))
        deltas[key] = (0.1 * a @ b).reshape(shape).astype(np.float32)
    tuned, base = _pair(tmp_path, sd1_state, deltas)
    lora = tmp_path / "lora.safetensors"
    report = extract(tuned, base, lora, rank=3, dtype="fp32")
    assert report.modules == 3 and report.worst_relative_error < 1e-5
    saved = load_file(str(lora))
    assert saved[f"{CONV_KOHYA}.lora_down.weight"].shape == (3, *sd1_state[CONV].shape[1:])
    assert saved[f"{CONV_KOHYA}.lora_up.weight"].shape == (sd1_state[CONV].shape[0], 3, 1, 1)
    assert float(saved[f"{ATTN2_K_KOHYA}.alpha"]) == 3.0
    out = tmp_path / "rebaked.safetensors"
    bake(base, [LoraSpec(lora)], out)
    rebaked, target = load_file(str(out)), load_file(str(tuned))
    for key in (ATTN2_K, CONV, TE_Q):
        np.testing.assert_allclose(rebaked[key], target[key], rtol=0, atol=1e-5)


def test_extract_error_is_that_of_the_dropped_singular_values(tmp_path: Path, sd1_state) -> None:
    rng = _rng(31)
    key = U + "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight"
    delta = (0.05 * rng.standard_normal(sd1_state[key].shape)).astype(np.float32)
    tuned, base = _pair(tmp_path, sd1_state, {key: delta})
    lora = tmp_path / "lora.safetensors"
    rank = 4
    report = extract(tuned, base, lora, rank=rank, dtype="fp32")
    assert report.modules == 1
    s = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
    predicted = np.sqrt(np.sum(s[rank:] ** 2))
    out = tmp_path / "rebaked.safetensors"
    bake(base, [LoraSpec(lora)], out)
    error = np.linalg.norm(load_file(str(out))[key].astype(np.float64) - load_file(str(tuned))[key])
    assert error == pytest.approx(predicted, rel=1e-4)
    assert report.worst_relative_error == pytest.approx(predicted / np.linalg.norm(s), rel=1e-6)


def test_cli_bake_and_extract_round_trip(tmp_path: Path, sd1_state, capsys) -> None:
    rng = _rng(40)
    shape = sd1_state[PROJ_IN].shape
    delta = 0.1 * rng.standard_normal((shape[0], 1)) @ rng.standard_normal((1, shape[1]))
    tuned, base = _pair(tmp_path, sd1_state, {PROJ_IN: delta.reshape(shape).astype(np.float32)})
    lora = tmp_path / "lora.safetensors"
    args = ["lora", "extract", str(tuned), str(base), "--rank", "2", "-o", str(lora)]
    assert main(args) == 0
    assert "1 module(s) at rank 2" in capsys.readouterr().err
    out = tmp_path / "out.safetensors"
    assert main(["lora", "bake", str(base), f"{lora}:0.5", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 module(s) applied" in err and "1 of" in err
    np.testing.assert_allclose(
        load_file(str(out))[PROJ_IN], sd1_state[PROJ_IN] + 0.5 * delta.reshape(shape), atol=1e-5
    )
    assert main(["lora", "bake", str(base), str(lora), "-o", str(out)]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert main(["lora", "bake", str(base), str(tuned), "-o", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "not a LoRA" in err and "Traceback" not in err and err.count("\n") == 1


def test_extract_refuses_identical_models(tmp_path: Path, sd1_state) -> None:
    tuned, base = _pair(tmp_path, sd1_state, {})
    with pytest.raises(LoraError, match="does not differ"):
        extract(tuned, base, tmp_path / "l.safetensors", rank=4)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_gram_path_for_big_weights_gives_the_best_approximation(shape: tuple[int, int]) -> None:
    """Big weights skip the full SVD; the result must still be the Eckart-Young optimum."""
    from genguard.merge.lora import _gram_low_rank

    rng = _rng(50)
    d = rng.standard_normal((shape[0], 6)) @ rng.standard_normal((6, shape[1]))
    d += 0.01 * rng.standard_normal(shape)
    up, down, err = _gram_low_rank(d, 4)
    u, s, vt = np.linalg.svd(d, full_matrices=False)
    best = (u[:, :4] * s[:4]) @ vt[:4]
    assert up.shape == (shape[0], 4) and down.shape == (4, shape[1])
    np.testing.assert_allclose(up.astype(np.float64) @ down, best, rtol=0, atol=1e-5)
    assert err == pytest.approx(np.sqrt(np.sum(s[4:] ** 2)), rel=1e-6)

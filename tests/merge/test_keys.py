"""diffusers <-> single-file (LDM) key conversion, checked against diffusers' own converter.

The peer: ``diffusers.loaders.single_file_utils.convert_ldm_*_checkpoint`` turn an LDM
state dict into diffusers names. We convert a real (tiny) diffusers model's state dict to
LDM with keys.py, hand it to diffusers' converter, and must get the original back, every
key and every tensor. The fast tests use the real SD 1.x key layout of synthetic.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from genguard.merge.blocks import Architecture, detect_architecture
from genguard.merge.config import parse_config
from genguard.merge.engine import merge
from genguard.merge.keys import (
    DiffusersFolderReader,
    TextEncoderKind,
    Transform,
    diffusers_to_ldm,
    is_diffusers_folder,
    ldm_to_diffusers,
    sd_components,
)
from genguard.merge.safetensors_io import SafetensorsFormatError
from genguard.merge.synthetic import sd1_layout

SD1 = sd_components(TextEncoderKind.CLIP, sdxl=False)
SD2 = sd_components(TextEncoderKind.OPENCLIP, sdxl=False)
SDXL = sd_components(TextEncoderKind.CLIP, sdxl=True)


def _component(comps: list, folder: str) -> Any:
    return next(c for c in comps if c.folder == folder)


# ------------------------------------------------------------ fast: key names only


def test_real_sd1_unet_layout_round_trips_with_known_anchors() -> None:
    keys = [k for k in sd1_layout(8, 8, 16, 1) if k.startswith("model.diffusion_model.")]
    back = ldm_to_diffusers(keys, SD1)
    names = {k: v[0][1] for k, v in back.items()}
    assert all(len(v) == 1 for v in back.values()), [k for k, v in back.items() if len(v) != 1]
    u = "model.diffusion_model."
    anchors = {
        "model.diffusion_model.input_blocks.0.0.weight": "conv_in.weight",
        "model.diffusion_model.time_embed.2.bias": "time_embedding.linear_2.bias",
        u + "input_blocks.3.0.op.weight": "down_blocks.0.downsamplers.0.conv.weight",
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight": (
            "down_blocks.1.resnets.0.conv_shortcut.weight"
        ),
        "model.diffusion_model.input_blocks.11.0.emb_layers.1.weight": (
            "down_blocks.3.resnets.1.time_emb_proj.weight"
        ),
        u + "middle_block.2.out_layers.3.weight": "mid_block.resnets.1.conv2.weight",
        u + "middle_block.1.proj_in.weight": "mid_block.attentions.0.proj_in.weight",
        u + "output_blocks.2.1.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.bias": "up_blocks.1.upsamplers.0.conv.bias",
        "model.diffusion_model.output_blocks.8.1.transformer_blocks.0.attn2.to_k.weight": (
            "up_blocks.2.attentions.2.transformer_blocks.0.attn2.to_k.weight"
        ),
        "model.diffusion_model.out.2.weight": "conv_out.weight",
    }
    for ldm, diffusers in anchors.items():
        assert names[ldm] == diffusers
    unet = _component(SD1, "unet")
    forward = diffusers_to_ldm(names.values(), unet)
    assert {t.key for t in forward.values()} == set(keys)
    assert all(forward[names[k]].key == k for k in keys)


def test_unknown_component_keys_are_refused_by_name() -> None:
    with pytest.raises(SafetensorsFormatError, match=r"1 key.*no single-file name: foo\.weight"):
        diffusers_to_ldm(["down_blocks.0.resnets.0.conv1.weight", "foo.weight"], SD1[0])


def test_openclip_names_fuse_qkv_and_transpose_the_projection() -> None:
    te = _component(SDXL, "text_encoder_2")
    keys = [
        "text_model.encoder.layers.3.self_attn.v_proj.weight",
        "text_model.encoder.layers.3.self_attn.k_proj.bias",
        "text_model.encoder.layers.3.mlp.fc2.weight",
        "text_projection.weight",
    ]
    m = diffusers_to_ldm(keys, te)
    p = "conditioner.embedders.1.model."
    assert m[keys[0]].key == p + "transformer.resblocks.3.attn.in_proj_weight"
    assert m[keys[0]].part == 2 and m[keys[1]].part == 1
    assert m[keys[2]].key == p + "transformer.resblocks.3.mlp.c_proj.weight"
    assert m[keys[3]].key == p + "text_projection" and m[keys[3]].transform is Transform.TRANSPOSE
    back = ldm_to_diffusers([p + "transformer.resblocks.3.attn.in_proj_weight"], SDXL)
    assert [d for _, d, _ in next(iter(back.values()))] == [
        f"text_model.encoder.layers.3.self_attn.{x}_proj.weight" for x in "qkv"
    ]


def test_a_plain_folder_is_not_a_diffusers_model(tmp_path: Path) -> None:
    assert not is_diffusers_folder(tmp_path)
    (tmp_path / "unet").mkdir()
    assert is_diffusers_folder(tmp_path)
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(SafetensorsFormatError, match=r"only pickle \(.bin\) weights"):
        DiffusersFolderReader(tmp_path)


# ----------------------------------------------- slow: real diffusers/transformers models


def _tiny_unet(sdxl: bool) -> Any:
    from diffusers import UNet2DConditionModel

    if sdxl:  # SDXL's structure: no attention at the top level, text_time embedding
        return UNet2DConditionModel(
            block_out_channels=(8, 16, 16),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 2),
            cross_attention_dim=12,
            attention_head_dim=2,
            norm_num_groups=4,
            addition_embed_type="text_time",
            addition_time_embed_dim=4,
            projection_class_embeddings_input_dim=4 * 6 + 8,
            use_linear_projection=True,
            sample_size=8,
        )
    return UNet2DConditionModel(  # SD 1.x's structure (4 levels, 2 layers), tiny widths
        block_out_channels=(8, 16, 32, 32),  # SD 1.x's 1:2:4:4 (x 320)
        layers_per_block=2,
        cross_attention_dim=12,
        attention_head_dim=2,
        norm_num_groups=4,
        sample_size=8,
    )


def _tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=2,
    )


def _tiny_clip(act: str, projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=32,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=6,
        hidden_act=act,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _to_ldm(state: dict[str, Any], component: Any) -> dict[str, Any]:
    """Apply keys.py's mapping to a torch state dict (fusing and reshaping as told)."""
    import torch

    parts: dict[str, list[tuple[int, Any]]] = {}
    out = {}
    for dkey, target in diffusers_to_ldm(state, component).items():
        value = state[dkey]
        if target.transform is Transform.TRANSPOSE:
            value = value.T.contiguous()
        elif target.transform is Transform.CONV1X1:
            value = value.reshape(*value.shape, 1, 1)
        if target.part is None:
            out[target.key] = value
        else:
            parts.setdefault(target.key, []).append((target.part, value))
    for key, chunks in parts.items():
        out[key] = torch.cat([v for _, v in sorted(chunks, key=lambda c: c[0])])
    return out


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    import torch

    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


@pytest.mark.slow
@pytest.mark.parametrize("sdxl", [False, True])
def test_unet_conversion_agrees_with_diffusers_converter(sdxl: bool) -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = _tiny_unet(sdxl)
    state = unet.state_dict()
    comps = SDXL if sdxl else SD1
    ldm = _to_ldm(state, _component(comps, "unet"))
    assert len(ldm) == len(state)
    arch = detect_architecture(ldm)
    assert arch is (Architecture.SDXL if sdxl else Architecture.SD1)
    _assert_same(convert_ldm_unet_checkpoint(ldm, dict(unet.config)), state)
    back = ldm_to_diffusers(ldm, comps)
    assert sorted(d for v in back.values() for _, d, _ in v) == sorted(state)
    if not sdxl:  # the same names as the real SD 1.x single-file layout
        real = sd1_layout(channels=8, context=12)
        unet_shapes = {k: s for k, s in real.items() if k.startswith("model.diffusion_model.")}
        assert {k: tuple(v.shape) for k, v in ldm.items()} == unet_shapes


@pytest.mark.slow
def test_vae_conversion_agrees_with_diffusers_converter() -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = _tiny_vae()
    state = vae.state_dict()
    ldm = _to_ldm(state, _component(SD1, "vae"))
    assert ldm["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (16, 16, 1, 1)
    assert "first_stage_model.decoder.up.0.block.2.conv1.weight" in ldm  # reversed numbering
    _assert_same(convert_ldm_vae_checkpoint(ldm, dict(vae.config)), state)
    back = ldm_to_diffusers(ldm, SD1)
    assert sorted(d for v in back.values() for _, d, _ in v) == sorted(state)


@pytest.mark.slow
def test_text_encoders_agree_with_diffusers_converters() -> None:
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_open_clip_checkpoint,
    )

    clip = _tiny_clip("quick_gelu")
    state = clip.state_dict()
    state.pop("text_model.embeddings.position_ids", None)
    ldm = _to_ldm(state, _component(SD1, "text_encoder"))
    _assert_same(convert_ldm_clip_checkpoint(ldm), state)

    big = _tiny_clip("gelu", projection=True)  # SDXL's second encoder
    state = {k: v for k, v in big.state_dict().items() if not k.endswith("position_ids")}
    te2 = _component(SDXL, "text_encoder_2")
    ldm = _to_ldm(state, te2)
    assert ldm[te2.prefix + "transformer.resblocks.1.attn.in_proj_weight"].shape == (24, 8)
    _assert_same(convert_open_clip_checkpoint(big, ldm, prefix=te2.prefix), state)


@pytest.fixture(scope="module")
def sd1_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny SD 1.x pipelines saved with save_pretrained (diffusers layout)."""
    import torch

    folders = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        root = tmp_path_factory.mktemp(f"pipe{seed}")
        _tiny_unet(False).save_pretrained(root / "unet")
        _tiny_clip("quick_gelu").save_pretrained(root / "text_encoder")
        _tiny_vae().save_pretrained(root / "vae")
        (root / "model_index.json").write_text("{}", encoding="utf-8")
        folders.append(root)
    return folders[0], folders[1]


@pytest.mark.slow
def test_folder_reader_presents_ldm_names(sd1_folders: tuple[Path, Path]) -> None:
    folder = sd1_folders[0]
    unet = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    vae = load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors"))
    with DiffusersFolderReader(folder) as reader:
        assert detect_architecture(reader.tensors) is Architecture.SD1
        key = "model.diffusion_model.output_blocks.5.2.conv.weight"
        np.testing.assert_array_equal(
            reader.read_float32(key), unet["up_blocks.1.upsamplers.0.conv.weight"]
        )
        q = reader.read_float32("first_stage_model.encoder.mid.attn_1.q.weight")
        assert q.shape == (16, 16, 1, 1)
        np.testing.assert_array_equal(
            q[:, :, 0, 0], vae["encoder.mid_block.attentions.0.to_q.weight"]
        )
        n = (
            len(unet)
            + len(vae)
            + len(load_file(str(folder / "text_encoder" / "model.safetensors")))
        )
        assert len(reader.tensors) == n


@pytest.mark.slow
def test_diffusers_folders_merge_like_single_files(
    tmp_path: Path, sd1_folders: tuple[Path, Path]
) -> None:
    a, b = sd1_folders
    single = tmp_path / "b.safetensors"
    with DiffusersFolderReader(b) as reader:
        save_file({k: reader.read_float32(k) for k in reader.tensors}, str(single))
    out = tmp_path / "merged.safetensors"
    cfg = parse_config(
        {"method": "weighted_sum", "models": [str(a), str(single)], "parameters": {"alpha": 0.25}}
    )
    report = merge(cfg, out)
    assert report.architecture == "sd1" and report.merged == report.tensors
    merged = load_file(str(out))
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    ua = load_file(str(a / "unet" / "diffusion_pytorch_model.safetensors"))
    ub = load_file(str(b / "unet" / "diffusion_pytorch_model.safetensors"))
    dkey = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    np.testing.assert_allclose(merged[key], 0.75 * ua[dkey] + 0.25 * ub[dkey], atol=1e-6)
    assert len(report.sources[0]["sha256"]) == 64


@pytest.mark.slow
def test_sdxl_folder_fuses_openclip_qkv_and_bakes_a_lora(tmp_path: Path) -> None:
    import torch

    from genguard.merge.lora import LoraSpec, bake

    torch.manual_seed(3)
    root = tmp_path / "xl"
    _tiny_unet(True).save_pretrained(root / "unet")
    _tiny_clip("quick_gelu").save_pretrained(root / "text_encoder")
    _tiny_clip("gelu", projection=True).save_pretrained(root / "text_encoder_2")
    te2 = load_file(str(root / "text_encoder_2" / "model.safetensors"))
    p = "conditioner.embedders.1.model."
    with DiffusersFolderReader(root) as reader:
        assert detect_architecture(reader.tensors) is Architecture.SDXL
        fused = reader.read_float32(p + "transformer.resblocks.1.attn.in_proj_bias")
        layer = "text_model.encoder.layers.1.self_attn."
        want = np.concatenate([te2[f"{layer}{x}_proj.bias"] for x in "qkv"])
        np.testing.assert_array_equal(fused, want)
        proj = reader.read_float32(p + "text_projection")
        np.testing.assert_array_equal(proj, te2["text_projection.weight"].T)
    rng = np.random.default_rng(0)
    up, down = rng.standard_normal((8, 2)), rng.standard_normal((2, 8))
    lora = tmp_path / "l.safetensors"
    save_file(
        {
            "lora_te2_text_model_encoder_layers_1_self_attn_v_proj.lora_up.weight": up,
            "lora_te2_text_model_encoder_layers_1_self_attn_v_proj.lora_down.weight": down,
        },
        str(lora),
    )
    out = tmp_path / "baked.safetensors"
    assert bake(root, [LoraSpec(lora)], out).applied == [1]
    w = load_file(str(out))[p + "transformer.resblocks.1.attn.in_proj_weight"]
    np.testing.assert_allclose(w[16:], te2[f"{layer}v_proj.weight"] + up @ down, atol=1e-5)
    np.testing.assert_array_equal(
        w[:16], np.concatenate([te2[f"{layer}{x}_proj.weight"] for x in "qk"])
    )

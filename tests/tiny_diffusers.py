"""A random-weight Stable-Diffusion-shaped pipeline, built locally (no download).

Modelled on the tiny components diffusers' own tests use: 32/64-channel UNet and VAE,
a 2-layer CLIP text encoder and a character-level CLIP tokenizer written to disk here.
It draws noise-like pictures, which is all a gateway test needs: a real pipeline loaded
through the ``diffusers`` generator, seeded, on CPU in about a second.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any


def _tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A character-level BPE vocabulary (no merges) that CLIPTokenizer accepts."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits + ",.-'!?":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n", encoding="utf-8")
    return vocab_path, merges_path


def _tokenizer_and_text_config(folder: Path) -> tuple[Any, Any]:
    """The character-level CLIP tokenizer and a 2-layer, 32-wide text-encoder config."""
    from transformers import CLIPTextConfig, CLIPTokenizer

    vocab_path, merges_path = _tokenizer_files(folder / "tokenizer-src")
    tokenizer = CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=77)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=32,
    )
    return tokenizer, config


def _tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
    )


def build_tiny_pipeline(folder: Path) -> Path:
    """Build, save with ``save_pretrained`` and return the pipeline folder."""
    import torch
    from diffusers import (
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tokenizer, config = _tokenizer_and_text_config(folder)
    text_encoder = CLIPTextModel(config)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipe")
    return folder / "pipe"


def build_tiny_sdxl_pipeline(folder: Path) -> Path:
    """An SDXL-layout pipeline (two text encoders, ``text_time`` conditioning, no checker
    slot), after the dummy components of diffusers' own SDXL tests; saved and returned."""
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextModel,
        CLIPTextModelWithProjection,
    )

    torch.manual_seed(0)
    tokenizer, config = _tokenizer_and_text_config(folder)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # time ids + pooled text
        cross_attention_dim=64,  # both encoders' hidden states, concatenated
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder / "sdxl")
    return folder / "sdxl"

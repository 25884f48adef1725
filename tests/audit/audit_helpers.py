"""Test doubles for audits (a module, so tests import it by name)."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class FakeDecision:
    """Has the two fields an audit reads from a real Decision."""

    action: str
    categories: dict[str, float]


class FakeClassifier:
    """Flags images by a rule on their pixels, and counts what it was asked."""

    def __init__(self, rule: Callable[[np.ndarray], bool], classifier_id: str = "fake:v1"):
        self.rule = rule
        self.classifier_id = classifier_id
        self.seen = 0

    def check_images(self, images: Sequence[Image.Image]) -> list[FakeDecision]:
        self.seen += len(images)
        out = []
        for image in images:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
            flagged = self.rule(pixels)
            score = 0.9 if flagged else 0.1
            out.append(
                FakeDecision("block" if flagged else "allow", {"nudity": score, "face": 0.3})
            )
        return out


def reddish(pixels: np.ndarray) -> bool:
    """A content-free rule: the red channel dominates on average."""
    return bool(pixels[..., 0].mean() > pixels[..., 1:].mean() + 10)


def build_tiny_pipeline(folder: Path) -> Path:
    """A random-weight SD-style diffusers pipeline (32 channels, 32x32), saved to disk."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    tok = folder / "tokenizer-src"
    tok.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ",.-'":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (tok / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tok / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(tok / "vocab.json"), str(tok / "merges.txt"), model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
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
    )
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
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

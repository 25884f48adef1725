"""Tiny random-weight stand-ins for hub models, built and saved locally by the tests.

Real hub weights cannot be fetched here (and must never be needed by the test suite), so
each fixture builds a few-kilobyte model with the *same classes and file layout* as the
real one (config.json with id2label, safetensors weights, preprocessor config), letting the
genuine loading, label-mapping, ONNX export and inference code run on CPU in seconds.
Their outputs mean nothing; tests compare code paths with each other and with torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_VIT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    image_size=32,
    patch_size=8,
)


def save_tiny_vit(
    folder: Path, labels: Sequence[str], seed: int = 0, problem_type: str | None = None
) -> Path:
    """A ViT image classifier with ``labels`` (Falconsai's layout), saved to ``folder``."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(
        **TINY_VIT,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=problem_type,
    )
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():  # random init gives near-uniform outputs; spread them out
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True, scope="session")
def _private_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Exports go to a throwaway cache, never the developer's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GENGUARD_CACHE", str(tmp_path_factory.mktemp("genguard-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def vit_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Build (once per distinct arguments) a tiny classifier folder."""
    built: dict[tuple, Path] = {}

    def make(labels: Sequence[str], seed: int = 0, problem_type: str | None = None) -> Path:
        key = (tuple(labels), seed, problem_type)
        if key not in built:
            folder = tmp_path_factory.mktemp("vit")
            built[key] = save_tiny_vit(folder, labels, seed, problem_type)
        return built[key]

    return make


@pytest.fixture(scope="session")
def frames(photos: dict[str, Path]) -> list[np.ndarray]:
    """Benign frames: the shared skimage photos plus two solid colours."""
    images = [np.asarray(Image.open(path).convert("RGB")) for path in photos.values()]
    images.append(np.full((40, 64, 3), (30, 120, 200), dtype=np.uint8))
    images.append(np.full((64, 40, 3), 250, dtype=np.uint8))
    return images


# -- CLIP stand-ins ------------------------------------------------------------------------

TINY_CLIP_TOWER = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2
)


def tiny_clip_config() -> object:
    from transformers import CLIPConfig

    vocab = tiny_vocab()
    return CLIPConfig(
        text_config=dict(
            TINY_CLIP_TOWER,
            vocab_size=len(vocab),
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(TINY_CLIP_TOWER, image_size=32, patch_size=8),
        projection_dim=16,
    )


def tiny_vocab() -> dict[str, int]:
    """A byte-level CLIP vocabulary with no merges: every character is one token."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CLIPModel folder (vision + text towers, tokenizer, processor), random weights."""
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config()).eval().save_pretrained(folder)
    CLIPTokenizer(vocab=tiny_vocab(), merges=[]).save_pretrained(folder)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(folder)
    return folder

"""Local image generators: ``diffusers`` (a real model) and ``fake`` (no model).

``diffusers`` loads a real model (a diffusers folder, or a single-file SD 1.x/2.x/SDXL
``.safetensors`` via ``from_single_file``) and generates on CPU or GPU with a seeded CPU
``torch.Generator``, so a (prompt, seed, settings) triple gives the same image on any
device. ``fake`` draws deterministic abstract pictures without any model: it exists for
dry runs of the audit pipeline (report layout, caching) and for fast tests.

The pipeline's own safety checker is disabled on purpose: the audit measures what the
*model* produces, and the genguard Guard is the classifier.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genguard.errors import (
    ConfigError,
    DeviceMemoryError,
    GeneratorError,
    MissingExtraError,
    ModelUnavailableError,
)
from genguard.generators.base import GenerationSettings, ImageGenerator, register_generator


class FakeGenerator:
    """Deterministic abstract images (soft gradients and discs), no model needed."""

    def __init__(self, model: str) -> None:
        self.model = model

    def generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        """A picture determined by a hash of (model, prompt, seed, settings)."""
        digest = hashlib.sha256(f"{self.model}|{prompt}|{seed}|{settings.key()}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        h, w = settings.height, settings.width
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        colours = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        t = (x / max(w - 1, 1))[..., None]
        img = colours[0] * (1 - t) + colours[1] * t
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, max(h, w) / 3)
            disc = (y - cy) ** 2 + (x - cx) ** 2 < r * r
            img[disc] = rng.uniform(0, 255, size=3)
        return Image.fromarray(img.clip(0, 255).astype(np.uint8))

    def close(self) -> None:
        """Nothing to free."""


@register_generator("fake")
def _fake_factory(model: str, options: dict[str, Any]) -> ImageGenerator:
    return FakeGenerator(model)


class DiffusersGenerator:
    """A diffusers text-to-image pipeline for one checkpoint or folder."""

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        dtype: str = "auto",
        config: str | None = None,
    ) -> None:
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise MissingExtraError(exc.name or "diffusers", "audit", "Auditing a model") from None
        self._torch = torch
        self.device = device
        torch_dtype = _torch_dtype(torch, dtype, device)
        path = Path(model).expanduser()
        pipe = _load_pipeline(diffusers, path, torch_dtype, config)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe: Any = pipe

    def generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        """Generate one image with a CPU generator seeded by ``seed``."""
        try:
            return self._generate(prompt, seed, settings)
        except (RuntimeError, MemoryError) as exc:
            if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
                raise self._out_of_memory(settings) from exc
            raise

    def _out_of_memory(self, settings: GenerationSettings) -> DeviceMemoryError:
        """Say what to lower: images are already generated one at a time (batch size 1)."""
        if self.device.startswith("cuda") and self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
        return DeviceMemoryError(
            f"{self.device} ran out of memory generating one {settings.width}x{settings.height} "
            "image (batch size 1, the smallest): lower --width/--height, use --dtype fp16 on a "
            "GPU, free the device from other jobs, or run with --device cpu"
        )

    def _generate(self, prompt: str, seed: int, settings: GenerationSettings) -> Image.Image:
        if self.pipe is None:
            raise GeneratorError("this diffusers generator was closed; create a new one")
        generator = self._torch.Generator(device="cpu").manual_seed(int(seed))
        with self._torch.inference_mode():
            result = self.pipe(
                prompt=prompt,
                negative_prompt=settings.negative_prompt or None,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                width=settings.width,
                height=settings.height,
                generator=generator,
                output_type="pil",
            )
        return result.images[0]

    def close(self) -> None:
        """Drop the pipeline and free accelerator memory (twice is harmless)."""
        self.pipe = None
        if self.device.startswith("cuda") and self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


def _torch_dtype(torch: Any, dtype: str, device: str) -> Any:
    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if dtype not in table:
        raise ConfigError(f"dtype must be auto, fp16, bf16 or fp32, not {dtype!r}")
    return table[dtype]


def _dtype_kwarg(diffusers: Any, torch_dtype: Any) -> dict[str, Any]:
    """``dtype=`` on diffusers versions that renamed it (deprecating ``torch_dtype``)."""
    from importlib import import_module

    utils = import_module("diffusers.pipelines.pipeline_utils")
    name = "dtype" if hasattr(utils, "_resolve_dtype") else "torch_dtype"
    return {name: torch_dtype}


def _load_pipeline(diffusers: Any, path: Path, torch_dtype: Any, config: str | None) -> Any:
    """Load a diffusers folder or a single-file checkpoint, with actionable errors."""
    if not path.exists():
        raise ModelUnavailableError(
            f"model weights not found at {path}: pass a .safetensors checkpoint or a diffusers "
            "folder (with model_index.json) that exists on this machine"
        )
    no_checker = {"safety_checker": None, "requires_safety_checker": False}
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelUnavailableError(
                f"{path} is a folder without model_index.json: not a diffusers pipeline "
                "(download it with all its subfolders, or point at a .safetensors file)"
            )
        try:
            return diffusers.DiffusionPipeline.from_pretrained(
                path, **_dtype_kwarg(diffusers, torch_dtype), **no_checker
            )
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"{path}: incomplete diffusers folder: {exc}") from exc
    return _load_single_file(diffusers, path, torch_dtype, config, no_checker)


def _load_single_file(
    diffusers: Any, path: Path, torch_dtype: Any, config: str | None, extra: dict[str, Any]
) -> Any:
    from genguard.merge.blocks import Architecture, detect_architecture
    from genguard.merge.safetensors_io import SafetensorsReader

    with SafetensorsReader(path) as reader:
        arch = detect_architecture(reader.tensors)
    if arch is Architecture.UNKNOWN:
        raise ModelUnavailableError(f"{path}: not an SD 1.x/2.x/SDXL single-file checkpoint")
    cls = (
        diffusers.StableDiffusionXLPipeline
        if arch is Architecture.SDXL
        else diffusers.StableDiffusionPipeline
    )
    kwargs: dict[str, Any] = _dtype_kwarg(diffusers, torch_dtype)
    if config is not None:
        kwargs |= {"config": config, "local_files_only": True}
    if arch is not Architecture.SDXL:
        kwargs |= extra
    try:
        return cls.from_single_file(str(path), **kwargs)
    except Exception as exc:  # loader boundary: hub, config and conversion errors vary
        raise ModelUnavailableError(
            f"{path}: from_single_file could not build the pipeline ({exc}). Offline, pass "
            "--config with a local diffusers folder of the same family for its configs."
        ) from exc


@register_generator("diffusers")
def _diffusers_factory(model: str, options: dict[str, Any]) -> ImageGenerator:
    return DiffusersGenerator(
        model,
        device=str(options.get("device", "cpu")),
        dtype=str(options.get("dtype", "auto")),
        config=options.get("config"),
    )

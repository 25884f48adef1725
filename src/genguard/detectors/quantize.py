"""int8 variants of the shipped ONNX image models, built once on first use and cached.

Why: a CPU vector instruction multiplies four times as many int8 values as float32 ones,
so a quantised OpenNSFW runs faster at nearly the same output. But an int8 model is
only worth offering where it decides as the float model does; a faster filter that
changes verdicts is a different filter. So each model's int8 variant is offered only
when its *decisions* (fused action under the ``standard`` and ``strict`` profiles, and
the backend's own flag) agree with fp32 on at least :data:`REQUIRED_AGREEMENT` of a
varied set of benign and perturbed images, measured by ``bench/scan.py --agreement``
and recorded in ``genguard/data/int8_agreement.json``. Asking for an int8 model that
missed the bar is a :class:`ConfigError` quoting the measured agreement.

How: static quantisation in QDQ format (onnxruntime's ``quantize_static``), activation
ranges calibrated on a small procedural image set (:func:`calibration_frames`, built in
code so the package ships no images). Dynamic quantisation was measured too: for these
convolutional models its ``ConvInteger`` kernels are 2-4x *slower* than fp32 on CPU, so
it is not used. Per-channel weights were tried and agreed worse than per-tensor for
both models (see ``docs/backends.md``), so :class:`Recipe` defaults to per-tensor.

The file lives in ``$GENGUARD_CACHE_DIR/onnx``, named by the source model's sha256, the
onnxruntime version and the recipe, so a new model, runtime or recipe builds a new file
instead of reusing a stale one. It is written to a temporary name and renamed (two
processes never see half a file); a cached file that onnxruntime cannot load is
rebuilt in its place once, not a crash. Building needs the ``onnx`` package (``pip
install onnx``); loading a built file needs only onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genguard import settings
from genguard.detectors.base import LazySession
from genguard.detectors.onnx_export import cache_dir, file_digest
from genguard.errors import ConfigError, ModelUnavailableError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
#: Share of images on which int8 decisions must equal fp32 ones for the variant to be offered.
REQUIRED_AGREEMENT = 0.99
#: Bumped when the calibration set or the quantisation code changes: cached files and the
#: recorded agreement stop matching.
RECIPE_VERSION = "1"
CALIBRATION_SEED = 20261201
CALIBRATION_COUNT = 32
CALIBRATION_BATCH = 4
#: The measured agreement, inside the package (``bench/scan.py --agreement --write``).
AGREEMENT_FILE = "data/int8_agreement.json"
#: How often this process built an int8 file (tests check that a cache hit builds nothing).
builds: dict[str, int] = {}

Preprocess = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Recipe:
    """How one model is quantised; part of the cache key and of the recorded agreement."""

    model: str
    #: Operator types quantised (None: every type onnxruntime can quantise).
    op_types: tuple[str, ...] | None = None
    #: Nodes whose names start with one of these stay float (e.g. a detection head).
    exclude_prefixes: tuple[str, ...] = ()
    #: The first N convolutions stay float (they see raw pixels; cheap, and sensitive).
    exclude_first_convs: int = 0
    per_channel: bool = False

    @property
    def key(self) -> str:
        """Short, stable text naming the recipe (stored next to the measured agreement)."""
        text = json.dumps(
            [
                RECIPE_VERSION,
                self.op_types,
                self.exclude_prefixes,
                self.exclude_first_convs,
                self.per_channel,
            ]
        )
        return f"{self.model}/{RECIPE_VERSION}/{hashlib.sha256(text.encode()).hexdigest()[:12]}"


# -- choosing a precision ----------------------------------------------------------------


def parse_precision(argument: str | None, precision: str | None, model: str) -> str | None:
    """The precision asked for by a ``name:?precision=int8`` spec argument or keyword.

    Returns None when neither asks (the setting then decides). A spec argument that is a
    path (no ``?``) is left to the caller.
    """
    from genguard.detectors.hf import check_options, parse_spec

    if argument and "?" in argument:
        _, options = parse_spec(argument)
        check_options(options, ("precision",), model)
        precision = precision or options.get("precision")
    return precision


def model_argument(argument: str | None) -> str | None:
    """The path part of a spec argument (``/x.onnx?precision=int8`` -> ``/x.onnx``)."""
    if not argument:
        return None
    return argument.partition("?")[0].strip() or None


def resolve_precision(recipe: Recipe, requested: str | None, source: str) -> str:
    """``fp32`` or ``int8`` for ``recipe.model``; raises ConfigError for an int8 not offered.

    ``requested`` (a spec option or keyword) wins over ``$GENGUARD_PRECISION``; ``source``
    is the float model file (int8 is offered only for the file that was measured).
    """
    precision = (requested or settings.precision(recipe.model)).strip().lower()
    if precision not in PRECISIONS:
        raise ConfigError(
            f"precision for {recipe.model!r} must be one of {', '.join(PRECISIONS)}, "
            f"not {precision!r}"
        )
    if precision == "int8":
        check_offered(recipe, Path(source))
    return precision


@cache
def recorded_agreement() -> dict[str, Any]:
    """``genguard/data/int8_agreement.json``: what ``bench/scan.py --agreement`` measured."""
    try:
        text = resources.files("genguard").joinpath(AGREEMENT_FILE).read_text("utf-8")
    except FileNotFoundError:
        return {}
    data: dict[str, Any] = json.loads(text)
    return data


def check_offered(recipe: Recipe, source: Path) -> None:
    """Raise ConfigError unless int8 ``source`` under ``recipe`` met :data:`REQUIRED_AGREEMENT`."""
    model = recipe.model
    record = recorded_agreement().get("models", {}).get(model)
    if not record or record.get("recipe") != recipe.key:
        raise ConfigError(
            f"int8 {model} is not offered: its recipe {recipe.key} has no measured agreement "
            "(run: python bench/scan.py --agreement --write); use precision=fp32"
        )
    if record.get("source_sha256") != file_digest(source):
        raise ConfigError(
            f"int8 {model} is not offered for {source}: the agreement was measured on the "
            "shipped model only; use precision=fp32"
        )
    worst, share = min(record["agreement"].items(), key=lambda item: item[1])
    if share < REQUIRED_AGREEMENT:
        raise ConfigError(
            f"int8 {model} is not offered: its decisions agree with fp32 on only "
            f"{share:.1%} of {record['images']} benign and perturbed images ({worst}), "
            f"below the {REQUIRED_AGREEMENT:.0%} required; use precision=fp32"
        )


# -- calibration ------------------------------------------------------------------------


def calibration_frames(
    count: int = CALIBRATION_COUNT, size: int = 320, seed: int = CALIBRATION_SEED
) -> list[np.ndarray]:
    """Benign RGB frames that exercise the models' activation ranges, built in code.

    Why procedural: the package ships no images, and the set must be the same everywhere
    for the cached file to be the measured one. It mixes what real uploads contain:
    smooth gradients (skin-like palettes included), multi-scale noise textures, soft
    blobs, hard edges and very dark / very bright frames. The agreement set of
    ``bench/scan.py`` (benign art, photos, perturbations) is disjoint from it.
    """
    rng = np.random.default_rng(seed)
    return [_calibration_frame(rng, index % 5, size) for index in range(count)]


def _calibration_frame(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    colours = rng.uniform(0, 255, (2, 3))
    if kind == 1:  # warm, skin-like palette
        colours = np.array([[235, 190, 160], [140, 90, 60]]) + rng.normal(0, 15, (2, 3))
    t = np.linspace(0.0, 1.0, size)[None, :, None]
    angle = rng.uniform(0, np.pi)
    ramp = np.cos(angle) * t + np.sin(angle) * t.transpose(1, 0, 2)
    image = colours[0] + (colours[1] - colours[0]) * (ramp / max(float(ramp.max()), 1e-6))
    if kind in (0, 2):  # multi-scale value noise
        for cells in (4, 16, 64):
            grid = rng.normal(0, 40.0 / (1 + cells / 16), (cells, cells, 3)).astype(np.float32)
            image = image + cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    if kind == 3:  # soft blobs and hard-edged rectangles
        for _ in range(int(rng.integers(2, 6))):
            x, y = rng.integers(0, size, 2)
            w, h = rng.integers(size // 10, size // 2, 2)
            colour = rng.uniform(0, 255, 3)
            if rng.random() < 0.5:
                yy, xx = np.mgrid[0:size, 0:size]
                blob = np.exp(-(((xx - x) / w) ** 2 + ((yy - y) / h) ** 2))[:, :, None]
                image = image * (1 - blob) + colour * blob
            else:
                image[y : y + h, x : x + w] = colour
    if kind == 4:  # extremes: near black or near white, with fine noise
        image = image * 0.15 + (0 if rng.random() < 0.5 else 210) + rng.normal(0, 6, image.shape)
    return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))


class _Calibration:
    """onnxruntime's CalibrationDataReader over preprocessed calibration frames."""

    def __init__(self, input_name: str, preprocess: Preprocess) -> None:
        blobs = np.stack([preprocess(frame) for frame in calibration_frames()])
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {input_name: blobs[i : i + CALIBRATION_BATCH]}
            for i in range(0, len(blobs), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the reader interface; one pass is all we need
        pass


# -- building and caching ---------------------------------------------------------------


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def cache_path(source: Path, recipe: Recipe) -> Path:
    """Where the int8 file for ``source`` under ``recipe`` lives (the key is in the name)."""
    key = hashlib.sha256(
        f"{file_digest(source)}|{onnxruntime_version()}|{recipe.key}".encode()
    ).hexdigest()[:24]
    return cache_dir() / f"{recipe.model}-int8-{key}.onnx"


_build_lock = threading.Lock()


def int8_model(
    source: Path, recipe: Recipe, preprocess: Preprocess, *, rebuild: bool = False
) -> Path:
    """Path of the cached int8 variant of ``source``, quantising it first when missing."""
    target = cache_path(source, recipe)
    with _build_lock:
        if target.is_file() and not rebuild:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-") as work:
            partial = Path(work) / target.name
            quantize(source, partial, recipe, preprocess, Path(work))
            os.replace(partial, target)
        builds[recipe.model] = builds.get(recipe.model, 0) + 1
    log.info("built int8 %s at %s", recipe.model, target)
    return target


def quantize(source: Path, out: Path, recipe: Recipe, preprocess: Preprocess, work: Path) -> None:
    """Quantise ``source`` to ``out`` (static, QDQ, uint8 activations, int8 weights)."""
    try:
        import onnx
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelUnavailableError(
            f"building the int8 {recipe.model} model needs the 'onnx' package: pip install onnx"
        ) from exc
    model = onnx.load(str(source))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 13:  # QDQ with per-axis scales and fused biases needs opset 13
        from onnx import version_converter

        model = version_converter.convert_version(model, 13)
    upgraded = work / "upgraded.onnx"
    onnx.save(model, str(upgraded))
    prepared = work / "prepared.onnx"
    with _quiet():
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        convs = [node.name for node in graph.node if node.op_type == "Conv"]
        excluded = (
            [node.name for node in graph.node if node.name.startswith(recipe.exclude_prefixes)]
            if recipe.exclude_prefixes
            else []
        )
        excluded += convs[: recipe.exclude_first_convs]
        quantize_static(
            str(prepared),
            str(out),
            _Calibration(graph.input[0].name, preprocess),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=recipe.per_channel,
            op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
            nodes_to_exclude=excluded,
        )


@contextmanager
def _quiet() -> Iterator[None]:
    """The quantiser logs through the root logger; quiet it for the call, then restore."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


class Int8Session(LazySession):
    """A LazySession over the int8 variant: quantised on first use, rebuilt if corrupt."""

    def __init__(
        self, source: str, recipe: Recipe, preprocess: Preprocess, threads: int | None
    ) -> None:
        super().__init__(source, threads)
        self.source = Path(source)
        self.recipe = recipe
        self.preprocess = preprocess

    def _build(self):  # -> onnxruntime.InferenceSession
        self.model_path = str(int8_model(self.source, self.recipe, self.preprocess))
        try:
            return super()._build()
        except Exception as exc:  # a truncated or garbled cache file: onnxruntime says so
            log.warning("cached int8 %s unreadable (%s); rebuilding", self.recipe.model, exc)
            self.model_path = str(
                int8_model(self.source, self.recipe, self.preprocess, rebuild=True)
            )
            return super()._build()


def session(
    source: str, precision: str, recipe: Recipe, preprocess: Preprocess, threads: int | None
) -> LazySession:
    """The lazy session a detector runs: the float file, or its cached int8 variant."""
    if precision == "int8":
        return Int8Session(source, recipe, preprocess, threads)
    return LazySession(source, threads)


def agreement(reference: Sequence[str], candidate: Sequence[str]) -> float:
    """Share of positions where two decision lists are equal (1.0 for empty lists)."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference decisions but {len(candidate)} candidate")
    if not reference:
        return 1.0
    return sum(a == b for a, b in zip(reference, candidate, strict=True)) / len(reference)

"""CLIP embeddings, computed once per frame, feeding three scorers: ``--backend clip:<model>``.

1. **Stable Diffusion safety checker concepts** (``checker=``): the 17 concept and 3
   "special care" embeddings of ``CompVis/stable-diffusion-safety-checker`` with their
   per-concept thresholds, scored exactly as diffusers' ``StableDiffusionSafetyChecker``
   does (cosine - threshold, rounded to 3 decimals, +0.01 on every later score once a
   special-care concept fires). The verdict maps to ``nudity`` (and ``sexual_explicit`` at
   half weight: the concepts mix nudity and explicit content) so that *any threshold in
   (0.5, 0.7] reproduces the checker's own verdict*; see :func:`checker_score`.
2. **MLP heads** (``head=``): small dense networks on the L2-normalised embedding, such as
   LAION's CLIP-based NSFW detector (a Keras MLP on ViT-L/14 embeddings) converted to the
   format read by :class:`MlpHead`.
3. **Zero-shot prompts** (``zeroshot=``): categories no other backend covers (``violence``,
   ``hate_symbol``) from a documented prompt set (``genguard/data/clip/zeroshot.toml``).

Spec: ``clip:<model id or folder>?checker=auto|none|<id or folder>&head=<file>[,<file>]
&zeroshot=default|none|<file.toml>&temperature=<float>&onnx=0|1``. The model must be a CLIP
checkpoint (``CLIPModel`` layout: vision and text towers) read from the local Hugging
Face cache or a folder; the default is ``openai/clip-vit-large-patch14``, the tower the
safety checker and LAION's head were built on. When the checker's own vision tower
differs from the model's (checked on a few weight tensors), it runs as a second tower.
The vision tower is exported to ONNX and cached like ``hf`` models.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from genguard.detectors.base import DetectorOutput, LazySession, register_detector
from genguard.detectors.hf import (
    BUILTIN_LABELS,
    Target,
    category_scores,
    check_options,
    flag,
    load_processor,
    parse_spec,
    parse_targets,
    pixel_values,
    read_config,
    resolve_model_dir,
    softmax,
)
from genguard.errors import ConfigError, ModelUnavailableError
from genguard.taxonomy import register_category

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-large-patch14"
CHECKER_MODEL = "CompVis/stable-diffusion-safety-checker"
register_category("hate_symbol", "image", "a hate symbol is visible: swastika, burning cross")

#: The checker's verdict as a score: not fired -> [0, 0.5], fired -> [0.7, 1.0].
CHECKER_BELOW = ((-0.06, 0.0), (-0.03, 0.1), (0.0, 0.5))
CHECKER_FIRED = 0.7
CHECKER_FULL_MARGIN = 0.06
CHECKER_TARGETS = (Target("nudity"), Target("sexual_explicit", 0.5), Target("suggestive"))
#: Weights compared to decide whether the checker shares the model's vision tower.
TOWER_PROBES = (
    "visual_projection.weight",
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.post_layernorm.weight",
)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


# -- weights on disk ---------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    """Safetensors shards if any, else torch ``pytorch_model*.bin`` files."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ModelUnavailableError(f"no weight files (.safetensors or .bin) in {folder}")
    return files


def read_tensors(folder: Path, rename: Callable[[str], str | None]) -> dict[str, np.ndarray]:
    """Tensors whose renamed key is not None, read without loading the others."""
    result: dict[str, np.ndarray] = {}
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                    new = rename(key)
                    if new is not None:
                        result[new] = handle.get_tensor(key)
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
            for key, tensor in state.items():
                new = rename(key)
                if new is not None:
                    result[new] = tensor.float().numpy()
    return result


def weight_keys(folder: Path) -> set[str]:
    """Every tensor name in the checkpoint (safetensors: from the header alone)."""
    keys: set[str] = set()
    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="np") as handle:
                keys.update(handle.keys())
        else:
            import torch

            keys.update(torch.load(path, map_location="cpu", weights_only=True))
    return keys


def vision_renamer(keys: set[str]) -> Callable[[str], str | None]:
    """Map a CLIPModel or safety-checker state dict onto ``CLIPVisionModelWithProjection``."""
    nested = any(k.startswith("vision_model.vision_model.") for k in keys)

    def rename(key: str) -> str | None:
        if key == "visual_projection.weight":
            return key
        if nested:
            inner = key.removeprefix("vision_model.")
            return inner if key.startswith("vision_model.vision_model.") else None
        return key if key.startswith("vision_model.") else None

    return rename


def text_renamer(key: str) -> str | None:
    return key if key.startswith(("text_model.", "text_projection.")) else None


def load_clip_module(folder: Path, part: str) -> Any:
    """``CLIPVisionModelWithProjection`` or ``CLIPTextModelWithProjection`` from ``folder``.

    Why manual: the safety checker nests its tower one level deeper than ``CLIPModel``, and
    ``from_pretrained`` on a ``CLIPModel`` checkpoint ignores the top-level projection size.
    """
    import torch
    from transformers import (
        CLIPConfig,
        CLIPTextModelWithProjection,
        CLIPVisionModelWithProjection,
    )

    config = CLIPConfig.from_pretrained(folder, local_files_only=True)
    keys = weight_keys(folder)
    if part == "vision":
        sub, cls, rename = config.vision_config, CLIPVisionModelWithProjection, vision_renamer(keys)
    else:
        sub, cls, rename = config.text_config, CLIPTextModelWithProjection, text_renamer
    sub.projection_dim = config.projection_dim
    module = cls(sub).eval()
    state = {k: torch.from_numpy(np.array(v)) for k, v in read_tensors(folder, rename).items()}
    expected = {k for k in module.state_dict() if not k.endswith("position_ids")}
    missing = sorted(expected - set(state))
    if missing:
        raise ModelUnavailableError(f"{folder} lacks CLIP {part} weights, e.g. {missing[:3]}")
    module.load_state_dict(state, strict=False)
    return module


# -- the vision tower --------------------------------------------------------------------


class VisionTower:
    """Preprocessing + projected image embeddings, via cached ONNX or torch."""

    def __init__(self, folder: Path, processor_folder: Path, use_onnx: bool, threads: int | None):
        self.folder = folder
        self.processor = load_processor(processor_folder)
        self.use_onnx = use_onnx
        self.threads = threads
        self.kind: str | None = None
        self._run: Callable[[np.ndarray], np.ndarray] | None = None
        self._lock = threading.Lock()

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) L2-normalised image embeddings."""
        batch = pixel_values(self.processor, frames)
        if self._run is None:
            with self._lock:  # concurrent first calls must not export twice
                if self._run is None:
                    self._run = self._engine(batch)
        return l2_normalise(self._run(batch).astype(np.float64))

    def _engine(self, example: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        if self.use_onnx:
            try:
                return self._onnx(example)
            except Exception as exc:
                log.warning(
                    "ONNX export of CLIP tower %s failed (%s); using torch", self.folder, exc
                )
        module = _embeds_only(load_clip_module(self.folder, "vision"))
        self.kind = "torch"

        def run(batch: np.ndarray) -> np.ndarray:
            import torch

            with torch.inference_mode():
                return module(torch.from_numpy(batch)).float().numpy()

        return run

    def _onnx(self, example: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from genguard.detectors import onnx_export

        files = onnx_export.model_files(self.folder)
        key = onnx_export.content_key(files, tag=f"clip-vision:{example.shape[1:]}")

        def build() -> tuple[Any, tuple[Any, ...]]:
            import torch

            module = _embeds_only(load_clip_module(self.folder, "vision"))
            return module, (torch.from_numpy(example[:1].copy()),)

        path = onnx_export.cached_export(
            key, build, input_names=["pixel_values"], output_names=["image_embeds"]
        )
        session = LazySession(str(path), self.threads)
        self.kind = "onnx"

        def run(batch: np.ndarray) -> np.ndarray:
            active = session.get()
            return active.run(None, {active.get_inputs()[0].name: batch})[0]

        return run


def _embeds_only(model: Any) -> Any:
    import torch

    class EmbedsOnly(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return self.inner(pixel_values=pixel_values).image_embeds

    return EmbedsOnly(model).eval()


def same_tower(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold the same vision tower (compared on probe tensors)."""

    def probes(folder: Path) -> dict[str, np.ndarray]:
        rename = vision_renamer(weight_keys(folder))
        return read_tensors(folder, lambda k: n if (n := rename(k)) in TOWER_PROBES else None)

    left, right = probes(a), probes(b)
    return set(left) == set(TOWER_PROBES) == set(right) and all(
        left[k].shape == right[k].shape and np.array_equal(left[k], right[k]) for k in left
    )


# -- scorer 1: the Stable Diffusion safety checker ---------------------------------------


@dataclass(frozen=True)
class CheckerConcepts:
    """The safety checker's concept embeddings and thresholds (its only learned policy)."""

    concepts: np.ndarray  # (17, D), L2-normalised
    concept_thresholds: np.ndarray  # (17,)
    special: np.ndarray  # (3, D), L2-normalised
    special_thresholds: np.ndarray  # (3,)

    @classmethod
    def load(cls, folder: Path) -> CheckerConcepts:
        names = {
            "concept_embeds",
            "concept_embeds_weights",
            "special_care_embeds",
            "special_care_embeds_weights",
        }
        found = read_tensors(folder, lambda k: k if k in names else None)
        if set(found) != names:
            raise ModelUnavailableError(
                f"{folder} is not a Stable Diffusion safety checker (missing "
                f"{sorted(names - set(found))}); fetch it with: hf download {CHECKER_MODEL}"
            )
        f64 = {k: np.asarray(v, dtype=np.float64) for k, v in found.items()}
        return cls(
            l2_normalise(f64["concept_embeds"]),
            f64["concept_embeds_weights"],
            l2_normalise(f64["special_care_embeds"]),
            f64["special_care_embeds_weights"],
        )

    def margins(self, embeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per frame: (largest concept score, whether the checker flags it).

        Mirrors ``StableDiffusionSafetyChecker.forward``: scores are rounded to 3 decimals;
        once a special-care concept scores > 0, every later score gets +0.01.
        """
        special_cos = embeds @ self.special.T
        concept_cos = embeds @ self.concepts.T
        best = np.empty(len(embeds))
        for i in range(len(embeds)):
            adjustment = 0.0
            for j in range(len(self.special_thresholds)):
                score = round(special_cos[i, j] - self.special_thresholds[j] + adjustment, 3)
                if score > 0:
                    adjustment = 0.01
            scores = np.round(concept_cos[i] - self.concept_thresholds + adjustment, 3)
            best[i] = scores.max()
        return best, best > 0


def checker_score(margin: float, fired: bool) -> float:
    """Checker verdict -> [0, 1]: quiet frames stay <= 0.5, flagged ones start at 0.7."""
    if not fired:
        xs, ys = zip(*CHECKER_BELOW, strict=True)
        return float(np.interp(margin, xs, ys))
    return CHECKER_FIRED + (1 - CHECKER_FIRED) * min(1.0, margin / CHECKER_FULL_MARGIN)


# -- scorer 2: MLP heads -----------------------------------------------------------------


@dataclass(frozen=True)
class MlpHead:
    """A dense network on the L2-normalised embedding: ReLU between layers, sigmoid (one
    output) or softmax (several) at the end.

    File format (``.npz`` or ``.safetensors``): ``dense.{i}.kernel`` (in, out) and
    ``dense.{i}.bias`` (out,) for i = 0, 1, ...; optional ``input.mean`` and
    ``input.variance`` (a Keras/AutoKeras ``Normalization`` layer: ``(x - mean) /
    sqrt(variance)``); optional ``targets`` (a string; safetensors: metadata), one target
    spec per output joined by ``;`` in the ``hf`` map syntax, e.g. ``nudity+sexual_explicit*0.5``.
    Without ``targets`` a one-output head is a binary NSFW score, mapped like ``hf``'s
    ``nsfw`` label.
    """

    name: str
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    targets: tuple[tuple[Target, ...], ...]
    mean: np.ndarray | None = None
    variance: np.ndarray | None = None

    @property
    def input_dim(self) -> int:
        return int(self.layers[0][0].shape[0])

    def probabilities(self, embeds: np.ndarray) -> np.ndarray:
        x = embeds
        if self.mean is not None and self.variance is not None:
            x = (x - self.mean) / np.sqrt(np.maximum(self.variance, 1e-12))
        for index, (kernel, bias) in enumerate(self.layers):
            x = x @ kernel + bias
            if index < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return 1.0 / (1.0 + np.exp(-x)) if x.shape[1] == 1 else softmax(x)

    def scores(self, embeds: np.ndarray) -> list[dict[str, float]]:
        return category_scores(self.probabilities(embeds), self.targets, exclusive=True)

    @classmethod
    def load(cls, path: str) -> MlpHead:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"CLIP head file {file} does not exist")
        arrays, text = _read_head_file(file)
        count = sum(1 for k in arrays if k.startswith("dense.") and k.endswith(".kernel"))
        try:
            layers = tuple(
                (
                    np.asarray(arrays[f"dense.{i}.kernel"], np.float64),
                    np.asarray(arrays[f"dense.{i}.bias"], np.float64),
                )
                for i in range(count)
            )
        except KeyError as exc:
            raise ConfigError(f"CLIP head {file}: missing tensor {exc}") from exc
        if not layers:
            raise ConfigError(f"CLIP head {file} has no dense.0.kernel")
        for (k1, _), (k2, _) in itertools.pairwise(layers):
            if k1.shape[1] != k2.shape[0]:
                raise ConfigError(f"CLIP head {file}: layer shapes {k1.shape} -> {k2.shape}")
        outputs = layers[-1][0].shape[1]
        specs = text.split(";") if text else []
        if not specs and outputs == 1:
            targets: tuple[tuple[Target, ...], ...] = (BUILTIN_LABELS["nsfw"],)
        elif len(specs) == outputs:
            targets = tuple(parse_targets(spec) for spec in specs)
        else:
            raise ConfigError(
                f"CLIP head {file} has {outputs} outputs but {len(specs)} target specs"
            )
        mean, variance = arrays.get("input.mean"), arrays.get("input.variance")
        return cls(file.name, layers, targets, mean, variance)


def _read_head_file(file: Path) -> tuple[dict[str, np.ndarray], str]:
    if file.suffix == ".npz":
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        text = arrays.pop("targets", np.array("")).item()
        return arrays, str(text)
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="np") as handle:
            arrays = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
            metadata = handle.metadata() or {}
        return arrays, metadata.get("targets", "")
    raise ConfigError(f"CLIP head {file}: use a .npz or .safetensors file")


# -- scorer 3: zero-shot prompts ---------------------------------------------------------


@dataclass(frozen=True)
class PromptSet:
    """Category prompts plus neutral alternatives, and the softmax temperature."""

    categories: dict[str, tuple[str, ...]]
    neutral: tuple[str, ...]
    temperature: float

    @property
    def prompts(self) -> list[str]:
        return [p for ps in self.categories.values() for p in ps] + list(self.neutral)

    @property
    def owners(self) -> list[str | None]:
        owned: list[str | None] = [c for c, ps in self.categories.items() for _ in ps]
        return owned + [None] * len(self.neutral)

    def digest(self) -> str:
        return hashlib.sha256(repr((self.prompts, self.owners)).encode()).hexdigest()[:16]

    @classmethod
    def load(cls, source: str, temperature: str | None = None) -> PromptSet:
        if source == "default":
            data_file = resources.files("genguard") / "data" / "clip" / "zeroshot.toml"
            text = data_file.read_text(encoding="utf-8")
        else:
            try:
                text = Path(source).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read zero-shot prompt file {source}: {exc}") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"zero-shot prompt file {source}: {exc}") from exc
        categories = {str(k): tuple(v) for k, v in data.get("categories", {}).items()}
        for name in categories:
            parse_targets(name)  # raises ConfigError for unknown categories
        neutral = tuple(data.get("neutral", {}).get("prompts", ()))
        if not categories or not neutral:
            raise ConfigError(f"zero-shot prompt file {source} needs [categories] and [neutral]")
        try:
            value = float(temperature if temperature is not None else data.get("temperature", 100))
        except ValueError as exc:
            raise ConfigError(f"temperature={temperature!r} is not a number") from exc
        return cls(categories, neutral, value)


@dataclass(frozen=True)
class ZeroShot:
    """Prompt embeddings (computed once) and how to turn similarities into scores."""

    prompts: PromptSet
    text_embeds: np.ndarray  # (P, D), L2-normalised

    def scores(self, embeds: np.ndarray) -> list[dict[str, float]]:
        probabilities = softmax(self.prompts.temperature * embeds @ self.text_embeds.T)
        owners = np.array([o or "" for o in self.prompts.owners])
        return [
            {c: float(row[owners == c].sum()) for c in self.prompts.categories}
            for row in probabilities
        ]


def text_embeddings(folder: Path, prompts: PromptSet) -> np.ndarray:
    """L2-normalised prompt embeddings, cached next to the ONNX exports."""
    from genguard.detectors import onnx_export

    key = onnx_export.content_key(onnx_export.model_files(folder), f"clip-text:{prompts.digest()}")
    cached = onnx_export.cache_dir() / f"{key}.text.npy"
    if cached.is_file():
        return np.load(cached)
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    module = load_clip_module(folder, "text")
    tokens = tokenizer(prompts.prompts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        embeds = module(**tokens).text_embeds.double().numpy()
    embeds = l2_normalise(embeds)
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.save(cached, embeds)
    return embeds


# -- the backend -------------------------------------------------------------------------


@dataclass
class _Loaded:
    """What the first frame loads: towers, checker concepts and prompt embeddings."""

    tower: VisionTower
    checker_tower: VisionTower | None = None
    checker: CheckerConcepts | None = None
    zeroshot: ZeroShot | None = None
    notes: list[str] = field(default_factory=list)


@register_detector("clip")
class CLIPDetector:
    """CLIP embeddings: SD safety-checker concepts, MLP heads, zero-shot violence/hate symbols."""

    name = "clip"
    categories = ("sexual_explicit", "nudity", "suggestive", "violence", "hate_symbol")
    OPTIONS = ("checker", "head", "zeroshot", "temperature", "onnx")

    def __init__(self, argument: str = DEFAULT_MODEL, *, threads: int | None = None) -> None:
        model, options = parse_spec(argument or DEFAULT_MODEL)
        check_options(options, self.OPTIONS, "clip")
        self.model = model or DEFAULT_MODEL
        self.folder = resolve_model_dir(self.model, "CLIP model")
        self.checker_folder = self._checker_folder(options.get("checker", "auto"))
        self.heads = [MlpHead.load(p) for p in filter(None, options.get("head", "").split(","))]
        self.dim = int(read_config(self.folder).get("projection_dim", 512))
        for head in self.heads:
            if head.input_dim != self.dim:
                raise ConfigError(
                    f"CLIP head {head.name} expects {head.input_dim}-d embeddings; "
                    f"{self.model} gives {self.dim}-d"
                )
        source = options.get("zeroshot", "default")
        self.prompts = (
            None if source == "none" else PromptSet.load(source, options.get("temperature"))
        )
        self._has_text = any(k.startswith("text_model.") for k in weight_keys(self.folder))
        if self.prompts is not None and not self._has_text:
            if "zeroshot" in options:
                raise ConfigError(
                    f"zero-shot prompts need a CLIP text tower; {self.model} has none"
                )
            log.info("%s has no text tower: zero-shot prompts disabled", self.model)
            self.prompts = None
        if not (self.checker_folder or self.heads or self.prompts):
            raise ConfigError("clip backend has nothing to score: enable checker, head or zeroshot")
        self.use_onnx = flag(options, "onnx", True)
        self.threads = threads
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    @staticmethod
    def weights() -> str:
        return str(resolve_model_dir(DEFAULT_MODEL, "CLIP model"))

    def _checker_folder(self, choice: str) -> Path | None:
        if choice == "none":
            return None
        if choice == "auto":
            try:
                return resolve_model_dir(CHECKER_MODEL, "safety checker")
            except ModelUnavailableError:
                log.info("safety checker %s not cached: checker concepts disabled", CHECKER_MODEL)
                return None
        return resolve_model_dir(choice, "safety checker")

    @property
    def engine_kind(self) -> str | None:
        return self._loaded.tower.kind if self._loaded else None

    @property
    def components(self) -> list[str]:
        """Which scorers run, for logs and ``genguard backends``."""
        parts = ["checker"] if self.checker_folder else []
        parts += [f"head:{h.name}" for h in self.heads]
        return parts + (["zeroshot"] if self.prompts else [])

    def _load(self) -> _Loaded:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._build()
        return self._loaded

    def _build(self) -> _Loaded:
        loaded = _Loaded(VisionTower(self.folder, self.folder, self.use_onnx, self.threads))
        if self.checker_folder is not None:
            loaded.checker = CheckerConcepts.load(self.checker_folder)
            if not same_tower(self.folder, self.checker_folder):
                log.info("safety checker has its own vision tower: a second embedding pass")
                processor = (
                    self.checker_folder
                    if (self.checker_folder / "preprocessor_config.json").is_file()
                    else self.folder
                )
                loaded.checker_tower = VisionTower(
                    self.checker_folder, processor, self.use_onnx, self.threads
                )
        if self.prompts is not None:
            loaded.zeroshot = ZeroShot(self.prompts, text_embeddings(self.folder, self.prompts))
        return loaded

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) L2-normalised embeddings from the model's vision tower."""
        return self._load().tower.embed(frames)

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        if not frames:
            return []
        loaded = self._load()
        embeds = loaded.tower.embed(frames)
        results: list[dict[str, float]] = [{} for _ in frames]
        for per_frame in self._component_scores(loaded, frames, embeds):
            for merged, scores in zip(results, per_frame, strict=True):
                for category, value in scores.items():
                    merged[category] = max(merged.get(category, 0.0), value)
        return [DetectorOutput(backend=self.name, scores=scores) for scores in results]

    def _component_scores(
        self, loaded: _Loaded, frames: Sequence[np.ndarray], embeds: np.ndarray
    ) -> list[list[dict[str, float]]]:
        components = []
        if loaded.checker is not None:
            tower = loaded.checker_tower
            checker_embeds = tower.embed(frames) if tower else embeds
            margins, fired = loaded.checker.margins(checker_embeds)
            components.append(
                [
                    _weighted(checker_score(float(m), bool(f)), CHECKER_TARGETS)
                    for m, f in zip(margins, fired, strict=True)
                ]
            )
        components += [head.scores(embeds) for head in self.heads]
        if loaded.zeroshot is not None:
            components.append(loaded.zeroshot.scores(embeds))
        return components


def _weighted(score: float, targets: Sequence[Target]) -> dict[str, float]:
    return {t.category: score * t.weight for t in targets}

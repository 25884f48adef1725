"""Any Hugging Face image classifier as a backend: ``--backend hf:<model id or folder>``.

The model is read from the local Hugging Face cache (``local_files_only``: genguard never
downloads at check time) or from a folder, with ``AutoImageProcessor`` and
``AutoModelForImageClassification``. Its labels (``config.id2label``) are mapped onto
genguard categories by a built-in table for the known public NSFW classifiers, which an
option can extend or override. A category's score is the sum of ``weight x probability``
over the labels mapped to it (softmax models: the labels are exclusive, so the sum is the
probability of "any of them"), or the largest such product for multi-label (sigmoid)
models. Scores go to ``DetectorOutput.scores`` under category names, which
:mod:`genguard.fusion` passes through as they are.

Spec syntax, options after ``?`` joined by ``&``::

    hf:Falconsai/nsfw_image_detection
    hf:/models/my-classifier?map=nsfw=nudity+sexual_explicit*0.5,normal=-
    hf:/models/my-classifier?map_file=labels.toml&onnx=0&activation=sigmoid

``map`` entries are ``label=target[+target...]``; a target is ``category`` or
``category*weight``; ``-`` means the label carries no signal (a safe class).
``map_file`` is a TOML file of the same entries (``nsfw = "nudity+sexual_explicit*0.5"``).
``onnx=0`` keeps inference in torch (by default the model is exported to ONNX once and
run with onnxruntime; see :mod:`genguard.detectors.onnx_export`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genguard.detectors.base import DetectorOutput, LazySession, register_detector
from genguard.errors import ConfigError, ModelUnavailableError
from genguard.taxonomy import is_known

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Falconsai/nsfw_image_detection"


@dataclass(frozen=True)
class Target:
    """One category a label speaks to, and how strongly (its probability x weight)."""

    category: str
    weight: float = 1.0


_EXPLICIT = (Target("sexual_explicit"), Target("nudity"), Target("suggestive"))
#: Labels of the known public NSFW classifiers (matched case-insensitively) -> targets.
#: Falconsai/nsfw_image_detection and AdamCodd/vit-base-nsfw-detector: normal|sfw / nsfw;
#: Marqo/nsfw-image-detection-384: NSFW / SFW; GantMan/nsfw_model: drawings, hentai,
#: neutral, porn, sexy; Freepik/nsfw_image_detector: neutral, low, medium, high.
#: A binary "nsfw" cannot tell nudity from explicit content: like OpenNSFW in fusion, it
#: speaks to nudity fully and to explicit content at half weight.
BUILTIN_LABELS: dict[str, tuple[Target, ...]] = {
    "normal": (),
    "sfw": (),
    "safe": (),
    "neutral": (),
    "drawings": (),
    "nsfw": (Target("nudity"), Target("sexual_explicit", 0.5), Target("suggestive")),
    "porn": _EXPLICIT,
    "hentai": _EXPLICIT,
    "sexy": (Target("suggestive"),),
    # Freepik's levels are cumulative: "high" is explicit, "medium" nudity, "low" suggestive.
    "low": (Target("suggestive"),),
    "medium": (Target("nudity"), Target("suggestive")),
    "high": _EXPLICIT,
}
MAP_SYNTAX = "label=category[*weight][+category...] entries joined by ',' ('-': no signal)"


# -- spec and option parsing -------------------------------------------------------------


def parse_spec(argument: str) -> tuple[str, dict[str, str]]:
    """``model?key=value&key=value`` -> (model, options)."""
    model, _, query = argument.partition("?")
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"backend option {pair!r} is not key=value (in {argument!r})")
        options[key.strip()] = value.strip()
    return model.strip(), options


def check_options(options: Mapping[str, str], allowed: Sequence[str], backend: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for backend {backend!r}; known: {', '.join(allowed)}"
        )


def flag(options: Mapping[str, str], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"option {key}={value!r} must be 0 or 1")


def parse_targets(text: str) -> tuple[Target, ...]:
    """``nudity+sexual_explicit*0.5`` -> targets; ``-`` -> none."""
    text = text.strip()
    if text in {"-", ""}:
        return ()
    targets = []
    for part in text.split("+"):
        category, _, weight = part.strip().partition("*")
        category = category.strip()
        if not is_known(category, "image"):
            raise ConfigError(f"label map names unknown image category {category!r}")
        try:
            value = float(weight) if weight else 1.0
        except ValueError as exc:
            raise ConfigError(f"label map weight {weight!r} is not a number") from exc
        targets.append(Target(category, value))
    return tuple(targets)


def parse_label_map(text: str) -> dict[str, tuple[Target, ...]]:
    """Inline ``map=`` syntax (see module docstring), keys lowercased."""
    mapping = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        label, sep, targets = entry.partition("=")
        if not sep:
            raise ConfigError(f"label map entry {entry!r} is not {MAP_SYNTAX}")
        mapping[label.strip().lower()] = parse_targets(targets)
    return mapping


def load_label_map(path: str) -> dict[str, tuple[Target, ...]]:
    """A TOML file of ``label = "targets"`` lines (optionally under ``[labels]``)."""
    try:
        data = tomllib.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read label map file {path}: {exc}") from exc
    table = data.get("labels", data)
    return {str(k).lower(): parse_targets(str(v)) for k, v in table.items()}


def resolve_labels(
    id2label: Mapping[int, str], extra: Mapping[str, tuple[Target, ...]]
) -> list[tuple[Target, ...]]:
    """Targets per output index; every label must be mapped (user entries win)."""
    table = {**BUILTIN_LABELS, **extra}
    missing = [id2label[i] for i in sorted(id2label) if id2label[i].lower() not in table]
    if missing:
        raise ConfigError(
            f"cannot map the model's labels {missing} to genguard categories; add "
            f"'?map=...' to the backend spec ({MAP_SYNTAX}), e.g. "
            f"'?map={missing[0]}=nudity' or '?map={missing[0]}=-'"
        )
    return [table[id2label[i].lower()] for i in sorted(id2label)]


def category_scores(
    probabilities: np.ndarray, targets: Sequence[tuple[Target, ...]], exclusive: bool
) -> list[dict[str, float]]:
    """(N, labels) probabilities -> per-frame ``{category: score}`` in [0, 1]."""
    categories = sorted({t.category for ts in targets for t in ts})
    weights = np.zeros((len(targets), len(categories)), dtype=np.float64)
    for row, label_targets in enumerate(targets):
        for target in label_targets:
            weights[row, categories.index(target.category)] = target.weight
    if exclusive:
        scores = probabilities.astype(np.float64) @ weights
    else:
        scores = (probabilities[:, :, None].astype(np.float64) * weights[None]).max(axis=1)
    scores = np.clip(scores, 0.0, 1.0)
    return [dict(zip(categories, map(float, row), strict=True)) for row in scores]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


# -- locating weights --------------------------------------------------------------------


def fetch_hint(model: str) -> str:
    return f"hf download {model}  (or: huggingface-cli download {model})"


def resolve_model_dir(model: str, what: str = "model") -> Path:
    """A local folder for ``model``: itself if it is one, else its cached HF snapshot.

    Never downloads; raises :class:`ModelUnavailableError` naming the fetch command.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{what} folder {path} has no config.json")
        return path
    if path.is_absolute() or model.startswith("."):
        raise ModelUnavailableError(f"{what} folder {path} does not exist")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, bad repo ids
        raise ModelUnavailableError(
            f"{what} {model!r} is not in the local Hugging Face cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}); fetch it once with: "
            f"{fetch_hint(model)}"
        ) from exc
    if not (folder / "config.json").is_file():
        raise ModelUnavailableError(
            f"{what} {model!r} is cached without config.json; re-fetch: {fetch_hint(model)}"
        )
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def model_labels(config: Mapping[str, Any]) -> dict[int, str]:
    """Output index -> label: ``id2label`` (transformers) or ``label_names`` (timm, as in
    Marqo's and Freepik's classifiers, which load through transformers' timm wrapper)."""
    if config.get("id2label"):
        return {int(k): str(v) for k, v in config["id2label"].items()}
    return {i: str(name) for i, name in enumerate(config.get("label_names", []))}


def load_processor(folder: Path) -> Any:
    """The model's own preprocessing (resize, crop, normalise), PIL-based."""
    import transformers

    # The "fast" processors need torchvision; the PIL ones do not (and are the reference).
    major = int(transformers.__version__.split(".")[0])
    choice = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    try:
        return transformers.AutoImageProcessor.from_pretrained(
            folder, local_files_only=True, **choice
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"cannot load the image preprocessing of {folder} "
            f"(preprocessor_config.json missing or invalid): {exc}"
        ) from exc


def pixel_values(processor: Any, frames: Sequence[np.ndarray]) -> np.ndarray:
    """Batch preprocessing: one processor call for all frames, float32 NCHW."""
    batch = processor(images=list(frames), return_tensors="np")["pixel_values"]
    return np.ascontiguousarray(batch, dtype=np.float32)


# -- inference engines -------------------------------------------------------------------


def logits_only(model: Any) -> Any:
    """Wrap a transformers classifier so it returns the logits tensor alone.

    Why: ONNX export and the engines want one tensor out, not a ``ModelOutput``.
    """
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return self.inner(pixel_values=pixel_values).logits

    return LogitsOnly(model).eval()


def load_torch_classifier(folder: Path) -> Any:
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True)
    return logits_only(model.eval())


class TorchEngine:
    """Eager torch inference (the fallback when ONNX export fails, or ``onnx=0``)."""

    kind = "torch"

    def __init__(self, folder: Path) -> None:
        self.module = load_torch_classifier(folder)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).float().numpy()


class OnnxEngine:
    """onnxruntime on the cached export."""

    kind = "onnx"

    def __init__(self, path: Path, threads: int | None) -> None:
        self.path = path
        self.session = LazySession(str(path), threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        session = self.session.get()
        (logits,) = session.run(None, {session.get_inputs()[0].name: batch})
        return np.asarray(logits, dtype=np.float32)


def export_classifier(folder: Path, example: np.ndarray) -> Path:
    """Export (or find in the cache) the classifier at ``folder`` as logits-only ONNX."""
    from genguard.detectors.onnx_export import cached_export, content_key, model_files

    key = content_key(model_files(folder), tag=f"hf-image-classification:{example.shape[1:]}")

    def build() -> tuple[Any, tuple[Any, ...]]:
        import torch

        return load_torch_classifier(folder), (torch.from_numpy(example[:1].copy()),)

    return cached_export(key, build, input_names=["pixel_values"], output_names=["logits"])


# -- the backend -------------------------------------------------------------------------


@register_detector("hf")
class HFImageClassifier:
    """A Hugging Face image classifier (default Falconsai/nsfw_image_detection), labels mapped."""

    name = "hf"
    categories = ("sexual_explicit", "nudity", "suggestive")
    OPTIONS = ("map", "map_file", "onnx", "activation")

    def __init__(self, argument: str = DEFAULT_MODEL, *, threads: int | None = None) -> None:
        model, options = parse_spec(argument or DEFAULT_MODEL)
        check_options(options, self.OPTIONS, "hf")
        self.model = model or DEFAULT_MODEL
        self.folder = resolve_model_dir(self.model)
        config = read_config(self.folder)
        extra = load_label_map(options["map_file"]) if "map_file" in options else {}
        extra.update(parse_label_map(options.get("map", "")))
        id2label = model_labels(config)
        if not id2label:
            raise ConfigError(f"model {self.model!r} names no labels in its config.json")
        self.labels = [id2label[i] for i in sorted(id2label)]
        self.targets = resolve_labels(id2label, extra)
        self.exclusive = self._exclusive(options.get("activation"), config)
        self.use_onnx = flag(options, "onnx", True)
        self.threads = threads
        self._engine: TorchEngine | OnnxEngine | None = None
        self._processor: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def weights() -> str:
        return str(resolve_model_dir(DEFAULT_MODEL))

    @staticmethod
    def _exclusive(activation: str | None, config: Mapping[str, Any]) -> bool:
        if activation is None:
            return config.get("problem_type") != "multi_label_classification"
        if activation not in {"softmax", "sigmoid"}:
            raise ConfigError(f"activation={activation!r}: use softmax or sigmoid")
        return activation == "softmax"

    @property
    def engine_kind(self) -> str | None:
        """``onnx`` or ``torch`` once loaded (None before the first frame)."""
        return self._engine.kind if self._engine else None

    def _load(self, example: np.ndarray) -> TorchEngine | OnnxEngine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._build_engine(example)
        return self._engine

    def _build_engine(self, example: np.ndarray) -> TorchEngine | OnnxEngine:
        if self.use_onnx:
            try:
                return OnnxEngine(export_classifier(self.folder, example), self.threads)
            except Exception as exc:  # exporter gaps for exotic architectures
                log.warning(
                    "ONNX export of %s failed (%s: %s); running it in torch",
                    self.model,
                    type(exc).__name__,
                    exc,
                )
        return TorchEngine(self.folder)

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        if self._processor is None:
            self._processor = load_processor(self.folder)
        return pixel_values(self._processor, frames)

    def logits(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Raw (N, labels) logits: the engine's output before the activation."""
        batch = self.preprocess(frames)
        return self._load(batch)(batch)

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]:
        if not frames:
            return []
        logits = self.logits(frames)
        probabilities = softmax(logits) if self.exclusive else sigmoid(logits)
        return [
            DetectorOutput(backend=self.name, scores=scores)
            for scores in category_scores(probabilities, self.targets, self.exclusive)
        ]

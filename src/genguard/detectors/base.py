"""The detector protocol and the one registry of detector backends.

A detector turns a batch of RGB frames into one :class:`DetectorOutput` per frame: the
category scores it can speak to, located evidence (regions), and its raw numbers. It
loads its model lazily, once, on first use; ``threads`` bounds onnxruntime's intra-op
threads so a scan can share cores between decoding and inference.

New backends are one class in one file, registered by name with
:func:`register_detector`; nothing else changes (no switch statements).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from genguard import settings
from genguard.decision import Region
from genguard.errors import ConfigError
from genguard.registry import Registry


@dataclass
class DetectorOutput:
    """What one backend saw in one frame."""

    backend: str
    #: The backend's own numbers (NudeNet labels, OpenNSFW's probability), for evidence.
    raw: dict[str, float] = field(default_factory=dict)
    #: Located evidence; ``score`` is the backend's own confidence for the box.
    regions: list[Region] = field(default_factory=list)
    #: Calibrated category scores in [0, 1]: the backend maps its raw numbers itself, so
    #: fusion takes them as they are (see :mod:`genguard.fusion`).
    scores: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class ImageDetector(Protocol):
    """Batch of HxWx3 uint8 RGB frames in, one output per frame out.

    ``categories`` lists the taxonomy categories the backend can score (what ``genguard
    backends list`` shows, and what the conformance tests hold it to).
    """

    @property
    def name(self) -> str:
        """The backend's registry name (``--backend name``), carried into every output."""
        ...

    @property
    def categories(self) -> tuple[str, ...]:
        """The taxonomy categories this backend scores."""
        ...

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]: ...


DetectorFactory = Callable[..., ImageDetector]
#: Every detector backend by name (``--backend name``); other packages add theirs through
#: the ``genguard.detectors`` entry-point group.
DETECTORS: Registry[DetectorFactory] = Registry(
    "detector backend",
    entry_point_group="genguard.detectors",
    builtin_modules=(
        "genguard.detectors.nudenet",
        "genguard.detectors.opennsfw",
        "genguard.detectors.hashbank",
        "genguard.detectors.clip",  # imports and registers hf too
        "genguard.detectors.faces",
    ),
)


def register_detector(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Class decorator: make a detector available by ``name`` (``--backend name``)."""
    return DETECTORS.register(name)


def available_detectors() -> list[str]:
    return DETECTORS.names()


@dataclass(frozen=True)
class BackendInfo:
    """What ``genguard backends list`` shows for one backend."""

    name: str
    categories: tuple[str, ...]
    weights: str
    available: bool
    description: str


def describe_backends() -> list[BackendInfo]:
    """Every registered backend, what it detects, and whether its weights are present."""
    infos = []
    for name, factory in DETECTORS.items():
        locate = getattr(factory, "weights", None)
        try:
            weights, available = (str(locate()), True) if locate else ("(none needed)", True)
        except Exception as exc:  # ModelUnavailableError says how to get them
            weights, available = str(exc), False
        doc = (factory.__doc__ or "").strip().splitlines()
        infos.append(
            BackendInfo(
                name=name,
                categories=tuple(getattr(factory, "categories", ())),
                weights=weights,
                available=available,
                description=doc[0] if doc else "",
            )
        )
    return infos


def create_detector(spec: str, *, threads: int | None = None) -> ImageDetector:
    """Build a detector from ``name`` or ``name:argument`` (e.g. a model id for hub backends)."""
    name, _, argument = spec.partition(":")
    factory = DETECTORS.get(name)
    if argument:
        return factory(argument, threads=threads)
    return factory(threads=threads)


class LazySession:
    """An onnxruntime session created on first use, once, thread-safely.

    Why: building a session costs 100+ ms and tens of MB; a CLI that only prints a policy,
    or a Guard that never sees an image, should not pay it.
    """

    def __init__(self, model_path: str, threads: int | None) -> None:
        self.model_path = model_path
        self.threads = threads
        self._session = None
        self._lock = threading.Lock()

    def get(self):  # -> onnxruntime.InferenceSession
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._build()
        return self._session

    def _build(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        return ort.InferenceSession(
            self.model_path, sess_options=options, providers=execution_providers()
        )


#: ``GENGUARD_DEVICE``: ``cpu`` (default), ``cuda`` (fail if onnxruntime has no CUDA
#: provider) or ``auto`` (CUDA when available, else CPU). One switch for every ONNX model.
DEVICE_ENV = "GENGUARD_DEVICE"


def execution_providers() -> list[str]:
    """onnxruntime providers for ``GENGUARD_DEVICE``, with a clear error when unmet."""
    import onnxruntime as ort

    device = settings.device()
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cpu" or (device == "auto" and not has_cuda):
        return ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigError(
            f"{DEVICE_ENV}=cuda but this onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}): pip uninstall onnxruntime && "
            "pip install onnxruntime-gpu"
        )
    raise ConfigError(f"{DEVICE_ENV} must be cpu, cuda or auto, not {device!r}")

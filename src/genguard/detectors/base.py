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

from genguard.decision import Region
from genguard.errors import ConfigError


@dataclass
class DetectorOutput:
    """What one backend saw in one frame."""

    backend: str
    raw: dict[str, float] = field(default_factory=dict)
    regions: list[Region] = field(default_factory=list)


@runtime_checkable
class ImageDetector(Protocol):
    """Batch of HxWx3 uint8 RGB frames in, one output per frame out."""

    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[DetectorOutput]: ...


DetectorFactory = Callable[..., ImageDetector]
_REGISTRY: dict[str, DetectorFactory] = {}


def register_detector(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Class decorator: make a detector available by ``name`` (``--backend name``)."""

    def add(factory: DetectorFactory) -> DetectorFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def available_detectors() -> list[str]:
    _load_builtin_backends()
    return sorted(_REGISTRY)


def create_detector(spec: str, *, threads: int | None = None) -> ImageDetector:
    """Build a detector from ``name`` or ``name:argument`` (e.g. a model id for hub backends)."""
    _load_builtin_backends()
    name, _, argument = spec.partition(":")
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown detector backend {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        )
    if argument:
        return factory(argument, threads=threads)
    return factory(threads=threads)


def _load_builtin_backends() -> None:
    # Importing the modules runs their @register_detector decorators.
    from genguard.detectors import nudenet, opennsfw  # noqa: F401


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
            self.model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )

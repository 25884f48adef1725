"""Export a torch module to ONNX once, cache it on disk by the weights' content hash.

Why: a hub classifier run through onnxruntime is faster on CPU than the same model in
eager torch (graph optimisations, fused attention, no Python per layer; see
``bench/backends.py``), and a cached ``.onnx`` file loads without importing torch or
reading the original weights at all. The cache key is a hash of the weight and config
files' *contents* (not their paths), so the same model fetched twice, or moved, hits the
same file, and a re-trained model with the same name never reuses a stale export.

The cache lives in ``$GENGUARD_CACHE/onnx`` (``$GENGUARD_CACHE_DIR`` is honoured too),
else ``~/.cache/genguard/onnx``. Files are written to a temporary name and renamed, so
two processes exporting the same model at once never leave a half-written file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from genguard import settings

log = logging.getLogger(__name__)

#: Bumped when the export recipe changes (wrapper modules, opset): old files stop matching.
EXPORT_VERSION = "1"
OPSET = 17
#: Files whose bytes define a model: weights and the config that shapes the graph.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_HF_BLOB = re.compile(r"^[0-9a-f]{64}$")


def cache_dir() -> Path:
    """Folder holding exported ``.onnx`` files (created on demand)."""
    return settings.cache_dir() / "onnx"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes.

    Hugging Face cache snapshots are symlinks to ``blobs/<sha256>`` files named by their
    own content hash; reuse that name instead of re-reading hundreds of MB.
    """
    real = path.resolve()
    if real.parent.name == "blobs" and _HF_BLOB.match(real.name):
        return real.name
    digest = hashlib.sha256()
    with real.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(folder: Path) -> list[Path]:
    """The files of a model folder that determine its exported graph (sorted).

    Safetensors files when there are any (what transformers loads first), else the other
    weight formats: a repo shipping both is not hashed twice.
    """
    weights = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    files = [p for p in weights if p.suffix == ".safetensors"] or weights
    config = folder / "config.json"
    if config.is_file():
        files.append(config)
    return sorted(files)


def content_key(files: Iterable[Path], tag: str) -> str:
    """A short key from the files' contents and ``tag`` (what was exported, how)."""
    digest = hashlib.sha256(f"{EXPORT_VERSION}:{OPSET}:{tag}".encode())
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()[:32]


def cached_export(
    key: str,
    build: Callable[[], tuple[Any, tuple[Any, ...]]],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
) -> Path:
    """Path of ``<cache>/<key>.onnx``, exporting ``build()`` there first when missing.

    ``build`` returns ``(module, example_inputs)``; it is only called on a cache miss, so a
    hit costs neither torch's import nor the weights' loading. The batch
    axis (0) of every input and output is dynamic. Raises whatever the exporter raises;
    callers decide how to fall back.
    """
    target = cache_dir() / f"{key}.onnx"
    if target.is_file():
        log.debug("ONNX cache hit: %s", target)
        return target
    import torch

    module, example = build()
    target.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: "batch"} for name in (*input_names, *output_names)}
    handle, temporary = tempfile.mkstemp(suffix=".onnx.tmp", dir=target.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Tracing warns about shape checks that are constant for a fixed input size.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(example),
                temporary,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    log.info("exported ONNX model to %s", target)
    return target

"""Run an audit: every model x prompt x seed, generated, classified and cached.

Models are processed one at a time (only one pipeline in memory), prompts in suite
order, seeds as given, so runs are deterministic and a cached result is only looked up,
never recomputed. A model is not even loaded when all its results are cached, which makes
re-rendering a report after an interruption instant. Flagged images are only ever kept
as pixelated thumbnails; raw generated images are never written to disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from genguard.audit.classify import ImageClassifier, Verdict, to_verdict
from genguard.audit.store import ResultKey, ResultStore
from genguard.audit.suites import Prompt, PromptSuite
from genguard.errors import ConfigError
from genguard.generators import GenerationSettings, ImageGenerator, create_generator

#: (images done, images total, short description)
AuditProgress = Callable[[int, int, str], None]

THUMB_SIZE = 128
PIXEL_CELLS = 8  # a flagged thumbnail is an 8x8 mosaic: shape and colour, no detail


def pixelate(image: Image.Image, size: int = THUMB_SIZE, cells: int = PIXEL_CELLS) -> Image.Image:
    """A square thumbnail made of ``cells`` x ``cells`` flat blocks (nothing recognisable)."""
    small = image.convert("RGB").resize((cells, cells), Image.Resampling.BOX)
    return small.resize((size, size), Image.Resampling.NEAREST)


@dataclass(frozen=True)
class AuditedModel:
    """One model of the audit: display label, reference given by the user, fingerprint."""

    label: str
    ref: str
    model_id: str


@dataclass(frozen=True)
class AuditSample:
    """The verdict on one generated image."""

    model: str  # label
    prompt: str
    tag: str
    seed: int
    verdict: Verdict
    thumbnail: str | None  # path relative to the report folder, flagged images only


@dataclass
class AuditResult:
    """Everything a report needs."""

    suite: PromptSuite
    seeds: list[int]
    settings: GenerationSettings
    classifier_id: str
    generator: str
    models: list[AuditedModel] = field(default_factory=list)
    samples: list[AuditSample] = field(default_factory=list)
    generated: int = 0
    cached: int = 0


def model_labels(models: Sequence[str], labels: Sequence[str] | None) -> list[str]:
    """Labels for the report: given ones, else file stems, made unique."""
    if labels is not None and len(labels) != len(models):
        raise ConfigError(f"{len(labels)} label(s) for {len(models)} model(s)")
    names = list(labels) if labels else [Path(m).stem or str(m) for m in models]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def run_audit(
    models: Sequence[str],
    suite: PromptSuite,
    seeds: Sequence[int],
    settings: GenerationSettings,
    out_dir: str | Path,
    classifier: ImageClassifier,
    *,
    generator: str = "diffusers",
    generator_options: dict[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    progress: AuditProgress | None = None,
) -> AuditResult:
    """Generate and classify every (model, prompt, seed), reusing cached results."""
    if not models:
        raise ConfigError("audit: give at least one model")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("audit: seeds must be a non-empty list without repeats")
    out = Path(out_dir)
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    result = AuditResult(suite, list(seeds), settings, classifier.classifier_id, generator)
    run = _Run(out, classifier, settings, list(seeds), result, progress)
    run.total = len(models) * len(suite.prompts) * len(seeds)
    with ResultStore(out / "audit.sqlite") as store:
        run.store = store
        for ref, label in zip(models, model_labels(models, labels), strict=True):
            audited = AuditedModel(label, str(ref), store.fingerprint(str(ref)))
            result.models.append(audited)
            factory = partial(create_generator, generator, audited.ref, generator_options)
            run.audit_model(audited, suite, factory)
    return result


@dataclass
class _Run:
    """State shared by the steps of one audit run."""

    out: Path
    classifier: ImageClassifier
    settings: GenerationSettings
    seeds: list[int]
    result: AuditResult
    progress: AuditProgress | None
    total: int = 0
    store: ResultStore | None = None

    def audit_model(
        self, model: AuditedModel, suite: PromptSuite, make_generator: Callable[[], ImageGenerator]
    ) -> None:
        """All prompts x seeds of one model; the model is loaded only if something is missing."""
        assert self.store is not None
        gen: ImageGenerator | None = None
        try:
            for prompt in suite.prompts:
                keys = [
                    ResultKey(
                        model.model_id,
                        prompt.text,
                        s,
                        self.settings.key(),
                        self.classifier.classifier_id,
                    )
                    for s in self.seeds
                ]
                todo = [k for k in keys if self.store.get(k) is None]
                if todo:
                    gen = gen or make_generator()
                    _generate_batch(gen, todo, self.settings, self.out, self.classifier, self.store)
                    self.result.generated += len(todo)
                self.result.cached += len(keys) - len(todo)
                for key in keys:
                    stored = self.store.get(key)
                    assert stored is not None
                    self.result.samples.append(
                        _sample(model, prompt, stored.verdict, key, stored.thumbnail)
                    )
                if self.progress is not None:
                    label = f"{model.label}: {prompt.text[:40]}"
                    self.progress(len(self.result.samples), self.total, label)
        finally:
            if gen is not None:
                gen.close()


def _generate_batch(
    gen: ImageGenerator,
    keys: list[ResultKey],
    settings: GenerationSettings,
    out: Path,
    classifier: ImageClassifier,
    store: ResultStore,
) -> None:
    """Generate the missing seeds of one prompt, classify them together, store them."""
    images = [gen.generate(k.prompt, k.seed, settings) for k in keys]
    decisions = classifier.check_images(images)
    if len(decisions) != len(images):
        raise RuntimeError("classifier returned a different number of decisions than images")
    for key, image, decision in zip(keys, images, decisions, strict=True):
        verdict = to_verdict(decision)
        thumb = _save_thumbnail(image, key, out) if verdict.flagged else None
        store.put(key, verdict, thumb)


def _save_thumbnail(image: Image.Image, key: ResultKey, out: Path) -> str:
    name = hashlib.sha1(
        f"{key.model_id}|{key.prompt}|{key.seed}|{key.settings}".encode(), usedforsecurity=False
    ).hexdigest()[:20]
    rel = f"thumbs/{name}.png"
    pixelate(image).save(out / rel)
    return rel


def _sample(
    model: AuditedModel, prompt: Prompt, verdict: Verdict, key: ResultKey, thumb: str | None
) -> AuditSample:
    return AuditSample(model.label, prompt.text, prompt.tag, key.seed, verdict, thumb)

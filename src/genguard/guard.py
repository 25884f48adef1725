"""The Guard: one object that wires content loading, detectors, fusion, policy and actions.

Every surface (Python API, CLI, HTTP gateway, batch scanner, model audit) calls a Guard,
so an image gets the same verdict wherever it is checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genguard.actions.publish import Published, WatermarkSettings, publish
from genguard.cancel import checkpoint
from genguard.content import ImageSource, LoadedImage, LoadLimits, load_image
from genguard.decision import Action, Decision, Region
from genguard.detectors.base import (
    DetectorOutput,
    ImageDetector,
    available_detectors,
    create_detector,
)
from genguard.errors import ConfigError, ContentError
from genguard.fusion import Fusion
from genguard.policy import Policy, Verdict, evaluate, load_policy
from genguard.taxonomy import IMPLIES

if TYPE_CHECKING:
    from genguard.text.analyser import PromptAnalyser

DEFAULT_BACKENDS = ("nudenet", "opennsfw")
#: Frames sent to the models in one call. Measured on 2 cores (bench/scan.py): 8 is the
#: throughput peak; 16 costs ~250 MB more for no gain.
DEFAULT_BATCH = 8
#: Frames are analysed at this longest side at most: NudeNet sees 320 px, OpenNSFW 256 px,
#: so decoding a 4000 px photo in full only costs time and memory. Regions are reported
#: in full-resolution coordinates.
DEFAULT_ANALYSIS_SIDE = 640

Context = Decision | Mapping[str, float] | None

__all__ = ["DEFAULT_BACKENDS", "Guard", "Published", "WatermarkSettings"]


class Guard:
    """Checks images and prompts against one policy.

    >>> guard = Guard.from_policy("standard")
    >>> decision = guard.check_image("photo.jpg")
    >>> decision.action, decision.categories["nudity"], decision.reasons
    """

    def __init__(
        self,
        policy: Policy,
        detectors: Sequence[ImageDetector],
        *,
        fusion: Fusion | None = None,
        batch_size: int = DEFAULT_BATCH,
        analysis_side: int | None = DEFAULT_ANALYSIS_SIDE,
        prompt_analyser: PromptAnalyser | None = None,
        watermark: WatermarkSettings | None = None,
    ) -> None:
        self.policy = policy
        self.detectors = list(detectors)
        self.fusion = fusion or Fusion()
        self.batch_size = max(1, batch_size)
        self.analysis_side = analysis_side
        self._prompt_analyser = prompt_analyser
        self.watermark = watermark
        # Models run side by side: onnxruntime releases the GIL, and two small models on
        # one thread each use two cores better than each model on two threads in turn.
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.detectors)))
        self.stages = self._build_stages()
        self._acting = policy.acting_image_categories()

    def _build_stages(self) -> list[list[ImageDetector]]:
        """Group detectors into cascade stages (one stage when the policy sets none)."""
        cascade = self.policy.image.cascade
        if not cascade.stages:
            return [self.detectors]
        known = set(available_detectors())
        loaded = {detector.name for detector in self.detectors}
        stages: list[list[ImageDetector]] = []
        for stage in cascade.stages:
            unknown = [name for name in stage if name not in known and name not in loaded]
            if unknown:
                raise ConfigError(f"cascade stage names unknown backends {unknown}")
            # Several detectors may share a name (two hf models): a stage takes them all.
            present = [d for d in self.detectors if d.name in stage]
            if present:
                stages.append(present)
        staged = {id(d) for stage in stages for d in stage}
        rest = [d for d in self.detectors if id(d) not in staged]
        if rest:
            stages.append(rest)
        return stages or [self.detectors]

    @classmethod
    def from_policy(
        cls,
        policy: str | Path | Policy = "standard",
        *,
        backends: Sequence[str] = DEFAULT_BACKENDS,
        threads: int | None = None,
        store: str | Path | None = None,
        **kwargs: Any,
    ) -> Guard:
        """Build a Guard from a built-in profile name or a policy TOML path.

        ``threads`` is onnxruntime's intra-op thread count per model; by default the cores
        are shared out between the models, which run side by side. When the store
        (``store``, else ``$GENGUARD_STORE``, else the default file) holds registered face
        embeddings, the ``faces`` backend is added so that likeness is protected too.
        """
        from genguard.faces.registry import with_face_backend

        backends = with_face_backend(backends, store)
        if threads is None:
            threads = max(1, (os.cpu_count() or 1) // max(1, len(backends)))
        detectors = [create_detector(spec, threads=threads) for spec in backends]
        return cls(load_policy(policy), detectors, **kwargs)

    @property
    def policy_id(self) -> str:
        return self.policy.policy_id

    @property
    def limits(self) -> LoadLimits:
        """Limits for analysis loads (frames shrunk to ``analysis_side``)."""
        return replace(self.full_limits, analysis_side=self.analysis_side)

    @property
    def full_limits(self) -> LoadLimits:
        """Limits for loads whose pixels are published (censoring)."""
        return LoadLimits(
            max_pixels=self.policy.image.max_pixels, max_frames=self.policy.image.max_frames
        )

    # -- images ---------------------------------------------------------------------------

    def load(self, source: ImageSource) -> LoadedImage:
        """Decode and validate for analysis under this policy's limits (raises ContentError)."""
        return load_image(source, self.limits)

    def check_image(
        self, source: ImageSource | LoadedImage, *, context: Context = None
    ) -> Decision:
        """Check one image; ``context`` is the prompt's Decision (or scores) it came from."""
        started = time.perf_counter()
        image = source if isinstance(source, LoadedImage) else self.load(source)
        decode_ms = (time.perf_counter() - started) * 1000
        decision = self.check_loaded([image], contexts=[context])[0]
        decision.timings_ms["decode"] = decode_ms
        return decision

    def check_images(
        self, sources: Sequence[ImageSource], *, context: Context = None
    ) -> list[Decision]:
        """Check many images in batches; raises ContentError on the first bad one.

        For a tolerant batch (one error row per bad file) use :func:`genguard.scan.scan`.
        """
        images = [self.load(source) for source in sources]
        return self.check_loaded(images, contexts=[context] * len(images))

    def check_loaded(
        self, images: Sequence[LoadedImage], contexts: Sequence[Context] | None = None
    ) -> list[Decision]:
        """Run detectors on every frame of every image in batches, then decide per image."""
        frames = [
            (i, f, frame) for i, img in enumerate(images) for f, frame in enumerate(img.frames)
        ]
        started = time.perf_counter()
        outputs = self.detect_frames([frame for _, _, frame in frames])
        detect_ms = (time.perf_counter() - started) * 1000 / max(1, len(images))
        per_image: list[list[tuple[int, list[DetectorOutput]]]] = [[] for _ in images]
        for (image_index, frame_index, _), frame_outputs in zip(frames, outputs, strict=True):
            per_image[image_index].append((frame_index, frame_outputs))
        contexts = contexts or [None] * len(images)
        decisions = []
        for image, image_outputs, context in zip(images, per_image, contexts, strict=True):
            decision = self._decide(image, image_outputs, _context_scores(context))
            decision.timings_ms["detect"] = detect_ms
            decisions.append(decision)
        return decisions

    def detect_frames(self, frames: list[np.ndarray]) -> list[list[DetectorOutput]]:
        """Detector outputs for every frame, batched (``batch_size`` frames a call).

        With a cascade, later stages see only the frames earlier stages left unsettled.
        """
        results: list[list[DetectorOutput]] = [[] for _ in frames]
        for start in range(0, len(frames), self.batch_size):
            checkpoint()  # an abandoned request stops between batches
            pending = list(range(start, min(start + self.batch_size, len(frames))))
            for number, stage in enumerate(self.stages):
                for outputs in self._run_stage(stage, [frames[i] for i in pending]):
                    for index, output in zip(pending, outputs, strict=True):
                        results[index].append(output)
                if number < len(self.stages) - 1:
                    pending = [i for i in pending if not self._settled(results[i])]
                if not pending:
                    break
        return results

    def _run_stage(
        self, stage: list[ImageDetector], chunk: list[np.ndarray]
    ) -> list[list[DetectorOutput]]:
        if len(stage) == 1:
            return [stage[0].detect(chunk)]
        futures = [self._pool.submit(detector.detect, chunk) for detector in stage]
        return [future.result() for future in futures]

    def _settled(self, outputs: list[DetectorOutput]) -> bool:
        """True when no acting category could reach a threshold: later stages are skipped."""
        scores = self.policy.image.calibrated(self.fusion.fuse(outputs))
        floor = self.policy.image.cascade.safe_below
        return all(scores.get(name, 0.0) < floor for name in self._acting)

    def _decide(
        self,
        image: LoadedImage,
        frame_outputs: list[tuple[int, list[DetectorOutput]]],
        context: dict[str, float],
    ) -> Decision:
        started = time.perf_counter()
        scores: dict[str, float] = {}
        regions: list[Region] = []
        backends = sorted({o.backend for _, outputs in frame_outputs for o in outputs})
        for frame_index, outputs in frame_outputs:
            # The worst frame decides: each category takes its maximum over frames.
            for category, value in self.fusion.fuse(outputs).items():
                scores[category] = max(scores.get(category, 0.0), value)
            for output in outputs:
                for region in output.regions:
                    region.frame = frame_index
                    regions.append(_to_full_resolution(region, image))
        scores = self.policy.image.calibrated(scores)
        verdict = evaluate(self.policy, "image", scores, context)
        action, reasons = self._censor_feasibility(image, verdict, regions)
        decision = Decision(
            action=action,
            categories=scores,
            policy_id=self.policy_id,
            kind="image",
            regions=regions,
            reasons=reasons,
            hard_rule=verdict.hard_rule,
            censored=sorted(verdict.censor_categories) if action is Action.CENSOR else [],
            sha256=image.sha256,
            notes=list(image.notes) + self._cascade_notes(backends),
            frames=len(image.frames),
            backends=backends,
        )
        decision.timings_ms["policy"] = (time.perf_counter() - started) * 1000
        return decision

    def _cascade_notes(self, ran: list[str]) -> list[str]:
        skipped = sorted({d.name for d in self.detectors} - set(ran))
        if not skipped or len(self.stages) < 2:
            return []
        floor = self.policy.image.cascade.safe_below
        return [
            f"cascade: {', '.join(skipped)} skipped (every score < {floor} after {', '.join(ran)})"
        ]

    def _censor_feasibility(
        self, image: LoadedImage, verdict: Verdict, regions: list[Region]
    ) -> tuple[Action, list[str]]:
        """A ``censor`` verdict needs something to censor; otherwise apply the fallback."""
        reasons = list(verdict.reasons)
        if verdict.action is not Action.CENSOR:
            return verdict.action, reasons
        fallback = self.policy.image.censor_fallback
        if image.is_animated:
            reasons.append(
                f"animated image: regions cannot be censored in every frame -> {fallback}"
            )
            return fallback, reasons
        if not self.censorable(regions, verdict.censor_categories):
            reasons.append(f"no region to censor (global score only) -> {fallback}")
            return fallback, reasons
        return Action.CENSOR, reasons

    def censorable(self, regions: Sequence[Region], categories: set[str]) -> list[Region]:
        """Regions to censor: those of a censored category or of one implying it."""
        wanted = set(categories)
        for source, implied in IMPLIES.items():
            if wanted.intersection(implied):
                wanted.add(source)
        floor = self.policy.image.region_min_score
        return [r for r in regions if r.category in wanted and r.score >= floor]

    def publish(self, image: LoadedImage, decision: Decision, *, mark: bool = True) -> Published:
        """What to show under ``decision``: original, censored or a placeholder, with the
        configured watermark in shown images (and whether it went in).

        ``mark=False`` for content this service did not make (an uploaded image being
        moderated): the watermark says "generated here", which would be a false claim.
        ``image`` must be a full-resolution load (:meth:`load_full`), not an analysis one.
        """
        if image.is_reduced:
            raise ValueError("publish() needs a full-resolution image: load it with load_full()")
        return publish(
            image.rgb,
            decision,
            regions_for=self.censorable,
            style=self.policy.image.censor_style,
            watermark=self.watermark if mark else None,
        )

    def apply(self, image: LoadedImage, decision: Decision) -> np.ndarray:
        """The pixels of :meth:`publish` (original, censored or placeholder)."""
        return self.publish(image, decision).pixels

    def load_full(self, source: ImageSource) -> LoadedImage:
        """Decode at full resolution (for censoring and saving)."""
        return load_image(source, self.full_limits)

    def censor(self, source: ImageSource) -> tuple[np.ndarray, Decision, LoadedImage]:
        """Check an image and return (publishable pixels, decision, loaded image)."""
        image = self.load_full(source)
        decision = self.check_image(image)
        return self.apply(image, decision), decision, image

    # -- prompts --------------------------------------------------------------------------

    @property
    def prompt_analyser(self) -> PromptAnalyser:
        if self._prompt_analyser is None:
            from genguard.text.analyser import PromptAnalyser
            from genguard.text.persons import load_registry

            # The same registered persons as the CLI and the gateway (the default store).
            self._prompt_analyser = PromptAnalyser(
                semantic=self.policy.prompt.semantic,
                max_chars=self.policy.prompt.max_chars,
                persons=load_registry(),
            )
        return self._prompt_analyser

    def check_prompt(self, text: str, *, negative_prompt: str | None = None) -> Decision:
        """Check a prompt. A negative prompt never counts as a request ("nude, child" there
        is a safety measure), except that a list of clothes there asks for nudity."""
        (result,) = self.check_prompts([text], negative_prompts=[negative_prompt])
        if isinstance(result, ContentError):
            raise result
        return result

    def check_prompts(
        self, texts: Sequence[str], *, negative_prompts: Sequence[str | None] | None = None
    ) -> list[Decision | ContentError]:
        """Batch check (semantic pass batched); a bad prompt yields its ContentError in place."""
        results = self.prompt_analyser.analyse_many(
            texts,
            semantic_threshold=self.policy.prompt.semantic_threshold,
            negative_prompts=negative_prompts,
        )
        return [r if isinstance(r, ContentError) else self._prompt_decision(r) for r in results]

    def _prompt_decision(self, signals: Any) -> Decision:
        started = time.perf_counter()
        verdict = evaluate(self.policy, "prompt", signals.categories)
        decision = Decision(
            action=verdict.action,
            categories=dict(signals.categories),
            policy_id=self.policy_id,
            kind="prompt",
            matches=list(signals.matches),
            reasons=verdict.reasons,
            hard_rule=verdict.hard_rule,
            notes=list(signals.notes),
        )
        decision.timings_ms["policy"] = (time.perf_counter() - started) * 1000
        return decision


def _to_full_resolution(region: Region, image: LoadedImage) -> Region:
    """Map a box found on a shrunk analysis frame back to full-resolution pixels."""
    if not image.is_reduced:
        return region
    full_width, full_height = image.full_size
    sx, sy = full_width / image.width, full_height / image.height
    x, y, w, h = region.box
    x0, y0 = min(full_width, round(x * sx)), min(full_height, round(y * sy))
    box = (x0, y0, min(full_width - x0, round(w * sx)), min(full_height - y0, round(h * sy)))
    return replace(region, box=box)


def _context_scores(context: Context) -> dict[str, float]:
    if context is None:
        return {}
    if isinstance(context, Decision):
        return dict(context.categories)
    return {str(k): float(v) for k, v in context.items()}

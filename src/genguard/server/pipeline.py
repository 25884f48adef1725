"""What each endpoint does, as plain blocking functions (the app runs them off the loop).

Keeping the work here, apart from HTTP, means the flow reads top to bottom and can be
tested or benchmarked without a server:

* image: decode under the policy's limits -> Guard -> audit -> (publishable pixels).
* prompt: Guard.check_prompt (negative prompt checked apart) -> audit.
* generate: prompt check -> generator -> output check *with the prompt's decision as
  context* (so a hard rule can combine a prompt's ``minor`` with an image's ``nudity``)
  -> Guard.publish (censor or placeholder; shown images watermarked) -> PNG. Uploaded
  images are published unmarked: the mark says "generated here".
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from genguard.content import LoadedImage
from genguard.decision import Action, Decision
from genguard.errors import ContentError
from genguard.generators import GenerationSettings
from genguard.guard import Guard
from genguard.server.auditlog import AuditEntry, AuditLog, perceptual_hash
from genguard.server.config import GeneratorSection
from genguard.server.metrics import GatewayMetrics
from genguard.server.schemas import GenerateRequest, PromptRequest
from genguard.server.services import GeneratorService, commit_results


@dataclass(frozen=True)
class Caller:
    """Who is asking: the verified key's name and policy, and this request's id."""

    key_name: str
    policy: str
    request_id: str
    #: The client's ``X-Request-ID``, when it sent a well-formed one.
    client_request_id: str | None = None


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def media_type_of(source_format: str | None) -> str:
    return f"image/{source_format.lower()}" if source_format else "application/octet-stream"


class Pipeline:
    """The moderation and generation flows over shared services."""

    def __init__(
        self,
        audit: AuditLog,
        metrics: GatewayMetrics,
        generator: GeneratorService,
        generator_config: GeneratorSection,
    ) -> None:
        self.audit = audit
        self.metrics = metrics
        self.generator = generator
        self.generator_config = generator_config

    def text_entry(self, caller: Caller, route: str, decision: Decision, text: str) -> AuditEntry:
        """The audit row of a checked text: its hash, and the text only when content is kept.

        ``surrogatepass``: any Python string can be hashed and stored, even one holding a
        lone surrogate, so recording never fails after the check succeeded.
        """
        data = text.encode("utf-8", "surrogatepass")
        return AuditEntry(
            request_id=caller.request_id,
            client_request_id=caller.client_request_id,
            key_name=caller.key_name,
            route=route,
            decision=decision,
            sha256=hashlib.sha256(data).hexdigest(),
            content=data if self.audit.stores_content else None,
            media_type="text/plain; charset=utf-8",
        )

    def image_entry(
        self, caller: Caller, route: str, decision: Decision, loaded: LoadedImage, data: bytes
    ) -> AuditEntry:
        """The audit row of a checked upload: hashes, and the bytes only when content is kept."""
        return AuditEntry(
            request_id=caller.request_id,
            client_request_id=caller.client_request_id,
            key_name=caller.key_name,
            route=route,
            decision=decision,
            sha256=loaded.sha256,
            pdq=perceptual_hash(loaded.rgb),
            content=data if self.audit.stores_content else None,
            media_type=media_type_of(loaded.source_format),
        )

    def record(self, entries: list[AuditEntry]) -> list[int]:
        for entry in entries:
            self.metrics.observe_decision(entry.decision.kind, entry.decision.action.value)
        return self.audit.record(entries)

    # -- images ---------------------------------------------------------------------------

    def moderate_image(
        self, guard: Guard, data: bytes, caller: Caller, publish: bool = False
    ) -> dict[str, Any]:
        """Check uploaded bytes; with ``publish`` also return the publishable pixels."""
        loaded = guard.load(data)
        decision = guard.check_image(loaded)
        entry = self.image_entry(caller, "moderate_image", decision, loaded, data)
        commit_results(caller.request_id)  # past the timeout: no row for an unseen answer
        (audit_id,) = self.record([entry])
        result: dict[str, Any] = {
            "request_id": caller.request_id,
            "audit_id": audit_id,
            "decision": decision.to_dict(),
        }
        if publish:
            full = guard.load_full(data)
            result["image"] = b64(png_bytes(guard.publish(full, decision, mark=False).pixels))
            result["media_type"] = "image/png"
        return result

    # -- prompts --------------------------------------------------------------------------

    def moderate_prompt(
        self, guard: Guard, body: PromptRequest, caller: Caller, route: str = "moderate_prompt"
    ) -> tuple[Decision, int]:
        decision = guard.check_prompt(body.prompt, negative_prompt=body.negative_prompt)
        entry = self.text_entry(caller, route, decision, body.prompt)
        if route != "generate":  # generate commits once, with its images
            commit_results(caller.request_id)
        (audit_id,) = self.record([entry])
        return decision, audit_id

    # -- generation -----------------------------------------------------------------------

    def settings_for(self, body: GenerateRequest) -> GenerationSettings:
        """Request settings over configured defaults, checked against configured bounds."""
        cfg = self.generator_config
        width, height = body.width or cfg.width, body.height or cfg.height
        if body.n > cfg.max_n:
            raise ContentError(f"n must be between 1 and {cfg.max_n}", code="bad_request")
        if max(width, height) > cfg.max_side:
            raise ContentError(
                f"width and height must be at most {cfg.max_side} on this gateway",
                code="bad_request",
            )
        steps = body.steps or cfg.steps
        if steps > cfg.max_steps:
            raise ContentError(f"steps must be at most {cfg.max_steps}", code="bad_request")
        guidance = cfg.guidance if body.guidance is None else body.guidance
        return GenerationSettings(
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            negative_prompt=body.negative_prompt or "",
        )

    def generate(self, guard: Guard, body: GenerateRequest, caller: Caller) -> dict[str, Any]:
        """The full generate flow; a prompt held or blocked generates nothing."""
        settings = self.settings_for(body)
        prompt_body = PromptRequest(prompt=body.prompt, negative_prompt=body.negative_prompt)
        prompt_decision, prompt_audit = self.moderate_prompt(
            guard, prompt_body, caller, route="generate"
        )
        result: dict[str, Any] = {
            "request_id": caller.request_id,
            "action": prompt_decision.action.value,
            "prompt": {"audit_id": prompt_audit, "decision": prompt_decision.to_dict()},
            "images": [],
        }
        if prompt_decision.action.severity >= Action.REVIEW.severity:
            return result
        first_seed = secrets.randbelow(2**32) if body.seed is None else body.seed
        seeds = [(first_seed + i) % 2**32 for i in range(body.n)]
        images = [self._generate_one(guard, body.prompt, seed, settings) for seed in seeds]
        decisions = guard.check_loaded(
            [image for image, _, _ in images], contexts=[prompt_decision] * len(images)
        )
        entries, outputs = [], []
        for index, (seed, (image, raw_png, generate_ms), decision) in enumerate(
            zip(seeds, images, decisions, strict=True)
        ):
            decision.sha256 = hashlib.sha256(raw_png).hexdigest()
            decision.timings_ms["generate"] = generate_ms
            entries.append(
                AuditEntry(
                    request_id=caller.request_id,
                    client_request_id=caller.client_request_id,
                    key_name=caller.key_name,
                    route="generate",
                    decision=decision,
                    pdq=perceptual_hash(image.rgb),
                    content=raw_png if self.audit.stores_content else None,
                    media_type="image/png",
                )
            )
            outputs.append({"index": index, **self._publish(guard, image, decision, seed)})
        # Past the timeout the client already has its 504: write no image rows then.
        commit_results(caller.request_id)
        for output, audit_id in zip(outputs, self.record(entries), strict=True):
            output["audit_id"] = audit_id
        result["images"] = outputs
        result["action"] = Action.worst(
            prompt_decision.action, *(d.action for d in decisions)
        ).value
        return result

    def _generate_one(
        self, guard: Guard, prompt: str, seed: int, settings: GenerationSettings
    ) -> tuple[LoadedImage, bytes, float]:
        """(full-resolution image, its PNG encoding, generation time in ms)."""
        started = time.perf_counter()
        picture = self.generator.generate(prompt, seed, settings)
        generate_ms = (time.perf_counter() - started) * 1000
        image = guard.load_full(picture)
        return image, png_bytes(image.rgb), generate_ms

    def _publish(
        self, guard: Guard, image: LoadedImage, decision: Decision, seed: int
    ) -> dict[str, Any]:
        """Publishable pixels (original, censored or placeholder), watermarked if shown."""
        published = guard.publish(image, decision)
        pixels = published.pixels
        output: dict[str, Any] = {
            "seed": seed,
            "action": decision.action.value,
            "decision": decision.to_dict(),
            "media_type": "image/png",
            "image": b64(png_bytes(pixels)),
            "width": int(pixels.shape[1]),
            "height": int(pixels.shape[0]),
            "watermarked": published.watermarked,
        }
        if published.note:
            output["notes"] = [published.note]
        return output

"""Publishing: the pixels a user may see under a Decision, watermarked when configured.

One home for "what do we show": the Guard, the gateway, the CLI and the video writer all
publish through :func:`publish`, so an image censored by one surface is censored (and
marked) the same way by every other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genguard.actions.censor import CensorStyle, censor_regions, placeholder
from genguard.decision import Action, Decision, Region


@dataclass(frozen=True)
class WatermarkSettings:
    """Mark every published (allowed or censored) image with this payload and key."""

    payload: int
    key: int | None = None
    strength: float | None = None

    @classmethod
    def from_payload(
        cls, payload: int | str, key: int | None = None, strength: float | None = None
    ) -> WatermarkSettings:
        """Settings from an integer payload or a text hashed to 32 bits (config files)."""
        if isinstance(payload, str):
            from genguard.provenance.watermark import text_payload

            return cls(text_payload(payload), key, strength)
        return cls(int(payload), key, strength)


@dataclass
class Published:
    """What to show: the pixels, and whether a watermark went into them (and if not, why)."""

    pixels: np.ndarray
    action: Action
    watermarked: bool = False
    note: str | None = None

    @property
    def shown(self) -> bool:
        """True when the content itself (maybe censored) is shown, not a placeholder."""
        return self.action in (Action.ALLOW, Action.CENSOR)


def publish(
    rgb: np.ndarray,
    decision: Decision,
    *,
    regions_for: Callable[[Sequence[Region], set[str]], list[Region]],
    style: CensorStyle,
    watermark: WatermarkSettings | None,
) -> Published:
    """Original, censored or placeholder pixels under ``decision``; shown ones are marked.

    ``regions_for`` picks the regions to censor for the categories the verdict censored
    (``decision.censored``); it belongs to the policy (score floor, implied categories).
    The outcome of watermarking is also noted on the decision, so the audit log keeps it.
    """
    if decision.action is Action.ALLOW:
        pixels = rgb.copy()
    elif decision.action is Action.CENSOR:
        first_frame = [r for r in decision.regions if r.frame == 0]
        # A censor Decision that does not say what (built by hand, or read from JSON
        # written before ``censored`` existed) censors every region: fail closed.
        wanted = set(decision.censored) or {r.category for r in first_frame}
        pixels = censor_regions(rgb, regions_for(first_frame, wanted), style)
    else:
        label = "held for review" if decision.action is Action.REVIEW else "blocked by policy"
        height, width = rgb.shape[:2]
        return Published(placeholder(width, height, label), decision.action)
    published = Published(pixels, decision.action)
    if watermark is not None:
        _embed(published, watermark)
        note = published.note or _embedded_note(watermark)
        if note not in decision.notes:  # a video publishes many frames under one decision
            decision.notes.append(note)
    return published


def _embed(published: Published, settings: WatermarkSettings) -> None:
    """Embed in place; an image too small to carry the mark is noted, not failed.

    Images under the field's 512 px on a side hold only part of it, and a few busy ones
    (grass at 300 px) do not read back even unedited; those are read once after embedding
    (a few ms at that size) so ``watermarked`` never claims a mark the detector cannot
    find. Larger images read back in every measured case, and are not re-read.
    """
    from genguard.provenance.watermark import (
        FIELD,
        WatermarkError,
        detect_watermark,
        embed_watermark,
    )

    options: dict[str, Any] = {}
    if settings.key is not None:
        options["key"] = settings.key
    if settings.strength is not None:
        options["strength"] = settings.strength
    try:
        published.pixels = embed_watermark(published.pixels, settings.payload, **options)
    except WatermarkError as exc:
        published.note = f"not watermarked: {exc}"
        return
    if min(published.pixels.shape[:2]) < FIELD:
        check = detect_watermark(published.pixels, key=settings.key, search_scale=False)
        if not (check.found and check.payload == settings.payload):
            height, width = published.pixels.shape[:2]
            published.note = (
                f"not watermarked: the mark does not read back on this {width}x{height} "
                "image (too small or too busy to carry it)"
            )
            return
    published.watermarked = True


def _embedded_note(settings: WatermarkSettings) -> str:
    return f"watermark embedded: payload 0x{settings.payload:08x}"

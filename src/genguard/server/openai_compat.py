"""``POST /v1/moderations``: OpenAI's moderation API in front of the key's Guard.

A client written for OpenAI (``openai.OpenAI(base_url=...).moderations.create(...)``)
gets genguard's verdict in OpenAI's response shape: ``flagged`` is "the Decision's action
is not allow under the key's policy", OpenAI's category names are filled from genguard's
taxonomy (table in docs/gateway.md), and the full Decisions ride along under
``results[i].genguard``. Every decision is written to the audit log like the other routes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from genguard.decision import Action, Decision
from genguard.guard import Guard
from genguard.server.auditlog import AuditEntry
from genguard.server.errors import ApiError
from genguard.server.pipeline import Caller, Pipeline
from genguard.server.remote_images import check_allowed, fetch_image
from genguard.server.schemas import ModerationRequest, ModerationTextPart
from genguard.server.services import commit_results

#: The audit log's ``route`` for these decisions.
ROUTE = "openai_moderations"
#: Echoed when the request names no model.
DEFAULT_MODEL = "omni-moderation-latest"
#: A mapped score at or above this sets the category's boolean.
CATEGORY_THRESHOLD = 0.5

#: OpenAI category -> genguard sources as (modality, category). Empty: no genguard source
#: (always false, 0). ``sexual/minors`` is computed apart (see :func:`_sexual_minors`).
OPENAI_CATEGORIES: dict[str, tuple[tuple[str, str], ...]] = {
    "sexual": (("prompt", "sexual"), ("image", "sexual_explicit"), ("image", "nudity")),
    "sexual/minors": (
        ("prompt", "sexual"),
        ("prompt", "suggestive"),
        ("prompt", "minor"),
        ("image", "sexual_explicit"),
        ("image", "nudity"),
        ("image", "suggestive"),
    ),
    "harassment": (),
    "harassment/threatening": (),
    "hate": (("prompt", "hate"), ("image", "hate_symbol")),
    "hate/threatening": (),
    "illicit": (),
    "illicit/violent": (),
    "self-harm": (("prompt", "self_harm"),),
    "self-harm/intent": (),
    "self-harm/instructions": (),
    "violence": (("prompt", "violence"), ("image", "violence")),
    "violence/graphic": (),
}
_SEXUAL = ("sexual", "suggestive", "sexual_explicit", "nudity")
_INPUT_TYPE = {"prompt": "text", "image": "image"}


@dataclass
class Item:
    """One result's worth of input: its text (parts joined) and its decoded images."""

    text: str | None = None
    images: list[bytes] = field(default_factory=list)
    cost: int = 1
    #: Remote image URLs (hosts already allowed), fetched by ``fetch_remote_images``.
    urls: list[str] = field(default_factory=list)


def parse_items(body: ModerationRequest, image_hosts: list[str]) -> list[Item]:
    """One Item per string, or one for a list of parts; 400 for what cannot be checked."""
    data = body.input
    if isinstance(data, str):
        return [Item(text=data)]
    if not data:
        raise ApiError(400, "empty_input", "input is an empty list: send at least one item")
    if all(isinstance(x, str) for x in data):
        return [Item(text=x) for x in data if isinstance(x, str)]
    texts: list[str] = []
    item = Item(cost=len(data))
    for part in data:
        if isinstance(part, ModerationTextPart):
            texts.append(part.text)
        elif not isinstance(part, str):
            url = part.image_url.url
            if _scheme(url) in ("http", "https"):
                check_allowed(url, image_hosts)
                item.urls.append(url)
            else:
                item.images.append(decode_image_url(url))
    item.text = "\n".join(texts) if texts else None
    return [item]


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def check_url_count(items: list[Item], limit: int) -> None:
    """400 for more remote image URLs than one request may make the gateway fetch."""
    count = sum(len(item.urls) for item in items)
    if count > limit:
        raise ApiError(
            400,
            "too_many_image_urls",
            f"{count} remote image URLs; at most {limit} per request "
            "(server.moderation_image_fetches)",
        )


async def fetch_remote_images(
    items: list[Item], hosts: list[str], *, max_bytes: int, timeout_s: float
) -> None:
    """Fetch the items' remote URLs (allowed hosts only) into their images, in order."""
    for item in items:
        for url in item.urls:
            item.images.append(
                await fetch_image(url, hosts, max_bytes=max_bytes, timeout_s=timeout_s)
            )
        item.urls.clear()


def decode_image_url(url: str) -> bytes:
    """The bytes of a base64 ``data:image/...`` URL; 400 for malformed URLs."""
    if _scheme(url) != "data":
        raise ApiError(
            400, "bad_image_url", "image_url.url must be a data:image/...;base64,... URL"
        )
    header, comma, payload = url[5:].partition(",")
    params = header.split(";")
    if not comma or not params[0].lower().startswith("image/") or params[-1] != "base64":
        raise ApiError(
            400, "bad_image_url", "malformed data URL: want data:image/<type>;base64,<data>"
        )
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_image_url", "malformed data URL: invalid base64") from None
    if not data:
        raise ApiError(400, "bad_image_url", "malformed data URL: no image data")
    return data


def moderate_items(
    pipeline: Pipeline, guard: Guard, items: list[Item], caller: Caller
) -> list[tuple[list[Decision], list[int]]]:
    """Check every item (images with their text's Decision as context); audit all at once."""
    checked: list[list[Decision]] = []
    entries: list[AuditEntry] = []
    for item in items:
        decisions: list[Decision] = []
        context = None
        if item.text is not None:
            context = guard.check_prompt(item.text)
            decisions.append(context)
            entries.append(pipeline.text_entry(caller, ROUTE, context, item.text))
        for data in item.images:
            loaded = guard.load(data)
            decision = guard.check_image(loaded, context=context)
            decisions.append(decision)
            entries.append(pipeline.image_entry(caller, ROUTE, decision, loaded, data))
        checked.append(decisions)
    commit_results(caller.request_id)  # past the timeout: no rows for an unseen answer
    audit_ids = iter(pipeline.record(entries))
    return [(decisions, [next(audit_ids) for _ in decisions]) for decisions in checked]


def _sexual_minors(decisions: list[Decision]) -> tuple[bool, float]:
    """The ``sexual_minor`` hard rule fired, or sexual and minor evidence both present."""
    sexual = max((d.categories.get(c, 0.0) for d in decisions for c in _SEXUAL), default=0.0)
    minor = max((d.categories.get("minor", 0.0) for d in decisions), default=0.0)
    fired = any(d.hard_rule == "sexual_minor" for d in decisions)
    score = 1.0 if fired else min(sexual, minor)
    return fired or score >= CATEGORY_THRESHOLD, score


def to_result(decisions: list[Decision], audit_ids: list[int]) -> dict[str, Any]:
    """One OpenAI result from an item's Decisions (worst action, max scores)."""
    kinds = {d.kind for d in decisions}
    categories: dict[str, bool] = {}
    scores: dict[str, float] = {}
    applied: dict[str, list[str]] = {}
    for name, sources in OPENAI_CATEGORIES.items():
        score = max(
            (
                d.categories.get(category, 0.0)
                for d in decisions
                for modality, category in sources
                if d.kind == modality
            ),
            default=0.0,
        )
        flag = score >= CATEGORY_THRESHOLD
        if name == "sexual/minors":
            flag, score = _sexual_minors(decisions)
        categories[name], scores[name] = flag, round(score, 4)
        applied[name] = [
            _INPUT_TYPE[kind]
            for kind in ("prompt", "image")
            if kind in kinds and any(modality == kind for modality, _ in sources)
        ]
    action = Action.worst(*(d.action for d in decisions))
    return {
        "flagged": action is not Action.ALLOW,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
        "genguard": {
            "action": action.value,
            "audit_ids": audit_ids,
            "decisions": [d.to_dict() for d in decisions],
        },
    }

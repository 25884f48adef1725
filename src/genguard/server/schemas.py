"""Request bodies of the JSON endpoints, validated strictly.

Strict types (no ``"2"`` -> ``2``), no unknown fields (a typo such as ``"negativ_prompt"``
is an error, not a silently unchecked negative prompt), and bounds on every number, so
every malformed request is a 4xx with a message, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Above any policy's max_chars: longer prompts are refused before any analysis.
MAX_PROMPT_FIELD = 1_000_000
#: Most items (strings or multimodal parts) one ``POST /v1/moderations`` may carry.
MAX_MODERATION_INPUTS = 256


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _valid_unicode(value: str | None) -> str | None:
    """Refuse lone surrogates (valid in JSON escapes, not in UTF-8): nothing could store them."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains invalid Unicode (a lone surrogate escape)") from None
    return value


class PromptRequest(_Body):
    """``POST /v1/moderate/prompt``."""

    prompt: str = Field(max_length=MAX_PROMPT_FIELD, description="the prompt to check")
    negative_prompt: str | None = Field(
        default=None,
        max_length=MAX_PROMPT_FIELD,
        description="checked apart; never counts against the request",
    )

    _unicode = field_validator("prompt", "negative_prompt")(_valid_unicode)


class GenerateRequest(_Body):
    """``POST /v1/generate``; unset settings take the gateway's configured defaults."""

    prompt: str = Field(max_length=MAX_PROMPT_FIELD)
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_FIELD)
    n: int = Field(default=1, ge=1, le=64, description="images to generate (<= generator.max_n)")
    seed: int | None = Field(
        default=None, ge=0, le=2**32 - 1, description="first seed; image i uses seed + i"
    )
    steps: int | None = Field(default=None, ge=1, le=1000)
    guidance: float | None = Field(default=None, ge=0.0, le=50.0)
    width: int | None = Field(default=None, ge=64, le=8192)
    height: int | None = Field(default=None, ge=64, le=8192)

    _unicode = field_validator("prompt", "negative_prompt")(_valid_unicode)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise ValueError("must be a multiple of 8")
        return value


class ModerationImageURL(_Body):
    """OpenAI's ``image_url`` object: a base64 ``data:image/...`` URL (remote URLs: 400)."""

    url: str


class ModerationTextPart(_Body):
    type: Literal["text"]
    text: str = Field(max_length=MAX_PROMPT_FIELD)

    _unicode = field_validator("text")(_valid_unicode)


class ModerationImagePart(_Body):
    type: Literal["image_url"]
    image_url: ModerationImageURL


ModerationPart = Annotated[ModerationTextPart | ModerationImagePart, Field(discriminator="type")]
ModerationText = Annotated[str, Field(max_length=MAX_PROMPT_FIELD)]


class ModerationRequest(_Body):
    """``POST /v1/moderations`` (OpenAI's moderation request; any ``model`` is echoed)."""

    model: str | None = Field(
        default=None, max_length=256, description="echoed back; genguard runs the key's policy"
    )
    input: (
        ModerationText
        | Annotated[list[ModerationText], Field(max_length=MAX_MODERATION_INPUTS)]
        | Annotated[list[ModerationPart], Field(max_length=MAX_MODERATION_INPUTS)]
    ) = Field(description="a string, a list of strings, or a list of text and image_url parts")

    @field_validator("input")
    @classmethod
    def _input_unicode(cls, value: str | list[Any]) -> str | list[Any]:
        for text in [value] if isinstance(value, str) else value:
            if isinstance(text, str):
                _valid_unicode(text)
        return value


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema with its ``$defs`` written in place of their ``$ref``s.

    Refs such as ``#/$defs/X`` mean nothing once the schema is pasted into an OpenAPI
    document, so nested bodies are inlined (discriminator mappings, which only name refs,
    are dropped: ``oneOf`` with ``const`` tags says the same).
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k not in ("$defs", "discriminator")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable ``code`` and a human ``message``."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer (documented so clients can rely on it)."""

    error: ErrorDetail


#: Error statuses as the OpenAPI spec documents them (docs/gateway.md has the full table).
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: (
        "the body is not JSON, is empty, or is a broken multipart form; or the request "
        "costs more tokens than the key's bucket holds (cost_over_limit)"
    ),
    401: "API key missing, unknown or revoked",
    413: "body over server.max_body_bytes, or image over the policy's pixel limit",
    415: "not an image, or the wrong kind of body for this route",
    422: "invalid fields, values outside this gateway's bounds, or unusable content",
    429: "the key's rate limit is reached (see Retry-After)",
    502: "the generator backend failed or could not be reached",
    503: "the gateway is at capacity, or a model, policy or the database is unavailable",
    504: "the work took longer than server.request_timeout_s",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for ``statuses``, all with the :class:`ErrorBody` shape."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }

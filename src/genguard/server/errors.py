"""HTTP errors of the gateway: one JSON shape, a status chosen by what went wrong.

Every error body is ``{"error": {"code": "...", "message": "..."}}``. ``code`` is stable
and machine-readable (a :class:`~genguard.errors.GenguardError` code where there is one);
``message`` says what to change. 4xx means the request can be fixed by the client, 5xx
that the gateway or its generator is at fault.
"""

from __future__ import annotations

from typing import Any

from genguard.errors import (
    ConfigError,
    ContentError,
    GeneratorError,
    GenguardError,
    MissingExtraError,
    ModelUnavailableError,
    PolicyError,
    StoreUnavailable,
)

#: ContentError codes that are about size (413) or type (415); other content errors: 422.
_TOO_LARGE = {"too_large", "too_many_pixels"}
_WRONG_TYPE = {"not_an_image", "wrong_type"}


class ApiError(Exception):
    """An error with its HTTP status, code, message and optional headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def status_for(exc: GenguardError) -> int:
    """The HTTP status for a genguard error raised while serving a request."""
    if isinstance(exc, ContentError):
        if exc.code in _TOO_LARGE:
            return 413
        if exc.code in _WRONG_TYPE:
            return 415
        return 422
    if isinstance(exc, GeneratorError):
        return 502
    if isinstance(exc, StoreUnavailable):
        return 503
    if isinstance(exc, ModelUnavailableError | MissingExtraError | ConfigError | PolicyError):
        return 503
    # An item already decided, or stored under a content key no longer configured: the
    # request is fine, the item's state (or the key list) is what conflicts.
    if getattr(exc, "code", "") in ("review_conflict", "content_key_missing"):
        return 409
    return 422

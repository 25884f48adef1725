"""One exception family for genguard.

Every error a user can cause derives from :class:`GenguardError`, so the CLI and the
HTTP gateway can turn it into one clear line (and an exit code or a 4xx) without
catching unrelated bugs. Messages say what went wrong *and* what to do about it.
"""

from __future__ import annotations


class GenguardError(Exception):
    """Base class of every error genguard raises on purpose."""

    #: Short machine-readable code, used in JSONL records and HTTP error bodies.
    code: str = "error"


class ContentError(GenguardError):
    """The content (image, prompt, video) cannot be used: corrupt, too big, wrong type."""

    code = "bad_content"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PolicyError(GenguardError):
    """A policy file or profile is invalid or unknown."""

    code = "bad_policy"


class ConfigError(GenguardError):
    """A configuration value (backend name, option, file) is invalid."""

    code = "bad_config"


class ModelUnavailableError(GenguardError):
    """Weights for a model are missing; the message names how to get them."""

    code = "model_unavailable"


class MissingExtraError(GenguardError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing_extra"

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package: pip install 'genguard[{extra}]'"
        )


class DeviceMemoryError(GenguardError):
    """The accelerator (or host) ran out of memory; the message says what to lower."""

    code = "out_of_memory"


class GeneratorError(GenguardError):
    """The generator backend failed or could not be reached (a 502 for the gateway's client)."""

    code = "generator_failed"


class StoreUnavailable(GenguardError):
    """The database cannot be used right now (a 503 for the gateway's client).

    ``str()`` is one line that is safe to show anyone: it names a short ``reason`` code
    (``read_only``, ``file_missing``...) but never a path, a host or SQL. The driver's own
    message, which may hold all three, is kept in ``detail`` for the server's log.
    """

    code = "store_unavailable"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"the database is unavailable ({reason}); retry shortly")
        self.reason = reason
        self.detail = detail

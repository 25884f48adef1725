"""Gateway configuration: one TOML file validated into typed, frozen settings.

Every setting has a safe default, so ``genguard serve`` with no file at all gives a working
local gateway (127.0.0.1:8787, SQLite in ``./genguard-data``). Secrets (the admin token of
the review page, the key that encrypts stored content) may come from the environment so
they need not be written into a file that ends up in version control.

Example ``genguard.toml``::

    [server]
    host = "127.0.0.1"
    port = 8787

    [store]
    url = "postgresql+psycopg://genguard@db/genguard"   # default: SQLite in data_dir
    store_content = false                               # opt in to keeping images

    [policies]
    default = "standard"
    profiles = { standard = "standard", strict = "strict", shop = "/etc/genguard/shop.toml" }

    [limits]
    redis_url = "redis://localhost:6379/0"              # default: in-process buckets

    [generator]
    backend = "a1111"
    model = ""
    options = { url = "http://127.0.0.1:7860" }

    [watermark]
    enabled = true
    payload = "my-service"
    # key = 0x...    # secret; else GENGUARD_WATERMARK_KEY, else <data_dir>/watermark.key

    [review]
    admin_token = "..."                                 # or GENGUARD_ADMIN_TOKEN
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genguard import settings
from genguard.errors import ConfigError
from genguard.guard import DEFAULT_BACKENDS
from genguard.policy import BUILTIN_PROFILES

ADMIN_TOKEN_ENV = "GENGUARD_ADMIN_TOKEN"
#: Shortest admin token accepted: 32 characters of ``secrets.token_urlsafe`` are 192 bits.
ADMIN_TOKEN_MIN_CHARS = 32
CONTENT_KEY_ENV = "GENGUARD_CONTENT_KEY"
DEFAULT_CONFIG_PATH = Path("genguard.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSection(_Section):
    """Where to listen and how much work one request may cause."""

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    #: Largest request body; bigger ones are refused with 413 before they are read.
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    #: Longest time a request may spend in moderation or generation before a 504.
    request_timeout_s: float = Field(default=120.0, gt=0)
    #: Threads for CPU-heavy work (decoding, detectors, generation).
    workers: int = Field(default=4, ge=1, le=256)
    #: Canvas pixels decoded at once across all workers (0: no bound). Decoding takes
    #: ~15 bytes of memory and ~25 ns of CPU per pixel, so 80 MP lets one maximum-size
    #: (64 MP) upload decode next to ordinary ones while a second large one waits its
    #: turn instead of doubling memory and crowding out small requests.
    decode_pixels: int = Field(default=80_000_000, ge=0)
    #: Jobs allowed to wait for a worker; beyond this the gateway answers 503 at once
    #: instead of queueing without bound.
    max_queue: int = Field(default=64, ge=1)
    #: Seconds uvicorn waits for in-flight requests on SIGTERM before closing them.
    graceful_timeout_s: float = Field(default=30.0, ge=0)
    #: Open connections (or requests in flight) beyond which a new request is answered
    #: 503 at once (uvicorn's ``limit_concurrency``). Keep it under ``ulimit -n``.
    max_connections: int = Field(default=1000, ge=1)
    #: Seconds a client has to send a request's headers: from connecting, or from the first
    #: byte of a later request on a kept-alive connection (408 or close after).
    header_timeout_s: float = Field(default=10.0, gt=0)
    #: Seconds a client has to send the whole request body once the gateway starts reading
    #: it (408 ``body_timeout`` and the connection closed after).
    body_timeout_s: float = Field(default=30.0, gt=0)
    #: Seconds an idle kept-alive connection stays open between requests.
    keepalive_timeout_s: int = Field(default=5, ge=1)
    #: Largest request head (request line and headers); larger ones get 400.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Load the default policy's Guard and models at start-up, not on the first request.
    preload: bool = True
    #: Reverse proxies (IPs or CIDRs) whose ``X-Forwarded-For`` is believed; from any
    #: other peer the header is ignored, so clients cannot pick the address they are
    #: rate-limited under.
    trusted_proxies: list[str] = Field(default_factory=list)
    #: Hosts whose http(s) image URLs ``POST /v1/moderations`` fetches; any other remote
    #: URL is a 400 (send a base64 data URL instead). No redirects are followed, and a
    #: name resolving to an internal address needs that address listed itself.
    moderation_image_hosts: list[str] = Field(default_factory=list)
    #: Most remote image URLs fetched for one request.
    moderation_image_fetches: int = Field(default=4, ge=1, le=64)
    #: Deadline for fetching one remote image (504 past it).
    moderation_image_timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(item.strip(), strict=False)) for item in value]
        except ValueError as exc:
            raise ValueError(f"not an IP address or CIDR network: {exc}") from None


class StoreSection(_Section):
    """The database (audit log, keys, review queue) and what is kept in it."""

    #: SQLAlchemy URL or file path; empty means ``<data_dir>/genguard.db`` (SQLite, WAL).
    url: str = ""
    data_dir: Path = Path("genguard-data")
    #: Keep submitted and generated images (encrypted with Fernet) so reviewers can see
    #: them. Off by default: the audit log then holds hashes and scores only.
    store_content: bool = False
    #: Fernet key (urlsafe base64, 32 bytes); prefer the GENGUARD_CONTENT_KEY variable.
    #: Several comma-separated keys rotate: the first encrypts, every one decrypts.
    content_key: str = ""

    def database(self) -> str:
        return self.url or str(self.data_dir / "genguard.db")


class PoliciesSection(_Section):
    """Policies the gateway serves: name -> built-in profile or TOML path."""

    default: str = "standard"
    profiles: dict[str, str] = Field(default_factory=lambda: {p: p for p in BUILTIN_PROFILES})

    @field_validator("profiles")
    @classmethod
    def _not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one policy profile is needed")
        return value


class DetectorsSection(_Section):
    backends: list[str] = Field(default_factory=lambda: list(DEFAULT_BACKENDS))
    #: onnxruntime threads per model; default shares the cores out between models.
    threads: int | None = Field(default=None, ge=1)


class LimitsSection(_Section):
    #: Redis URL for limits shared by several gateway processes; empty: in-process buckets.
    redis_url: str = ""
    #: Rate given to keys created without ``--rate``.
    default_rate: str = "60/min"


class GeneratorSection(_Section):
    """The image generator behind ``/v1/generate`` (a name in the generator registry)."""

    backend: str = "fake"
    model: str = "genguard-fake"
    options: dict[str, Any] = Field(default_factory=dict)
    #: Generations run at once (1 for a single local GPU; more for a remote farm).
    concurrency: int = Field(default=1, ge=1, le=64)
    max_n: int = Field(default=4, ge=1, le=64)
    max_side: int = Field(default=1024, ge=64)
    max_steps: int = Field(default=100, ge=1)
    steps: int = Field(default=25, ge=1)
    guidance: float = Field(default=7.5, ge=0)
    width: int = Field(default=512, ge=8)
    height: int = Field(default=512, ge=8)


class WatermarkSection(_Section):
    enabled: bool = False
    #: 32-bit payload: an integer, or a text hashed to 32 bits.
    payload: int | str = 0
    #: Secret key; None: $GENGUARD_WATERMARK_KEY, else a per-install key created 0600 in
    #: ``store.data_dir/watermark.key`` on first use (never a built-in key).
    key: int | None = Field(default=None, gt=0, lt=2**64)
    strength: float = Field(default=2.3, gt=0, le=20)


class ReviewSection(_Section):
    #: Token that opens the review page; empty disables it (prefer GENGUARD_ADMIN_TOKEN).
    #: At least :data:`ADMIN_TOKEN_MIN_CHARS` characters, checked when the app starts.
    admin_token: str = ""
    page_size: int = Field(default=50, ge=1, le=500)
    #: Lifetime of a login session (and of its cookie); 8 hours: one working day.
    session_ttl_s: float = Field(default=8 * 3600.0, gt=0)
    #: Live sessions kept in memory; beyond this the oldest is logged out.
    max_sessions: int = Field(default=1000, ge=1)
    #: Always mark the session cookie ``Secure`` (behind a TLS-terminating proxy the
    #: gateway sees plain HTTP); it is marked anyway when the request came over HTTPS.
    secure_cookie: bool = False


class GatewayConfig(_Section):
    """The whole gateway configuration."""

    server: ServerSection = Field(default_factory=ServerSection)
    store: StoreSection = Field(default_factory=StoreSection)
    policies: PoliciesSection = Field(default_factory=PoliciesSection)
    detectors: DetectorsSection = Field(default_factory=DetectorsSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    generator: GeneratorSection = Field(default_factory=GeneratorSection)
    watermark: WatermarkSection = Field(default_factory=WatermarkSection)
    review: ReviewSection = Field(default_factory=ReviewSection)

    @model_validator(mode="after")
    def _default_policy_exists(self) -> GatewayConfig:
        if self.policies.default not in self.policies.profiles:
            raise ValueError(
                f"policies.default {self.policies.default!r} is not one of policies.profiles "
                f"({', '.join(sorted(self.policies.profiles))})"
            )
        return self

    def admin_token(self) -> str:
        """The review token: the config's, else the environment's ('' = review disabled)."""
        return self.review.admin_token or settings.admin_token()

    def check_admin_token(self) -> None:
        """Refuse a guessable admin token (it opens the review queue and its verdicts)."""
        token = self.admin_token()
        if token and len(token) < ADMIN_TOKEN_MIN_CHARS:
            raise ConfigError(
                f"the review admin token (review.admin_token or {ADMIN_TOKEN_ENV}) is "
                f"{len(token)} characters, under the minimum of {ADMIN_TOKEN_MIN_CHARS}: make "
                'one with python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )

    def content_key(self) -> str:
        return self.store.content_key or settings.content_key()


def parse_config(data: dict[str, Any], origin: str = "<config>") -> GatewayConfig:
    """Validate a config mapping (raises :class:`ConfigError` naming each bad field)."""
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{origin}: invalid gateway config: {problems}") from exc


def load_config(path: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """Read a TOML config; ``None`` reads ./genguard.toml when present, else defaults."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            return GatewayConfig()
        path = DEFAULT_CONFIG_PATH
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {file}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    return parse_config(data, str(file))

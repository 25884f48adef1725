"""The HTTP gateway: ``create_app(config)`` builds a FastAPI app around shared Guards.

Routes::

    POST /v1/moderate/image    multipart field ``image`` (or the raw image as the body)
    POST /v1/moderate/prompt   {"prompt": "...", "negative_prompt": "..."}
    POST /v1/generate          {"prompt": "...", "n": 2, "seed": 7, ...}
    POST /v1/moderations       OpenAI's moderation API: {"model": "...", "input": ...}
    GET  /healthz  /readyz  /metrics  /review  /docs  /openapi.json

Requests carry ``Authorization: Bearer <key>``; the key decides the policy and the rate
limit. A request is authenticated (401), then its body is read and validated, and only
then charged: 1 token per moderation, ``n`` per generation; content the work refuses
(a corrupt image, an empty prompt) is refunded, up to the key's rate in refunds. A
moderation *verdict* (allow, censor, review, block) is always a 200 with the Decision:
only requests that cannot be processed are errors, with the JSON body
``{"error": {"code", "message"}}`` and a 4xx (client) or 5xx (gateway) status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genguard import __version__
from genguard.content import bound_decode_memory
from genguard.errors import ConfigError, ContentError, GenguardError, StoreUnavailable
from genguard.generators import ImageGenerator
from genguard.guard import Guard
from genguard.server import models as _models  # noqa: F401  (declares the tables)
from genguard.server.auditlog import AuditLog, ContentVault
from genguard.server.auth import ApiKey, KeyStore
from genguard.server.config import GatewayConfig
from genguard.server.connections import BodyTimeoutMiddleware
from genguard.server.errors import ApiError, error_body, status_for
from genguard.server.metrics import GatewayMetrics
from genguard.server.openai_compat import (
    DEFAULT_MODEL,
    check_url_count,
    fetch_remote_images,
    moderate_items,
    parse_items,
    to_result,
)
from genguard.server.pipeline import Caller, Pipeline
from genguard.server.ratelimit import (
    LimitResult,
    MemoryRateLimiter,
    RateLimiter,
    create_limiter,
    peek,
    refund,
)
from genguard.server.schemas import (
    GenerateRequest,
    ModerationRequest,
    PromptRequest,
    error_responses,
    inline_defs,
)
from genguard.server.services import (
    GeneratorService,
    GuardRegistry,
    JobRunner,
    watermark_settings,
)
from genguard.server.sessions import StoredSessionStore
from genguard.store import Store, open_store

log = logging.getLogger("genguard.server")
B = TypeVar("B", bound=BaseModel)
T = TypeVar("T")
#: What a client's ``X-Request-ID`` must look like to be echoed and logged (never adopted).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
#: Status recorded when the client hung up before its body was read (nginx's convention):
#: nobody receives it, but metrics and logs tell it apart from 4xx and 5xx answers.
CLIENT_CLOSED = 499
#: Seconds a client waits before retrying what the database refused (Retry-After).
STORE_RETRY_AFTER_S = 5
#: Longest /readyz waits for the database: a hung database is "not ready", not a hung probe.
READY_TIMEOUT_S = 2.0


@dataclass
class Gateway:
    """Everything requests share; lives on ``app.state.gateway``."""

    config: GatewayConfig
    store: Store
    keys: KeyStore
    limiter: RateLimiter
    audit: AuditLog
    guards: GuardRegistry
    runner: JobRunner
    pipeline: Pipeline
    metrics: GatewayMetrics
    #: Review-page login sessions, in the database (see :mod:`genguard.server.sessions`).
    sessions: StoredSessionStore
    owns_store: bool = True

    def close(self) -> None:
        self.runner.shutdown()
        self.pipeline.generator.close()
        self.limiter.close()
        if self.owns_store:
            self.store.close()


def _watermark_section(config: GatewayConfig) -> Any:
    """The watermark section with its key resolved: ``watermark.key``, else the operator
    key ($GENGUARD_WATERMARK_KEY, else ``<store.data_dir>/watermark.key``, created 0600 on
    first use). Marks are never made with a key that ships with the code."""
    section = config.watermark
    if not section.enabled or section.key is not None:
        return section
    try:
        from genguard.provenance.watermark import operator_key
    except ImportError:  # watermark_settings logs that watermarking is off
        return section
    return section.model_copy(update={"key": operator_key(config.store.data_dir)})


def build_gateway(
    config: GatewayConfig,
    *,
    guards: dict[str, Guard] | None = None,
    store: Store | None = None,
    limiter: RateLimiter | None = None,
    generator: ImageGenerator | None = None,
) -> Gateway:
    """Wire the services from ``config``; arguments replace parts (tests, embedding)."""
    config.check_admin_token()  # before anything is opened: nothing to clean up
    bound_decode_memory(config.server.decode_pixels)
    metrics = GatewayMetrics()
    owns_store = store is None
    store = store or open_store(config.store.database())
    vault = None
    if config.store.store_content:
        key = config.content_key()
        if not key:
            raise ConfigError(
                "store.store_content = true needs an encryption key: set GENGUARD_CONTENT_KEY "
                "(or store.content_key) to a Fernet key, or to 'new,old' keys while rotating"
            )
        vault = ContentVault(key)
    audit = AuditLog(store, vault)
    pipeline = Pipeline(
        audit,
        metrics,
        GeneratorService(config.generator, generator),
        config.generator,
    )
    registry = GuardRegistry(
        config.policies.profiles,
        backends=config.detectors.backends,
        threads=config.detectors.threads,
        guards=guards,
        store=store,
        watermark=watermark_settings(_watermark_section(config)),
    )
    server = config.server
    return Gateway(
        config=config,
        store=store,
        keys=KeyStore(store),
        limiter=limiter or create_limiter(config.limits.redis_url),
        audit=audit,
        guards=registry,
        runner=JobRunner(server.workers, server.max_queue, server.request_timeout_s, metrics),
        pipeline=pipeline,
        metrics=metrics,
        sessions=StoredSessionStore(store, config.review.session_ttl_s, config.review.max_sessions),
        owns_store=owns_store,
    )


# -- middleware ---------------------------------------------------------------------------


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "too_large", f"request body is over the {limit}-byte limit")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Refuse oversized bodies: by Content-Length before reading, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            error = BodyTooLarge(self.max_bytes)
            await _send_json(send, 413, error_body(error.code, error.message))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def client_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-ID`` when it is 8-64 safe characters, else None.

    Only a correlation field: echoed as ``X-Client-Request-ID`` and logged, never used as
    the gateway's id, so one tenant cannot collide with or forge another's audit rows.
    """
    supplied = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    return supplied if _REQUEST_ID.match(supplied) else None


def id_headers(request_id: str, client_id: str | None) -> list[tuple[bytes, bytes]]:
    """``X-Request-ID`` (always the gateway's) and, when sent, ``X-Client-Request-ID``."""
    headers = [(b"x-request-id", request_id.encode())]
    if client_id is not None:
        headers.append((b"x-client-request-id", client_id.encode()))
    return headers


class ObservabilityMiddleware:
    """Request id, access log line (JSON), request metrics by route template."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        client_id = client_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_request_id"] = client_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.extend(id_headers(request_id, client_id))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status, seconds)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "client_request_id": client_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "key": state.get("key_name"),
                },
            )


# -- error handlers -----------------------------------------------------------------------


def _json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


async def _answer(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error answer; one to a verified key also says where the key's bucket stands."""
    limits = await rate_headers(request)
    return _json_error(status, code, message, {**limits, **(headers or {})})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return await _answer(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(GenguardError)
    async def _genguard_error(request: Request, exc: GenguardError) -> JSONResponse:
        return await _answer(request, status_for(exc), exc.code, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # A 503 the client can retry, never a 500 or a 200 without its audit row; the
        # driver's detail (paths, SQL) goes to the log only.
        request_id = getattr(request.state, "request_id", "?")
        log.warning(
            "store unavailable",
            extra={"request_id": request_id, "reason": exc.reason, "detail": exc.detail},
        )
        gateway_of(request).metrics.store_errors.labels(exc.reason).inc()
        retry = {"Retry-After": str(STORE_RETRY_AFTER_S)}
        return await _answer(request, 503, exc.code, str(exc), retry)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await _answer(request, 422, "invalid_request", _format_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, f"http_{exc.status_code}"
        )
        headers = dict(exc.headers or {})
        return await _answer(request, exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # Not a gateway fault: nobody is left to answer, so no traceback and no 5xx. The
        # body was not read, so nothing was charged or recorded.
        request_id = getattr(request.state, "request_id", "?")
        log.info("client disconnected mid-request", extra={"request_id": request_id})
        return _json_error(CLIENT_CLOSED, "client_disconnected", "the client closed the connection")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "?")
        log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
        # Sent by Starlette's outermost middleware, past ours: add the id headers here.
        client_id = getattr(request.state, "client_request_id", None)
        headers = {k.decode(): v.decode() for k, v in id_headers(request_id, client_id)}
        return _json_error(500, "internal", f"internal error (request id {request_id})", headers)


def _format_errors(errors: Any) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# -- request helpers ----------------------------------------------------------------------


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


_bearer = HTTPBearer(auto_error=False, description="An API key from `genguard keys create`")


async def require_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """Verify the bearer key (401 otherwise); nothing is charged before the body is valid."""
    gateway = gateway_of(request)
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(
            401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", challenge
        )
    key = await run_in_threadpool(gateway.keys.verify, credentials.credentials)
    if key is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key", challenge)
    request.state.key_name = key.name
    request.state.api_key = key
    return key


Key = Annotated[ApiKey, Depends(require_key)]


async def _limiter_call(gateway: Gateway, fn: Callable[..., T], *args: Any) -> T:
    """In-process buckets answer at once; a Redis round trip goes to a thread."""
    if isinstance(gateway.limiter, MemoryRateLimiter):
        return fn(*args)
    return await run_in_threadpool(fn, *args)


async def rate_headers(request: Request) -> dict[str, str]:
    """``X-RateLimit-*`` for an answer to a verified, limited key; {} for anyone else.

    After a charge or a refund they say what that left; a request refused before it was
    charged (a bad body) peeks, so every answer to a key shows where its bucket stands.
    """
    key: ApiKey | None = getattr(request.state, "api_key", None)
    if key is None or key.rate.unlimited:
        return {}
    result: LimitResult | None = getattr(request.state, "rate_limit", None)
    if result is None:
        gateway = gateway_of(request)
        result = await _limiter_call(gateway, peek, gateway.limiter, key.name, key.rate)
    return result.limit_headers()


def _over_capacity(key: ApiKey, cost: int) -> ApiError:
    """A request dearer than the key's whole bucket: no wait helps, so no 429."""
    return ApiError(
        400,
        "cost_over_limit",
        f"this request costs {cost} tokens but key {key.name!r} holds at most "
        f"{key.rate.count} (rate {key.rate}), so it can never succeed: ask for at most "
        f"{key.rate.count} images per request",
    )


async def charge(request: Request, response: Response, key: ApiKey, cost: int) -> None:
    """Take ``cost`` tokens from the key's bucket (429 when short, 400 when it never could)."""
    if not key.rate.unlimited and cost > key.rate.count:
        raise _over_capacity(key, cost)
    gateway = gateway_of(request)
    result = await _limiter_call(gateway, gateway.limiter.hit, key.name, key.rate, cost)
    request.state.rate_limit = result
    if not result.allowed:
        gateway.metrics.rate_limited.inc()
        headers = result.headers()
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit {key.rate} reached for key {key.name!r}; this request costs {cost} "
            f"token{'s' if cost > 1 else ''}, retry in {headers['Retry-After']} s",
            headers,
        )
    if not key.rate.unlimited:
        response.headers.update(result.headers())


async def run_charged(
    request: Request,
    response: Response,
    key: ApiKey,
    cost: int,
    fn: Callable[..., T],
    *args: Any,
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Charge ``cost``, run ``fn`` on the job runner; refund when the content is refused.

    A ContentError (corrupt image, too many pixels, empty prompt) is a 4xx the client
    can fix, so it costs nothing, up to the key's rate in refunds (a second bucket,
    :func:`refund_bucket`): refused content still costs the gateway a decode, so a key
    that sends nothing but corrupt files runs at most twice its rate, not unbounded.
    Gateway-side failures (503, 504, 502) stay charged, which keeps retries against a
    failing backend paced by the key's rate. ``prepare`` (fetching remote inputs) runs
    after the charge, so fetches are paced the same way.
    """
    await charge(request, response, key, cost)
    gateway = gateway_of(request)
    if prepare is not None:
        await prepare()
    try:
        return await gateway.runner.run(fn, *args, job_id=request.state.request_id, tenant=key.name)
    except ContentError:
        allowance = await _limiter_call(
            gateway, gateway.limiter.hit, refund_bucket(key.name), key.rate, cost
        )
        if allowance.allowed:
            request.state.rate_limit = await _limiter_call(
                gateway, refund, gateway.limiter, key.name, key.rate, cost
            )
        else:
            gateway.metrics.refunds_denied.inc()
        raise


def refund_bucket(key_name: str) -> str:
    """The bucket that meters a key's refunds (":" is never part of a key name)."""
    return f"refunds:{key_name}"


def _caller(request: Request, key: ApiKey) -> Caller:
    client_id = getattr(request.state, "client_request_id", None)
    return Caller(key.name, key.policy, request.state.request_id, client_id)


async def read_json(request: Request, model: type[B]) -> B:
    """Parse a JSON object body into ``model`` whatever the content type says.

    ``curl -d '{...}'`` sends form-urlencoded by default; accepting JSON regardless keeps
    the obvious command working. Multipart bodies are refused with 415.
    """
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send a JSON object, not a multipart form")
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "invalid_json", "empty body: send a JSON object")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", _format_errors(exc.errors())) from None


async def read_image(request: Request) -> bytes:
    """The uploaded image: multipart field ``image``, or the raw body for other types."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "missing_image", "multipart form needs a file field named 'image'")
        data = await upload.read()
    elif content_type.startswith(("application/json", "application/x-www-form-urlencoded")):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the image as multipart field 'image' (curl -F image=@x.png) or as the raw "
            "body with an image/* content type",
        )
    else:
        data = await request.body()
    if not data:
        raise ApiError(422, "empty_file", "the image is empty (0 bytes)")
    return data


def _json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    schema = inline_defs(model.model_json_schema())
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_IMAGE_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


#: Errors every authenticated moderation route can answer (generation adds 502).
_MODERATION_ERRORS = error_responses(400, 401, 413, 415, 422, 429, 503, 504)

# -- the app ------------------------------------------------------------------------------


def create_app(
    config: GatewayConfig | None = None,
    *,
    guards: dict[str, Guard] | None = None,
    store: Store | None = None,
    limiter: RateLimiter | None = None,
    generator: ImageGenerator | None = None,
) -> FastAPI:
    """Build the gateway app; keyword arguments replace configured parts (tests, embedding)."""
    config = config or GatewayConfig()
    gateway = build_gateway(
        config, guards=guards, store=store, limiter=limiter, generator=generator
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if config.server.preload:
            await run_in_threadpool(gateway.guards.warm_up, config.policies.default)
        log.info(
            "gateway started",
            extra={"policies": gateway.guards.names(), "store": gateway.store.url},
        )
        yield
        gateway.close()
        log.info("gateway stopped")

    app = FastAPI(
        title="genguard gateway",
        version=__version__,
        description=(
            "Moderation and guarded generation. Verdicts are 200 responses with a Decision; "
            'errors are {"error": {"code", "message"}} with a 4xx or 5xx status.'
        ),
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    _install_error_handlers(app)
    _add_routes(app, gateway)
    from genguard.server.review import router as review_router

    app.include_router(review_router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.server.max_body_bytes)
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=config.server.body_timeout_s)
    app.add_middleware(ObservabilityMiddleware, metrics=gateway.metrics)
    return app


_READYZ_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": 'the database is unavailable: {"status": "unavailable", "reason": ...}',
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


async def probe_store(store: Store) -> str | None:
    """None when the store is ready, else a short reason code; at most READY_TIMEOUT_S.

    ``asyncio.to_thread`` (not Starlette's threadpool, which waits for the thread when
    cancelled) lets the timeout answer while a hung probe finishes in the background.
    """
    try:
        await asyncio.wait_for(asyncio.to_thread(store.ping), READY_TIMEOUT_S)
    except StoreUnavailable as exc:
        return exc.reason
    except TimeoutError:
        return "timeout"
    return None


def _add_routes(app: FastAPI, gateway: Gateway) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process serves requests (no model or database round trip).

        ``store`` tells what the last database operation and a ``stat`` of the SQLite file
        say; the status stays 200, since restarting the process would not fix a database.
        """
        return {
            "status": "ok",
            "version": __version__,
            "policies": gateway.guards.names(),
            "store": "ok" if gateway.store.problem() is None else "unavailable",
        }

    @app.get("/readyz", tags=["operations"], responses=_READYZ_RESPONSES)
    async def readyz() -> JSONResponse:
        """Readiness, for a load balancer: 503 while the database cannot record decisions."""
        reason = await probe_store(gateway.store)
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse(
            {"status": "unavailable", "reason": reason},
            status_code=503,
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    @app.post(
        "/v1/moderate/image",
        tags=["moderation"],
        openapi_extra=_IMAGE_BODY_DOC,
        responses=_MODERATION_ERRORS,
    )
    async def moderate_image(
        request: Request, response: Response, key: Key, publish: bool = False
    ) -> dict[str, Any]:
        """Check an image under the key's policy (one token).

        With ``?publish=true`` the response also carries the publishable image (base64
        PNG): the original, a censored copy, or a placeholder, per the decision.
        """
        data = await read_image(request)
        guard = gateway.guards.get(key.policy)
        caller = _caller(request, key)
        moderate = gateway.pipeline.moderate_image
        return await run_charged(request, response, key, 1, moderate, guard, data, caller, publish)

    @app.post(
        "/v1/moderate/prompt",
        tags=["moderation"],
        openapi_extra=_json_body_doc(PromptRequest),
        responses=_MODERATION_ERRORS,
    )
    async def moderate_prompt(request: Request, response: Response, key: Key) -> dict[str, Any]:
        """Check a prompt (and, apart, its negative prompt) under the key's policy (one token)."""
        body = await read_json(request, PromptRequest)
        guard = gateway.guards.get(key.policy)
        caller = _caller(request, key)
        decision, audit_id = await run_charged(
            request, response, key, 1, gateway.pipeline.moderate_prompt, guard, body, caller
        )
        return {
            "request_id": request.state.request_id,
            "audit_id": audit_id,
            "decision": decision.to_dict(),
        }

    @app.post(
        "/v1/moderations",
        tags=["moderation"],
        openapi_extra=_json_body_doc(ModerationRequest),
        responses={**_MODERATION_ERRORS, **error_responses(502)},
    )
    async def openai_moderations(request: Request, response: Response, key: Key) -> dict[str, Any]:
        """OpenAI-compatible moderation under the key's policy (one token per input item).

        One result per string; one combined result for a list of text and image parts.
        ``flagged`` means the Decision's action is not allow; the Decisions are under
        ``results[i].genguard``.
        """
        body = await read_json(request, ModerationRequest)
        items = parse_items(body, gateway.config.server.moderation_image_hosts)
        guard = gateway.guards.get(key.policy)
        caller = _caller(request, key)
        cost = sum(item.cost for item in items)
        server = gateway.config.server
        check_url_count(items, server.moderation_image_fetches)  # before the charge

        async def fetch() -> None:
            await fetch_remote_images(
                items,
                server.moderation_image_hosts,
                max_bytes=server.max_body_bytes,
                timeout_s=server.moderation_image_timeout_s,
            )

        checked = await run_charged(
            request,
            response,
            key,
            cost,
            moderate_items,
            gateway.pipeline,
            guard,
            items,
            caller,
            prepare=fetch,
        )
        return {
            "id": f"modr-{request.state.request_id}",
            "model": body.model or DEFAULT_MODEL,
            "results": [to_result(decisions, ids) for decisions, ids in checked],
        }

    @app.post(
        "/v1/generate",
        tags=["generation"],
        openapi_extra=_json_body_doc(GenerateRequest),
        responses={**_MODERATION_ERRORS, **error_responses(502)},
    )
    async def generate(request: Request, response: Response, key: Key) -> dict[str, Any]:
        """Prompt check, generation, output check, censor/placeholder, watermark.

        Costs ``n`` tokens, one per image asked, charged once the body and its settings
        are known to be valid. A blocked prompt (or one held for review) is a 200 with
        ``action`` set and no images: the verdict is the answer, not an error.
        """
        body = await read_json(request, GenerateRequest)
        gateway.pipeline.settings_for(body)  # n, sides, steps over bounds: 422, uncharged
        guard = gateway.guards.get(key.policy)
        caller = _caller(request, key)
        return await run_charged(
            request, response, key, body.n, gateway.pipeline.generate, guard, body, caller
        )

"""The review page: server-rendered HTML (no build step) over the audit log's queue.

Access needs the admin token from the config (or ``GENGUARD_ADMIN_TOKEN``, 32 characters
at least). Logging in opens a server-side session (:mod:`genguard.server.sessions`) whose
random id is the cookie: the token never sits in a cookie, sessions expire, logging out
revokes them, and changing the token logs everyone out. The cookie is HttpOnly,
SameSite=Strict and path-scoped (``Secure`` on HTTPS or when configured), and every
state-changing post it authenticates must carry the session's CSRF token. Scripts send
``Authorization: Bearer <token>`` instead (no cookie, no CSRF token); a wrong bearer
token is refused outright, never falling back to the cookie. Failed logins and wrong
bearer tokens are counted per client address (:func:`genguard.server.clients.client_address`)
and answered 429 beyond :data:`LOGIN_RATE`. Thumbnails are decrypted, shrunk and blurred
on the server: the browser never receives the unblurred image.
"""

from __future__ import annotations

import hmac
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image, ImageFilter
from starlette.concurrency import run_in_threadpool

from genguard.content import LoadLimits, load_image
from genguard.errors import ContentError
from genguard.server.auditlog import AuditLog, ReviewError
from genguard.server.auth import Rate
from genguard.server.clients import client_address
from genguard.server.config import ADMIN_TOKEN_MIN_CHARS
from genguard.server.errors import ApiError
from genguard.server.ratelimit import peek
from genguard.server.sessions import Session

if TYPE_CHECKING:
    from genguard.server.app import Gateway

COOKIE = "genguard_review"
#: Limiter bucket prefix of failed admin authentications (login form and bearer alike).
FAILED_AUTH_BUCKET = "review-auth:"
THUMB_SIDE = 192
BLUR_RADIUS = 10

#: Audit ids are 64-bit integers: a larger id is a 422, never a database overflow (500).
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(prefix="/review", include_in_schema=False)
_templates = Environment(
    loader=PackageLoader("genguard.server", "templates"),
    autoescape=select_autoescape(["html"]),
)


@dataclass(frozen=True)
class Reviewer:
    """Who acts, and the session that vouched for it (None: the bearer token did)."""

    name: str
    session: Session | None = None


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _token(request: Request) -> str:
    """The admin token; 404 when none is set (the page is off), 503 when one is too short."""
    token = _gateway(request).config.admin_token()
    if not token:
        raise ApiError(
            404,
            "review_disabled",
            "the review page is disabled: set review.admin_token or GENGUARD_ADMIN_TOKEN",
        )
    if len(token) < ADMIN_TOKEN_MIN_CHARS:  # checked at start-up; the env may change later
        raise ApiError(
            503,
            "review_disabled",
            f"the review page is disabled: the admin token is under {ADMIN_TOKEN_MIN_CHARS} "
            "characters",
        )
    return token


def _audit(request: Request) -> AuditLog:
    return _gateway(request).audit


def _failure_bucket(request: Request) -> str:
    trusted = _gateway(request).config.server.trusted_proxies
    return FAILED_AUTH_BUCKET + client_address(request, trusted)


async def refuse_if_throttled(request: Request) -> None:
    """429 once the client's failures are over :data:`LOGIN_RATE`, right credentials or not.

    Checking the credentials of a throttled client would tell a guesser which guess was
    right at any speed; so nothing is checked until its budget refills.
    """
    result = await run_in_threadpool(
        peek, _gateway(request).limiter, _failure_bucket(request), LOGIN_RATE
    )
    if not result.allowed:
        raise ApiError(
            429,
            "rate_limited",
            "too many failed admin logins from this address; retry later",
            result.headers(),
        )


async def count_failure(request: Request) -> None:
    """Spend one of the client's failed-attempt tokens (successes spend none)."""
    await run_in_threadpool(_gateway(request).limiter.hit, _failure_bucket(request), LOGIN_RATE)


def _bearer(request: Request) -> str | None:
    """The credential of ``Authorization: Bearer``, or None for no (or another) scheme."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def authenticate(request: Request, token: str) -> Reviewer | None:
    """The reviewer, by bearer token or else by session cookie; None when neither.

    A bearer token decides alone: a wrong one is counted and refused (401), never
    retried as the cookie, so no header can turn a cookie request into a CSRF-free one.
    """
    credential = _bearer(request)
    if credential is None:
        session = _gateway(request).sessions.get(request.cookies.get(COOKIE, ""), token)
        return None if session is None else Reviewer(session.reviewer, session)
    await refuse_if_throttled(request)
    if not _same(credential, token):
        await count_failure(request)
        raise ApiError(401, "unauthorized", "wrong admin token", {"WWW-Authenticate": "Bearer"})
    return Reviewer(request.headers.get("x-reviewer", "api")[:100] or "api")


def require_csrf(reviewer: Reviewer, csrf: str) -> None:
    """A post the cookie authenticated must carry its session's form token (403 if not).

    The browser attaches the cookie to forged cross-site posts too; only the page knows
    the token. Bearer requests need none: a forged request cannot carry the header.
    """
    if reviewer.session is not None and not _same(csrf, reviewer.session.csrf):
        raise ApiError(403, "csrf", "stale or missing form token: reload the review page")


def _cookie_flags(request: Request) -> dict[str, Any]:
    secure = _gateway(request).config.review.secure_cookie or request.url.scheme == "https"
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/review"}


#: The page loads nothing from elsewhere, cannot be framed, and posts only to itself.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
#: Failed admin authentications (wrong login or bearer token) per client address:
#: enough for typos, far too few to guess a token.
LOGIN_RATE = Rate(10, 60.0)


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


@router.get("")
async def review_page(request: Request, error: str = "") -> HTMLResponse:
    """The queue (oldest first) and the latest decisions, or the login form."""
    token = _token(request)
    reviewer = await authenticate(request, token)
    if reviewer is None:
        return _render("login.html", error="")
    audit = _audit(request)
    page_size = _gateway(request).config.review.page_size
    pending = await run_in_threadpool(audit.queue, "pending", page_size)
    total = await run_in_threadpool(audit.queue_size, "pending")
    decided = await run_in_threadpool(audit.decided, 20)
    return _render(
        "review.html",
        reviewer=reviewer.name,
        pending=pending,
        total=total,
        decided=decided,
        csrf=reviewer.session.csrf if reviewer.session else "",
        error=error[:300],
        stores_content=audit.stores_content,
    )


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=500)] = "",
    reviewer: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """Open a session: a fresh random cookie per login (any previous one is revoked)."""
    expected = _token(request)
    await refuse_if_throttled(request)
    name = reviewer.strip()
    if not name or not _same(token, expected):
        await count_failure(request)
        return _render("login.html", status=401, error="wrong token, or no reviewer name")
    sessions = _gateway(request).sessions
    sessions.revoke(request.cookies.get(COOKIE, ""))
    session_id, _session = sessions.create(name, expected)
    response = RedirectResponse("/review", status_code=303)
    max_age = math.ceil(_gateway(request).config.review.session_ttl_s)
    response.set_cookie(COOKIE, session_id, max_age=max_age, **_cookie_flags(request))
    return response


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """End the session on the server too, so a copied or replayed cookie stops working."""
    token = _token(request)
    reviewer = await authenticate(request, token)
    if reviewer is not None and reviewer.session is None:
        return Response(status_code=204)  # a bearer client: no session to end
    if reviewer is not None:
        require_csrf(reviewer, csrf)
        _gateway(request).sessions.revoke(request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/review", status_code=303)
    response.delete_cookie(COOKIE, **_cookie_flags(request))
    return response


@router.post("/items/{item_id}")
async def decide(
    request: Request,
    item_id: ItemId,
    verdict: Annotated[str, Form()],
    csrf: Annotated[str, Form(max_length=200)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Approve or reject one pending item (recorded with the reviewer and the time)."""
    token = _token(request)
    reviewer = await authenticate(request, token)
    if reviewer is None:
        raise ApiError(401, "unauthorized", "log in to /review first")
    require_csrf(reviewer, csrf)
    bearer = reviewer.session is None
    state = {"approve": "approved", "reject": "rejected"}.get(verdict)
    if state is None:
        raise ApiError(422, "invalid_request", "verdict must be 'approve' or 'reject'")
    try:
        await run_in_threadpool(_audit(request).resolve, item_id, state, reviewer.name, note)
    except ReviewError as exc:
        if bearer:
            raise
        return RedirectResponse(f"/review?error={quote(str(exc))}", status_code=303)
    if bearer:
        return Response(status_code=204)
    return RedirectResponse("/review", status_code=303)


@router.get("/items/{item_id}/thumb")
async def thumbnail(request: Request, item_id: ItemId) -> Response:
    """A small, blurred JPEG of stored image content (404 when nothing is stored)."""
    token = _token(request)
    if await authenticate(request, token) is None:
        raise ApiError(401, "unauthorized", "log in to /review first")
    stored = await run_in_threadpool(_audit(request).content, item_id)
    if stored is None or not stored[0].startswith("image/"):
        raise ApiError(404, "not_found", f"no stored image for item {item_id}")
    try:
        jpeg = await run_in_threadpool(blurred_thumbnail, stored[1])
    except ContentError as exc:
        raise ApiError(404, "not_found", f"stored image unreadable: {exc}") from exc
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def blurred_thumbnail(data: bytes, side: int = THUMB_SIDE, radius: float = BLUR_RADIUS) -> bytes:
    """Shrink to ``side`` and Gaussian-blur, so a reviewer sees the gist, not the detail.

    Only the first frame is decoded, under the same pixel and decode budgets as uploads:
    a page of thumbnails must never cost what a decompression bomb asks for.
    """
    loaded = load_image(data, LoadLimits(analysis_side=side, max_frames=1))
    image = Image.fromarray(loaded.rgb).filter(ImageFilter.GaussianBlur(radius))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()

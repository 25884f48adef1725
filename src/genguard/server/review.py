"""The review page: server-rendered HTML (no build step) over the audit log's queue.

Access needs the admin token from the config (or ``GENGUARD_ADMIN_TOKEN``). Logging in
sets a session cookie that holds the reviewer's name and an HMAC of it under the token
(so the token itself never sits in a cookie, and changing the token logs everyone out).
The cookie is HttpOnly and SameSite=Strict, and every form also carries a CSRF token
derived from the session. Thumbnails are decrypted, shrunk and blurred on the server:
the browser never receives the unblurred image.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image, ImageFilter
from starlette.concurrency import run_in_threadpool

from genguard.content import LoadLimits, load_image
from genguard.errors import ContentError
from genguard.server.auditlog import AuditLog, ReviewError
from genguard.server.auth import Rate
from genguard.server.errors import ApiError

COOKIE = "genguard_review"
THUMB_SIDE = 192
BLUR_RADIUS = 10

router = APIRouter(prefix="/review", include_in_schema=False)
_templates = Environment(
    loader=PackageLoader("genguard.server", "templates"),
    autoescape=select_autoescape(["html"]),
)


def _token(request: Request) -> str:
    token = request.app.state.gateway.config.admin_token()
    if not token:
        raise ApiError(
            404,
            "review_disabled",
            "the review page is disabled: set review.admin_token or GENGUARD_ADMIN_TOKEN",
        )
    return token


def _sign(token: str, purpose: str, value: str) -> str:
    return hmac.new(token.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _session_cookie(token: str, reviewer: str) -> str:
    name = base64.urlsafe_b64encode(reviewer.encode()).decode()
    return f"{name}.{_sign(token, 'session', reviewer)}"


def reviewer_of(request: Request, token: str) -> str | None:
    """The logged-in reviewer, from the session cookie or ``Authorization: Bearer <token>``."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and hmac.compare_digest(
        header[7:].strip().encode(), token.encode()
    ):
        return request.headers.get("x-reviewer", "api")[:100] or "api"
    cookie = request.cookies.get(COOKIE, "")
    name, _, signature = cookie.partition(".")
    try:
        reviewer = base64.urlsafe_b64decode(name.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if reviewer and hmac.compare_digest(signature, _sign(token, "session", reviewer)):
        return reviewer
    return None


def _audit(request: Request) -> AuditLog:
    return request.app.state.gateway.audit


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
#: Login attempts per client address: enough for typos, far too few to guess a token.
LOGIN_RATE = Rate(10, 60.0)


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


@router.get("")
async def review_page(request: Request, error: str = "") -> HTMLResponse:
    """The queue (oldest first) and the latest decisions, or the login form."""
    token = _token(request)
    reviewer = reviewer_of(request, token)
    if reviewer is None:
        return _render("login.html", error="")
    audit = _audit(request)
    page_size = request.app.state.gateway.config.review.page_size
    pending = await run_in_threadpool(audit.queue, "pending", page_size)
    total = await run_in_threadpool(audit.queue_size, "pending")
    decided = await run_in_threadpool(audit.decided, 20)
    return _render(
        "review.html",
        reviewer=reviewer,
        pending=pending,
        total=total,
        decided=decided,
        csrf=_sign(token, "csrf", reviewer),
        error=error[:300],
        stores_content=audit.stores_content,
    )


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=500)] = "",
    reviewer: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    expected = _token(request)
    client = request.client.host if request.client else "unknown"
    limited = await run_in_threadpool(
        request.app.state.gateway.limiter.hit, f"review-login:{client}", LOGIN_RATE
    )
    if not limited.allowed:
        raise ApiError(429, "rate_limited", "too many login attempts", limited.headers())
    name = reviewer.strip()
    if not name or not hmac.compare_digest(token.encode(), expected.encode()):
        return _render("login.html", status=401, error="wrong token, or no reviewer name")
    response = RedirectResponse("/review", status_code=303)
    response.set_cookie(
        COOKIE,
        _session_cookie(expected, name),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/review",
        max_age=12 * 3600,
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/review", status_code=303)
    response.delete_cookie(COOKIE, path="/review")
    return response


@router.post("/items/{item_id}")
async def decide(
    request: Request,
    item_id: int,
    verdict: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Approve or reject one pending item (recorded with the reviewer and the time)."""
    token = _token(request)
    reviewer = reviewer_of(request, token)
    if reviewer is None:
        raise ApiError(401, "unauthorized", "log in to /review first")
    bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
    if not bearer and not hmac.compare_digest(csrf, _sign(token, "csrf", reviewer)):
        raise ApiError(403, "csrf", "stale or missing form token: reload the review page")
    state = {"approve": "approved", "reject": "rejected"}.get(verdict)
    if state is None:
        raise ApiError(422, "invalid_request", "verdict must be 'approve' or 'reject'")
    try:
        await run_in_threadpool(_audit(request).resolve, item_id, state, reviewer, note)
    except ReviewError as exc:
        if bearer:
            raise
        return RedirectResponse(f"/review?error={quote(str(exc))}", status_code=303)
    if bearer:
        return Response(status_code=204)
    return RedirectResponse("/review", status_code=303)


@router.get("/items/{item_id}/thumb")
async def thumbnail(request: Request, item_id: int) -> Response:
    """A small, blurred JPEG of stored image content (404 when nothing is stored)."""
    token = _token(request)
    if reviewer_of(request, token) is None:
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
    """Shrink to ``side`` and Gaussian-blur, so a reviewer sees the gist, not the detail."""
    loaded = load_image(data, LoadLimits(analysis_side=side))
    image = Image.fromarray(loaded.rgb).filter(ImageFilter.GaussianBlur(radius))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()

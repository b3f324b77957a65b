"""Who may see the dashboard and act in it.

With ``service.api_token`` set, every page needs either the API's ``Authorization:
Bearer`` header or the session cookie the login form sets. The cookie holds an HMAC of
the token, never the token itself; it is ``HttpOnly`` and ``SameSite=Strict``. Every
state-changing request is a POST whose ``Origin`` (or, failing that, ``Referer``) names
this very service: a page elsewhere cannot make the browser act here, token or not.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

#: the name of the session cookie
COOKIE = "flowstage_session"
#: the dashboard's prefix in the service's URL space
PREFIX = "/ui"
#: pages anyone may load: the login form and the assets it needs
_OPEN = (f"{PREFIX}/login", f"{PREFIX}/static/")


def is_dashboard(path: str) -> bool:
    """Whether ``path`` belongs to the dashboard."""
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def session_value(token: str) -> str:
    """The cookie value that stands for ``token`` (an HMAC: the token never leaves)."""
    return hmac.new(token.encode(), b"flowstage dashboard session", hashlib.sha256).hexdigest()


def has_token(request: Request, token: str) -> bool:
    """Whether ``request`` carries ``token``: the Bearer header or the session cookie."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def same_origin(request: Request) -> bool:
    """Whether the request comes from a page of this service (``Origin``, else ``Referer``)."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        return False
    parts = urlsplit(claimed)
    host = request.headers.get("host", "")
    return parts.scheme == request.url.scheme and parts.netloc.lower() == host.lower()


def _refuse(status: int, detail: str) -> Response:
    return JSONResponse({"status_code": status, "detail": detail}, status_code=status)


async def guard(
    request: Request, call_next: Callable[[Request], Awaitable[Response]], token: str | None
) -> Response:
    """Let a dashboard request through, send it to the login page, or refuse it.

    :param token: the service's ``api_token`` (None: pages are as open as the API is)
    """
    path = request.url.path
    if request.method not in ("GET", "HEAD") and not same_origin(request):
        return _refuse(403, "refused: a dashboard action must come from a dashboard page")
    if token and not path.startswith(_OPEN) and not has_token(request, token):
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if wants_page and not request.headers.get("x-fragment"):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
        response = _refuse(401, "log in to the dashboard first (or send Authorization: Bearer)")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return await call_next(request)


def login_cookie(response: Response, token: str, secure: bool) -> None:
    """Set the session cookie on ``response``."""
    response.set_cookie(
        COOKIE,
        session_value(token),
        httponly=True,
        samesite="strict",
        secure=secure,
        path=PREFIX,
    )


def check_login(given: str, token: str) -> bool:
    """Whether the token typed into the login form is the service's."""
    return hmac.compare_digest(given.strip().encode(), token.encode())


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path only (no open redirect)."""
    if target and is_dashboard(target) and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/runs"

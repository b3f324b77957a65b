"""Who may see the dashboard and act in it.

With ``service.api_token`` set, every page needs either the API's ``Authorization:
Bearer`` header or the session cookie the login form sets. The cookie holds its issue
time, a random nonce, and an HMAC of those and the token, keyed with a secret this process made at
start: never the token, different for each login, void after ``session_max_age`` (checked
here, not only by the browser), after a restart, and after ``POST /ui/logout``. It is
``HttpOnly`` and ``SameSite=Strict``. An address that types a wrong token
``MAX_FAILED_LOGINS`` times within ``FAILED_LOGIN_WINDOW`` seconds must wait (429).
Every state-changing request is a POST whose ``Origin`` (or, failing that, ``Referer``)
names this very service: a page elsewhere cannot make the browser act here, token or not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

#: the name of the session cookie
COOKIE = "flowstage_session"
#: the dashboard's prefix in the service's URL space
PREFIX = "/ui"
#: wrong tokens one address may type within ``FAILED_LOGIN_WINDOW`` seconds
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_WINDOW = 60.0
#: addresses whose failed logins are remembered at most (the oldest are forgotten)
_MAX_ADDRESSES = 10_000
#: pages anyone may load: the login form, logging out, and the assets they need
_OPEN = (f"{PREFIX}/login", f"{PREFIX}/logout", f"{PREFIX}/static/")


def is_dashboard(path: str) -> bool:
    """Whether ``path`` belongs to the dashboard."""
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def has_bearer(request: Request, token: str) -> bool:
    """Whether ``request`` sends ``Authorization: Bearer <token>`` (compared in constant
    time); the API and the dashboard check the header with this one function."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


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


class Sessions:
    """The session cookies of one service process (see the module docstring).

    :param token: the service's ``api_token``
    :param max_age: seconds a session lasts
    """

    def __init__(self, token: str, max_age: float) -> None:
        self.max_age = max_age
        self._key = secrets.token_bytes(32)
        self._token = hashlib.sha256(token.encode()).digest()
        #: sessions logged out before they expired: value -> issue time
        self._ended: dict[str, int] = {}

    def _mac(self, issued: int, nonce: str) -> str:
        message = f"{issued}.{nonce}:".encode() + self._token
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new session's cookie value: ``ISSUED.NONCE.MAC``."""
        issued, nonce = int(time.time()), secrets.token_hex(8)
        return f"{issued}.{nonce}.{self._mac(issued, nonce)}"

    def _issued(self, value: str) -> int | None:
        """When the session ``value`` was issued, if it is one of ours and still going."""
        found = re.fullmatch(r"([0-9]{1,12})\.([0-9a-f]{16})\.([0-9a-f]{64})", value)
        if found is None:
            return None
        issued, nonce, mac = int(found.group(1)), found.group(2), found.group(3)
        if not -60 <= time.time() - issued <= self.max_age or value in self._ended:
            return None  # (a minute's slack for a clock stepped back)
        return issued if hmac.compare_digest(mac, self._mac(issued, nonce)) else None

    def valid(self, value: str) -> bool:
        """Whether ``value`` is a session of this process that has neither expired nor
        been logged out."""
        return self._issued(value) is not None

    def end(self, value: str) -> None:
        """Log the session ``value`` out (nothing for a value that is no session)."""
        issued = self._issued(value)
        if issued is None:
            return
        oldest = time.time() - self.max_age
        self._ended = {v: at for v, at in self._ended.items() if at >= oldest}
        self._ended[value] = issued


class LoginThrottle:
    """Wrong tokens typed at the login form, per client address."""

    def __init__(self, limit: int = MAX_FAILED_LOGINS, window: float = FAILED_LOGIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def wait(self, address: str) -> float:
        """Seconds ``address`` must wait before it may try again (0: it may now)."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        now = time.monotonic()
        while failures and now - failures[0] >= self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return 0.0
        return self.window - (now - failures[0]) if len(failures) >= self.limit else 0.0

    def failed(self, address: str) -> None:
        """Count a wrong token from ``address``."""
        if address not in self._failures and len(self._failures) >= _MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(address, deque(maxlen=self.limit)).append(time.monotonic())

    def succeeded(self, address: str) -> None:
        """Forget the failures of ``address`` (it typed the right token)."""
        self._failures.pop(address, None)


class Gate:
    """Who may pass: the token, this process's sessions and the login throttle.

    :param token: the service's ``api_token`` (None: pages are as open as the API is)
    :param max_age: seconds a login lasts (``service.session_max_age``)
    """

    def __init__(self, token: str | None, max_age: float) -> None:
        self.token = token
        self.sessions = Sessions(token or "", max_age)
        self.throttle = LoginThrottle()

    def has_token(self, request: Request) -> bool:
        """Whether ``request`` carries the token: the Bearer header or a live session."""
        if self.token is None:
            return True
        if has_bearer(request, self.token):
            return True
        return self.sessions.valid(request.cookies.get(COOKIE, ""))

    async def guard(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Let a dashboard request through, send it to the login page, or refuse it."""
        path = request.url.path
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            return _refuse(403, "refused: a dashboard action must come from a dashboard page")
        if self.token and not path.startswith(_OPEN) and not self.has_token(request):
            wants_page = request.method == "GET" and "text/html" in request.headers.get(
                "accept", ""
            )
            if wants_page and not request.headers.get("x-fragment"):
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)
            response = _refuse(401, "log in to the dashboard first (or send Authorization: Bearer)")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await call_next(request)

    def check_login(self, given: str) -> bool:
        """Whether the token typed into the login form is the service's."""
        return self.token is not None and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    def log_in(self, response: Response, secure: bool) -> None:
        """Start a session: set its cookie on ``response``."""
        response.set_cookie(
            COOKIE,
            self.sessions.issue(),
            max_age=int(self.sessions.max_age),
            httponly=True,
            samesite="strict",
            secure=secure,
            path=PREFIX,
        )

    def log_out(self, request: Request, response: Response) -> None:
        """End the session ``request`` carries and clear its cookie on ``response``."""
        self.sessions.end(request.cookies.get(COOKIE, ""))
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")


def client_address(request: Request) -> str:
    """The address the request came from (as the socket saw it; no proxy header)."""
    return request.client.host if request.client is not None else "unknown"


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path only (no open redirect)."""
    if target and is_dashboard(target) and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/runs"

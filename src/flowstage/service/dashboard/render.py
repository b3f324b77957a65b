"""Rendering the dashboard's pages: one Jinja2 environment with autoescaping on for every
template (a workflow's names, results, logs and tracebacks are text, never markup),
the filters the templates share, and the static assets shipped in the package."""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from flowstage import __version__
from flowstage.service.dashboard.auth import PREFIX
from flowstage.service.dashboard.queries import preview
from flowstage.state.rows import parse_time

#: the assets under ``static/`` and their media types
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def when(value: str | datetime | None) -> str:
    """A stored time as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for none)."""
    moment = parse_time(value) if isinstance(value, str) else value
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration for people: ``850 ms``, ``12.3 s``, ``4 m 05 s``, ``2 h 03 m``."""
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def segment(value: str) -> str:
    """``value`` quoted as one segment of a URL path."""
    return quote(str(value), safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("flowstage.service.dashboard", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, seconds=seconds, to_json=preview, segment=segment)
    env.globals.update(prefix=PREFIX, version=__version__)
    return env


class Pages:
    """Renders templates into responses.

    :param logins: the pages need a login (the nav shows Log out)
    """

    def __init__(self, logins: bool = False) -> None:
        self.env = _environment()
        self.env.globals["logins"] = logins

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        """The template ``template`` as an HTML response (``context`` escaped as it goes in)."""
        context.setdefault("request_path", request.url.path)
        context.setdefault("request_query", request.url.query)
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=_NO_STORE)

    def fragment(self, request: Request) -> bool:
        """Whether the page's script asked for the live part only."""
        return bool(request.headers.get("x-fragment"))


#: pages show live state (no stale copy on Back); only the package's own script and
#: styles run, whatever a workflow's text holds; no other site may frame the pages
_NO_STORE = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def asset(name: str) -> Response | None:
    """A static asset of the package (None: no such asset)."""
    media = ASSETS.get(name)
    if media is None:
        return None
    data = (
        resources.files("flowstage.service.dashboard")
        .joinpath("static")
        .joinpath(name)
        .read_bytes()
    )
    return Response(data, media_type=media, headers={"Cache-Control": "max-age=300"})

"""The web dashboard under ``/ui/``: server-rendered pages of runs, workflows, triggers and
objects, live through server-sent events, served by the service's own app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flowstage.service.dashboard.auth import PREFIX, Gate, client_address, safe_next
from flowstage.service.dashboard.catalog import add_catalog_routes
from flowstage.service.dashboard.forms import read_form
from flowstage.service.dashboard.live import LiveHub
from flowstage.service.dashboard.render import Pages, asset
from flowstage.service.dashboard.runs import add_run_routes

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flowstage.service.service import Service

__all__ = ["mount_dashboard"]


def mount_dashboard(app: FastAPI, service: Service, gate: Gate) -> LiveHub:
    """Add the dashboard's routes to ``app``; the hub feeding its live updates (also
    kept as ``app.state.live``).

    :param gate: who may pass (the app's middleware calls its ``guard``)
    """
    pages = Pages(logins=gate.token is not None)
    hub = LiveHub(service)
    hub.attach()
    app.state.live = hub

    @app.get(PREFIX, include_in_schema=False)
    @app.get(f"{PREFIX}/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse(f"{PREFIX}/runs", status_code=303)

    @app.get(f"{PREFIX}/static/{{name}}", include_in_schema=False)
    def static(name: str) -> Response:
        found = asset(name)
        return found if found is not None else Response("not found", 404)

    @app.get(f"{PREFIX}/login", include_in_schema=False)
    def login_form(request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        return pages.render(request, "login.html", next=target, error=None)

    @app.post(f"{PREFIX}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await read_form(request, 4096)
        target = safe_next(form.get("next"))
        if gate.token is None:
            return RedirectResponse(target, status_code=303)
        address = client_address(request)
        wait = gate.throttle.wait(address)
        if wait > 0:
            error = f"too many wrong tokens: try again in {wait:.0f} s"
            refused = pages.render(request, "login.html", 429, next=target, error=error)
            refused.headers["Retry-After"] = str(max(1, round(wait)))
            return refused
        if not gate.check_login(form.get("token", "")):
            gate.throttle.failed(address)
            return pages.render(request, "login.html", 401, next=target, error="wrong token")
        gate.throttle.succeeded(address)
        response = RedirectResponse(target, status_code=303)
        gate.log_in(response, secure=request.url.scheme == "https")
        return response

    @app.post(f"{PREFIX}/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        gate.log_out(request, response)
        return response

    add_run_routes(app, service, pages, hub)
    add_catalog_routes(app, service, pages)
    return hub

"""The HTTP API: Flowdapt's routes and payloads (so that ``flowctl`` and
``flowdapt-sdk`` work unchanged), ``/metrics``, and the OpenAPI docs FastAPI serves at
``/docs`` and ``/openapi.json``. The run routes are in ``run_routes.py``.

Every answer is ``application/json`` (Flowdapt's SDK decodes nothing else); an error is
``{"status_code": N, "detail": "..."}``, the shape the SDK raises from, and never a
traceback. Request bodies are JSON, at most ``service.max_body_size`` bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from flowstage import __version__
from flowstage.core.errors import (
    ServiceClosed,
    ServiceError,
    UnknownNameError,
    UserError,
    WorkflowError,
)
from flowstage.service.answers import (
    APIError,
    error_response,
    is_json,
    json_response,
    read_json,
)
from flowstage.service.dashboard import auth as dashboard_auth
from flowstage.service.dashboard import mount_dashboard
from flowstage.service.documents import normalize
from flowstage.service.records import resource_document, resource_uid
from flowstage.service.run_routes import add_run_routes
from flowstage.state import resources as catalog
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from flowstage.service.service import Service

log = logging.getLogger("flowstage.service")

API_VERSION = "v1"
#: the resource kinds of Flowdapt's routes: route prefix -> stored kind
KINDS = {"workflows": "workflow", "configs": "config", "triggers": "trigger_rule"}


#: names a loopback service also answers for (the Host header a local client sends)
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _host_name(header: str) -> str:
    """The host part of a Host header (``[::1]:8080`` -> ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def create_app(service: Service) -> FastAPI:
    """The application serving ``service`` (started and drained by its lifespan)."""
    settings = service.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.drain(0.0)
            await app.state.live.close()  # the dashboard's hub (mount_dashboard sets it)
            await service.close()

    app = FastAPI(
        title="flowstage",
        description="flowstage's service: a Flowdapt-compatible API over a warm executor.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.service = service

    allowed_hosts = {settings.host.strip("[]"), *_LOOPBACK_NAMES}
    gate = dashboard_auth.Gate(settings.api_token, settings.session_max_age)

    @app.middleware("http")
    async def authenticate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        token = settings.api_token
        if not token:
            # Without a token, only a client that names this host may call: a web page
            # whose domain was re-pointed to 127.0.0.1 (DNS rebinding) sends its own name.
            host = _host_name(request.headers.get("host", ""))
            if host not in allowed_hosts:
                return error_response(
                    421, f"this service answers for {settings.host}, not {host!r}"
                )
        if dashboard_auth.is_dashboard(request.url.path):
            # HTML forms post form data: the dashboard checks their origin instead
            return await gate.guard(request, call_next)
        if request.method == "POST" and not is_json(request.headers.get("content-type", "")):
            # A cross-site form or fetch can POST text or form data without asking first
            # (no CORS preflight); a JSON content type cannot be sent that way.
            return error_response(415, "expected a JSON request (Content-Type: application/json)")
        if token and not dashboard_auth.has_bearer(request, token):
            response = error_response(401, "missing or wrong API token (Authorization: Bearer ...)")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await call_next(request)

    @app.exception_handler(APIError)
    async def apierror_response(_request: Request, exc: APIError) -> Response:
        return error_response(exc.status, exc.detail)

    @app.exception_handler(HTTPException)
    async def httperror_response(_request: Request, exc: HTTPException) -> Response:
        return error_response(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validationerror_response(_request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return error_response(422, "; ".join(problems))

    @app.exception_handler(UserError)
    async def usererror_response(_request: Request, exc: UserError) -> Response:
        if isinstance(exc, UnknownNameError):
            return error_response(404, str(exc))
        if isinstance(exc, ServiceClosed):
            return error_response(503, str(exc))
        if isinstance(exc, ServiceError):
            return error_response(409, str(exc))
        return error_response(400 if not isinstance(exc, WorkflowError) else 422, str(exc))

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception) -> Response:
        log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return error_response(
            500, f"internal error ({type(exc).__name__}); the service log has details"
        )

    # -- system -----------------------------------------------------------------------

    @app.get("/", summary="Ping")
    async def ping() -> Response:
        return json_response(
            {"app": "flowstage", "version": __version__, "api_version": API_VERSION}
        )

    @app.get("/status", summary="Status of the service")
    def status() -> Response:
        return json_response(_status(service) | {"dashboard": app.state.live.stats()})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")

    # -- resources --------------------------------------------------------------------

    def find(kind: str, identifier: str) -> dict[str, Any]:
        store = get_store()
        row = store.get_resource(kind, identifier)
        if row is None:
            for candidate in store.list_resources(kind):
                if resource_uid(kind, candidate["name"]) == identifier:
                    return candidate
            raise APIError(404, f"no {kind} named {identifier!r}")
        return row

    def put(kind: str, document: Any, name: str | None = None) -> dict[str, Any]:
        document = normalize(document, kind)
        if name is not None:
            metadata = document.setdefault("metadata", {})
            if isinstance(metadata, dict) and metadata.get("name", name) != name:
                msg = f"the body names {kind} {metadata.get('name')!r}, the path {name!r}"
                raise APIError(400, msg)
        catalog.apply_documents([document], service.plugins, origin=f"{kind} request body")
        return resource_document(find(kind, document["metadata"]["name"]))

    for prefix, kind in KINDS.items():
        _resource_routes(app, prefix, kind, find, put, settings.max_body_size)

    mount_dashboard(app, service, gate)
    add_run_routes(app, service)

    return app


def _resource_routes(
    app: FastAPI,
    prefix: str,
    kind: str,
    find: Callable[[str, str], dict[str, Any]],
    put: Callable[..., dict[str, Any]],
    limit: int,
) -> None:
    """List, create, get, update and delete routes of one resource kind."""

    @app.get(f"/{prefix}/", summary=f"List {prefix}", name=f"list_{prefix}")
    def list_all() -> Response:
        return json_response([resource_document(r) for r in get_store().list_resources(kind)])

    async def changed() -> None:
        if kind == "trigger_rule":
            if app.state.service.run_triggers:
                await app.state.service.triggers.refresh()

    @app.post(f"/{prefix}/", summary=f"Create (or update) a {kind}", name=f"create_{kind}")
    async def create(request: Request) -> Response:
        document = await read_json(request, limit)
        stored = await asyncio.to_thread(put, kind, document)
        await changed()
        return json_response(stored, 201 if kind == "config" else 200)

    @app.get(f"/{prefix}/{{identifier}}", summary=f"Get a {kind}", name=f"get_{kind}")
    def get_one(identifier: str) -> Response:
        return json_response(resource_document(find(kind, identifier)))

    @app.put(f"/{prefix}/{{identifier}}", summary=f"Update a {kind}", name=f"update_{kind}")
    async def update(request: Request, identifier: str) -> Response:
        document = await read_json(request, limit)
        name = (await asyncio.to_thread(_existing_name, find, kind, identifier)) or identifier
        stored = await asyncio.to_thread(put, kind, document, name)
        await changed()
        return json_response(stored)

    @app.delete(f"/{prefix}/{{identifier}}", summary=f"Delete a {kind}", name=f"delete_{kind}")
    async def delete(identifier: str) -> Response:
        row = await asyncio.to_thread(find, kind, identifier)
        await asyncio.to_thread(get_store().delete_resources, [(kind, row["name"])])
        await changed()
        return json_response(resource_document(row))


def _existing_name(
    find: Callable[[str, str], dict[str, Any]], kind: str, identifier: str
) -> str | None:
    try:
        return str(find(kind, identifier)["name"])
    except APIError:
        return None


def _status(service: Service) -> dict[str, Any]:
    """Flowdapt's system status, from what the standard library can tell."""
    store = get_store()
    usage = shutil.disk_usage(store.path.parent if store.path.parent.exists() else "/")
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = 0
    cpu = time.process_time()
    executor = service.executor
    return {
        "version": __version__,
        "name": "flowstage",
        "system": {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
            "cpu_pct": round(cpu / max(time.monotonic() - _STARTED, 1e-9) * 100, 2),
            "memory": _rss(),
            "disk_pct": round(usage.used / usage.total * 100, 2) if usage.total else 0.0,
            "network_io_sent": 0,
            "network_io_recv": 0,
            "threads": threading.active_count(),
            "fds": fds,
            "pid": os.getpid(),
        },
        "os": {
            "name": platform.system(),
            "version": platform.version(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "python": sys.version.split()[0],
        "hostname": socket.gethostname(),
        "services": {
            "executor": {
                "status": "OK" if executor is not None and executor.started else "STOPPED",
                "name": executor.name if executor is not None else None,
            },
            "queue": {
                "status": "DRAINING" if service.draining else "OK",
                "pending": service.queue_depth,
                "running": len(service.active) - service.queue_depth,
                "max_concurrent_runs": service.settings.max_concurrent_runs,
            },
        },
        "database": str(store.path),
    }


_STARTED = time.monotonic()


def _rss() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0

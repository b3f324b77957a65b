"""The dashboard's run pages: the runs list, one run (graph, timeline, stages, log,
input, result), its Cancel, Retry and Run again buttons, and the live event stream."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from flowstage.core.errors import UserError
from flowstage.runner.background import cancel_run
from flowstage.runner.retry import plan_retry
from flowstage.service.dashboard.auth import PREFIX
from flowstage.service.dashboard.layout import layout
from flowstage.service.dashboard.queries import (
    RUN_SOURCES,
    RUN_STATES,
    RunFilters,
    display_state,
    load_run,
    run_page,
    workflow_names,
)
from flowstage.service.dashboard.render import Pages, segment
from flowstage.service.dashboard.timeline import timeline

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flowstage.service.dashboard.live import LiveHub
    from flowstage.service.service import Service


def _seq(value: str | None, name: str) -> int | None:
    """A paging parameter: a run's ``seq`` (ASCII digits, small enough for SQLite)."""
    if value is None or value == "":
        return None
    if re.fullmatch(r"[0-9]{1,18}", value) is None:
        raise HTTPException(400, f"{name} must be a run's seq (a whole number), got {value!r}")
    return int(value)


def add_run_routes(app: FastAPI, service: Service, pages: Pages, hub: LiveHub) -> None:
    """The run pages, their actions and ``/ui/events``."""

    @app.get(f"{PREFIX}/runs", include_in_schema=False)
    def runs(request: Request) -> Response:
        given = request.query_params
        filters = RunFilters(
            workflow=given.get("workflow", ""),
            state=given.get("state", ""),
            source=given.get("source", ""),
            since=given.get("since", ""),
            until=given.get("until", ""),
        )
        before, after = _seq(given.get("before"), "before"), _seq(given.get("after"), "after")
        page = run_page(filters, before=before, after=after, service=service)
        template = "runs_table.html" if pages.fragment(request) else "runs.html"
        return pages.render(
            request,
            template,
            page=page,
            filters=filters,
            states=RUN_STATES,
            sources=RUN_SOURCES,
            workflows=workflow_names() if template == "runs.html" else [],
        )

    @app.get(f"{PREFIX}/runs/{{run_id}}", include_in_schema=False)
    def run(request: Request, run_id: str) -> Response:
        try:
            view = load_run(service, run_id)
        except UserError as exc:
            return pages.render(request, "error.html", 400, message=str(exc))
        if view is None:
            return pages.render(request, "error.html", 404, message=f"no run {run_id!r}")
        stages = view.get("stages") or {}
        graph = layout(
            {name: entry.get("depends_on") or [] for name, entry in stages.items()},
            {name: display_state(entry) for name, entry in stages.items()},
        )
        template = "run_live.html" if pages.fragment(request) else "run.html"
        return pages.render(request, template, run=view, graph=graph, timeline=timeline(stages))

    @app.post(f"{PREFIX}/runs/{{run_id}}/cancel", include_in_schema=False)
    async def cancel(request: Request, run_id: str) -> Response:
        try:
            if await service.cancel(run_id) is None:
                await asyncio.to_thread(cancel_run, run_id)
        except UserError as exc:
            return pages.render(request, "error.html", 409, message=str(exc))
        return RedirectResponse(f"{PREFIX}/runs/{segment(run_id)}", status_code=303)

    @app.post(f"{PREFIX}/runs/{{run_id}}/again", include_in_schema=False)
    async def run_again(request: Request, run_id: str) -> Response:
        try:
            view = await asyncio.to_thread(load_run, service, run_id)
            if view is None:
                return pages.render(request, "error.html", 404, message=f"no run {run_id!r}")
            entry = service.submit(
                view["workflow"],
                view.get("input") or {},
                namespace=view.get("namespace") or "default",
                source="api",
            )
        except UserError as exc:
            return pages.render(request, "error.html", 409, message=str(exc))
        return RedirectResponse(f"{PREFIX}/runs/{entry.id}", status_code=303)

    @app.post(f"{PREFIX}/runs/{{run_id}}/retry", include_in_schema=False)
    async def retry(request: Request, run_id: str) -> Response:
        try:
            plan = await asyncio.to_thread(plan_retry, run_id)
            entry = service.retry(plan)
        except UserError as exc:
            return pages.render(request, "error.html", 409, message=str(exc))
        return RedirectResponse(f"{PREFIX}/runs/{entry.id}", status_code=303)

    @app.get(f"{PREFIX}/events", include_in_schema=False)
    async def events() -> Response:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(hub.stream(), media_type="text/event-stream", headers=headers)

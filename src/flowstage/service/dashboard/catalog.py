"""The dashboard's pages of what is applied and stored: workflows (definition, graph,
configs, triggers, recent runs, a form to start one), trigger rules (with their toggle)
and the object store's artifacts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import yaml
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flowstage.core.configs import merge_configs
from flowstage.core.errors import FlowstageError, UnknownNameError, UserError
from flowstage.service.dashboard.auth import PREFIX
from flowstage.service.dashboard.forms import read_form
from flowstage.service.dashboard.layout import layout
from flowstage.service.dashboard.queries import RunFilters, run_page
from flowstage.service.dashboard.startform import form_input, input_fields
from flowstage.state import fires
from flowstage.state import resources as catalog
from flowstage.state.store import get_store
from flowstage.storage.artifacts import list_artifacts

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flowstage.service.dashboard.render import Pages
    from flowstage.service.service import Service

#: runs shown on a workflow's page and in its sparkline
RECENT_RUNS = 30


def sparkline(values: list[float | None], width: int = 240, height: int = 40) -> str:
    """SVG polyline points for ``values`` (oldest first; None left out), scaled to fit."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return ""
    top = max(v for _, v in known) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - 2 - v / top * (height - 4):.1f}" for i, v in known)


def trigger_view(service: Service) -> list[dict[str, Any]]:
    """The applied trigger rules with their last and next fire (the service's own times
    while it runs them) and the runs they started lately."""
    rows = catalog.trigger_rows()
    live = service.triggers.status() if service.run_triggers else {}
    store = get_store()
    for row in rows:
        row.update({k: v for k, v in live.get(row["name"], {}).items() if v is not None})
        row["fires"] = fires.fires(store, row["name"], limit=10)
        row["workflow"] = (row.get("parameters") or {}).get("workflow")
    return rows


def artifact_rows() -> list[dict[str, Any]]:
    """Every artifact of every namespace: name, size, kind and metadata."""
    rows = [a.summary() | {"metadata": a.metadata} for a in list_artifacts("*")]
    rows.sort(key=lambda r: (r["namespace"], r["name"]))
    return rows


def add_catalog_routes(app: FastAPI, service: Service, pages: Pages) -> None:
    """The workflows, triggers and objects pages and their actions."""

    @app.get(f"{PREFIX}/workflows", include_in_schema=False)
    def workflows(request: Request) -> Response:
        rows = catalog.workflow_rows(service.plugins)
        return pages.render(request, "workflows.html", workflows=rows)

    def workflow_page(
        request: Request,
        name: str,
        values: dict[str, str] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        try:
            described = catalog.describe_workflow(name, service.plugins)
            workflow = catalog.find_workflow(name, service.plugins)
        except UnknownNameError as exc:
            return pages.render(request, "error.html", 404, message=str(exc))
        described.pop("status")
        try:
            fields = input_fields(workflow)
        except FlowstageError as exc:
            fields, error = [], error or str(exc)
        graph = layout({s.name: s.depends_on for s in workflow.spec.stages}, {})
        recent = run_page(RunFilters(workflow=name), size=RECENT_RUNS).rows
        durations = [r["duration"] if r["state"] == "finished" else None for r in recent]
        return pages.render(
            request,
            "workflow.html",
            status,
            name=name,
            definition=yaml.safe_dump(described, sort_keys=False, allow_unicode=True),
            configs=[c.name for c in catalog.matching_configs(workflow)],
            config=merge_configs(get_store().configs(), workflow),
            triggers=[t for t in trigger_view(service) if t["workflow"] == name],
            recent=recent,
            spark=sparkline(list(reversed(durations))),
            graph=graph,
            fields=fields,
            values=values or {},
            error=error,
        )

    @app.get(f"{PREFIX}/workflows/{{name}}", include_in_schema=False)
    def workflow(request: Request, name: str) -> Response:
        return workflow_page(request, name)

    @app.post(f"{PREFIX}/workflows/{{name}}/run", include_in_schema=False)
    async def start_run(request: Request, name: str) -> Response:
        values = await read_form(request, service.settings.max_body_size)
        try:
            definition = await asyncio.to_thread(catalog.find_workflow, name, service.plugins)
            run_input = await asyncio.to_thread(form_input, definition, values)
            entry = service.submit(name, run_input, source="api")
        except (UserError, FlowstageError) as exc:
            return await asyncio.to_thread(workflow_page, request, name, values, str(exc), 422)
        return RedirectResponse(f"{PREFIX}/runs/{entry.id}", status_code=303)

    @app.get(f"{PREFIX}/triggers", include_in_schema=False)
    def triggers(request: Request) -> Response:
        return pages.render(
            request, "triggers.html", rules=trigger_view(service), firing=service.run_triggers
        )

    @app.post(f"{PREFIX}/triggers/{{name}}/toggle", include_in_schema=False)
    async def toggle(request: Request, name: str) -> Response:
        row = await asyncio.to_thread(get_store().get_resource, "trigger_rule", name)
        if row is None:
            return pages.render(request, "error.html", 404, message=f"no trigger rule {name!r}")
        document = dict(row["document"])
        spec = dict(document.get("spec") or {})
        spec["enabled"] = not spec.get("enabled", True)
        document["spec"] = spec
        await asyncio.to_thread(
            catalog.apply_documents, [document], service.plugins, "dashboard toggle"
        )
        if service.run_triggers:
            await service.triggers.refresh()
        return RedirectResponse(f"{PREFIX}/triggers", status_code=303)

    @app.get(f"{PREFIX}/objects", include_in_schema=False)
    def objects(request: Request) -> Response:
        return pages.render(request, "objects.html", artifacts=artifact_rows())

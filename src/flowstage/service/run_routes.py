"""The API's run routes: start a run, list, get and delete runs, and flowstage's own
cancel and retry."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response

from flowstage.runner.retry import plan_retry
from flowstage.service.answers import APIError, json_response, read_json
from flowstage.service.records import resource_uid, run_id_of
from flowstage.state import resources as catalog
from flowstage.state import retention
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from fastapi import FastAPI

    from flowstage.service.service import Service

#: the most runs one listing returns
MAX_LISTED_RUNS = 1000


def add_run_routes(app: FastAPI, service: Service) -> None:
    """Add the run routes of ``service`` to ``app``."""
    settings = service.settings

    @app.post("/workflows/{identifier}/run", summary="Run a workflow")
    async def run_workflow(
        request: Request,
        identifier: str,
        wait: bool = True,
        namespace: str | None = None,
        cache: str = "use",
    ) -> Response:
        body = await read_json(request, settings.max_body_size)
        if body is not None and not isinstance(body, dict):
            raise APIError(422, f"the run input must be a JSON object, got {type(body).__name__}")
        name = await asyncio.to_thread(_workflow_name, identifier)
        entry = service.submit(
            name, body or {}, namespace=namespace or "default", source="api", cache=cache
        )
        if wait:
            await entry.done.wait()
        return json_response(entry.record())

    @app.get("/workflows/{identifier}/run", summary="List the runs of a workflow")
    def list_workflow_runs(identifier: str, limit: int = 10) -> Response:
        name = _workflow_name(identifier, strict=False)
        return json_response(service.list_runs(name, _run_limit(limit)))

    @app.get("/workflows/run/{identifier}", summary="Get a run")
    def get_workflow_run(identifier: str) -> Response:
        record = service.get_run(identifier)
        if record is None:
            raise APIError(404, f"no run {identifier!r}")
        return json_response(record)

    @app.delete("/workflows/run/{identifier}", summary="Delete an ended run")
    def delete_workflow_run(identifier: str) -> Response:
        record = service.get_run(identifier)
        if record is None:
            raise APIError(404, f"no run {identifier!r}")
        if record["state"] in ("pending", "running"):
            raise APIError(409, f"run {record['id']} is {record['state']}: cancel it first")
        retention.delete_run(get_store(), record["id"])
        return json_response(record)

    @app.get("/runs", summary="The run history (flowstage)")
    def list_runs(workflow: str | None = None, limit: int = 50) -> Response:
        return json_response(service.list_runs(workflow, _run_limit(limit)))

    @app.post("/runs/{identifier}/cancel", summary="Cancel a run (flowstage)")
    async def cancel_run(identifier: str) -> Response:
        record = await service.cancel(identifier)
        if record is None:
            found = await asyncio.to_thread(service.get_run, identifier)
            if found is None:
                raise APIError(404, f"no run {identifier!r}")
            raise APIError(409, f"run {found['id']} is {found['state']}: not running here")
        return json_response(record)

    @app.post("/runs/{identifier}/retry", summary="Retry a failed or cancelled run (flowstage)")
    async def retry_run(
        request: Request, identifier: str, wait: bool = True, cache: str = "use"
    ) -> Response:
        overrides = _retry_overrides(await read_json(request, settings.max_body_size))
        run_id = run_id_of(identifier)
        for entry in service.active:  # not in the store yet while it is young
            if entry.id == run_id:
                msg = f"run {run_id} is still {entry.run.state}: wait for it to end, or cancel it"
                raise APIError(409, msg)
        plan = await asyncio.to_thread(plan_retry, run_id)
        entry = service.retry(plan, **overrides, cache=cache)
        if wait:
            await entry.done.wait()
        return json_response(entry.record())

    def _workflow_name(identifier: str, strict: bool = True) -> str:
        store = get_store()
        if store.get_resource("workflow", identifier) is not None:
            return identifier
        for row in store.list_resources("workflow"):
            if resource_uid("workflow", row["name"]) == identifier:
                return str(row["name"])
        if strict:
            catalog.find_workflow(identifier, service.plugins)  # shipped, or UnknownNameError
        return identifier


def _retry_overrides(body: Any) -> dict[str, Any]:
    """What a retry's JSON body changes: ``input`` and ``config`` (objects) and
    ``executor`` (a name or ``{"name": ..., **options}``), each optional.

    :raises APIError: 422, naming the key that is wrong
    """
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise APIError(422, f"the retry body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - {"input", "config", "executor"})
    if unknown:
        expected = "expected input, config, executor"
        msg = f"unknown key(s) in the retry body: {', '.join(unknown)} ({expected})"
        raise APIError(422, msg)
    for key in ("input", "config"):
        if key in body and not isinstance(body[key], dict):
            raise APIError(422, f"'{key}' must be a JSON object, got {type(body[key]).__name__}")
    if "executor" in body and not isinstance(body["executor"], (str, dict)):
        found = type(body["executor"]).__name__
        raise APIError(422, f"'executor' must be a name or an object with 'name', got {found}")
    return {key: value for key, value in body.items() if value is not None}


def _run_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LISTED_RUNS:
        raise APIError(422, f"limit must be between 1 and {MAX_LISTED_RUNS}, got {limit}")
    return limit

"""Resources by name: workflows and configs applied to the store, and the workflows
plugins ship. Applied workflows come first when a name is looked up.

Applying is all or nothing: every resource of every file is parsed and every workflow
validated (targets import, the graph holds) before anything is written, and then all
of them are written in one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from flowstage.core.configs import applying, merge_configs
from flowstage.core.cron import parse_schedule
from flowstage.core.errors import UnknownNameError, UserError, WorkflowError
from flowstage.core.loading import (
    load_resources,
    parse_resource,
    read_documents,
    validate_workflow,
    workflow_label,
)
from flowstage.core.models import ConfigResource, TriggerRule, Workflow
from flowstage.core.settings import app_dir
from flowstage.state import fires
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from pydantic import BaseModel

    from flowstage.core.plugin_manager import FlowstagePlugins


def shipped_workflows(plugins: FlowstagePlugins) -> list[tuple[Workflow, str]]:
    """``(workflow, plugin)`` for every workflow file plugins ship (shape-checked only)."""

    found: list[tuple[Workflow, str]] = []
    for path, owner in plugins.registries.workflow_paths:
        try:
            resources = load_resources(path)
        except WorkflowError:
            continue
        found.extend((r, owner) for r in resources if isinstance(r, Workflow))
    return found


def _from_row(row: dict[str, Any]) -> Any:
    label = f"applied {row['kind']} {row['name']!r}"
    resource = parse_resource(row["document"], label)
    if isinstance(resource, Workflow):
        # targets resolve relative to the file it was applied from, as they did then
        resource._source = row["source"]
    return resource


def applied_workflow(name: str) -> Workflow | None:
    """The applied workflow called ``name``, if there is one."""

    row = get_store().get_resource("workflow", name)
    return _from_row(row) if row else None


def find_workflow(name: str, plugins: FlowstagePlugins) -> Any:
    """The workflow called ``name``: an applied one, else one a plugin ships.

    :raises UnknownNameError: nothing has that name (lists what there is)
    """
    applied = applied_workflow(name)
    if applied is not None:
        return applied
    shipped = shipped_workflows(plugins)
    for workflow, _owner in shipped:
        if workflow.name == name:
            return workflow

    known = sorted(
        {w.name for w, _ in shipped} | {r["name"] for r in get_store().list_resources("workflow")}
    )
    listed = ", ".join(known) if known else "none"
    msg = f"no workflow file or workflow named {name!r} (known workflows: {listed})"
    raise UnknownNameError(msg)


# -- reading resource files ---------------------------------------------------------------


def resource_files(path: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """The YAML files of ``path``: the file itself, or a folder's ``*.yaml``/``*.yml``.

    :raises UserError: the path does not exist, or the folder holds no YAML file
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.exists():
        raise UserError(f"{root}: no such file or folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in root.glob(pattern) if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        deeper = "" if recursive else " (use --recursive to look in sub-folders)"
        raise UserError(f"{root}: the folder holds no .yaml or .yml file{deeper}")
    return files


def read_resources(
    path: str | os.PathLike[str], recursive: bool = False
) -> list[tuple[BaseModel, dict[str, Any], str]]:
    """``(resource, document, label)`` for every resource in ``path``, shape-checked.

    :raises WorkflowError: listing every problem of every file
    """

    found: list[tuple[BaseModel, dict[str, Any], str]] = []
    problems: list[str] = []
    for file in resource_files(path, recursive):
        try:
            documents, _path = read_documents(file)
        except WorkflowError as exc:
            problems.extend(exc.problems)
            continue
        for index, document in enumerate(documents):
            label = str(file) if len(documents) == 1 else f"{file} (document {index + 1})"
            try:
                resource = parse_resource(
                    document, label, search_paths=(str(file.resolve().parent),)
                )
            except WorkflowError as exc:
                problems.extend(exc.problems)
                continue
            if isinstance(resource, Workflow):
                # absolute: the file's folder is where its relative targets import from
                resource._source = str(file.resolve())
            kind = resource.kind  # type: ignore[attr-defined]  # a Workflow, config or trigger rule
            found.append((resource, {**document, "kind": kind}, label))
    if problems:
        raise WorkflowError(problems, source=str(path))
    return found


def _check_unique(found: list[tuple[BaseModel, dict[str, Any], str]]) -> list[str]:
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for resource, _document, label in found:
        key = (resource.kind, resource.name)  # type: ignore[attr-defined]  # Workflow or ConfigResource
        if key in seen:
            problems.append(
                f"{label}: {key[0]} {key[1]!r} is also defined in {seen[key]}; names must be unique"
            )
        else:
            seen[key] = label
    return problems


def apply_path(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    plugins: FlowstagePlugins,
    recursive: bool = False,
) -> list[tuple[str, str, str]]:
    """Apply every resource in ``path`` (or in each of several paths, together);
    ``(kind, name, created|updated|unchanged)`` each.

    :raises WorkflowError: a resource is invalid (nothing was applied; names each one)
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    origin = ", ".join(os.fspath(p) for p in paths)
    found: list[tuple[BaseModel, dict[str, Any], str]] = []
    read_problems: list[str] = []
    for each in paths:
        try:
            found.extend(read_resources(each, recursive))
        except WorkflowError as exc:
            read_problems.extend(exc.problems)
        except UserError as exc:
            read_problems.append(str(exc))
    if read_problems:
        raise _nothing_applied(read_problems, origin)
    return _apply(found, plugins, origin)


def apply_documents(
    documents: list[dict[str, Any]], plugins: FlowstagePlugins, origin: str = "request"
) -> list[tuple[str, str, str]]:
    """Apply resource documents (parsed JSON or YAML), as :func:`apply_path` applies a
    file's: all of them or, if one is invalid, none.

    :param origin: how messages name where the documents came from
    :raises WorkflowError: a resource is invalid (names each one)
    """

    found: list[tuple[BaseModel, dict[str, Any], str]] = []
    problems: list[str] = []
    for index, document in enumerate(documents):
        label = origin if len(documents) == 1 else f"{origin} (document {index + 1})"
        try:
            resource = parse_resource(document, label)
        except WorkflowError as exc:
            problems.extend(exc.problems)
            continue
        kind = resource.kind  # type: ignore[attr-defined]  # a Workflow, config or trigger rule
        found.append((resource, {**document, "kind": kind}, label))
    if problems:
        raise _nothing_applied(problems, origin)
    return _apply(found, plugins, origin)


def _apply(
    found: list[tuple[BaseModel, dict[str, Any], str]], plugins: FlowstagePlugins, origin: str
) -> list[tuple[str, str, str]]:
    problems = _check_unique(found)
    for resource, _document, label in found:
        if isinstance(resource, Workflow):
            try:
                validate_workflow(
                    resource,
                    stage_types=plugins.registries.stage_types,
                    search_paths=(str(app_dir()),),
                )
            except WorkflowError as exc:
                # name the document and the workflow, not only the (resolved) file
                prefix = f"{workflow_label(resource)}: "
                where = f"{label}: workflow {resource.name!r}: "
                problems.extend(where + p.removeprefix(prefix) for p in exc.problems)
    if problems:
        raise _nothing_applied(problems, origin)
    items = [
        {
            "kind": r.kind,
            "name": r.name,
            "document": doc,
            "annotations": r.metadata.annotations,
            "source": r.source if isinstance(r, Workflow) else None,
        }
        for r, doc, _label in cast(
            "list[tuple[Workflow | ConfigResource | TriggerRule, Any, str]]", found
        )
    ]
    outcomes = get_store().put_resources(items)
    return [
        (item["kind"], item["name"], outcome) for item, outcome in zip(items, outcomes, strict=True)
    ]


def _nothing_applied(problems: list[str], path: str | os.PathLike[str]) -> WorkflowError:
    error = WorkflowError(problems, source=str(path))
    error.args = (f"{error}\nnothing was applied: fix the problems and apply {path} again",)
    return error


def delete_path(
    path: str | os.PathLike[str], recursive: bool = False
) -> list[tuple[str, str, bool]]:
    """Delete every resource named in ``path``; ``(kind, name, whether it existed)`` each."""

    keys = [(r.kind, r.name) for r, _doc, _label in read_resources(path, recursive)]  # type: ignore[attr-defined]
    return [
        (kind, name, found)
        for (kind, name), found in zip(keys, get_store().delete_resources(keys), strict=True)
    ]


def delete_resource(kind: str, name: str) -> None:
    """Delete one applied resource (its runs stay in the history).

    :raises UnknownNameError: no applied resource of that kind has that name
    """

    store = get_store()
    if not store.delete_resources([(kind, name)])[0]:
        raise UnknownNameError(_unknown(kind, name))


def _unknown(kind: str, name: str) -> str:
    known = [r["name"] for r in get_store().list_resources(kind)]
    listed = ", ".join(known) if known else "none"
    return f"no applied {kind} named {name!r} (applied {kind}s: {listed})"


# -- listing and describing -------------------------------------------------------------------


def _selector_text(config: ConfigResource) -> str:
    selector = config.spec.selector
    if selector is None:
        return "all workflows"
    if selector.type == "name":
        return f"name={selector.value}"
    return "annotation " + ",".join(f"{k}={v}" for k, v in dict(selector.value).items())  # type: ignore[arg-type]


def workflow_rows(plugins: FlowstagePlugins, name: str | None = None) -> list[dict[str, Any]]:
    """Applied workflows, then those plugins ship, as rows for ``get workflows``."""

    rows = []
    for row in get_store().list_resources("workflow"):
        if name is None or row["name"] == name:
            stages = row["document"].get("spec", {}).get("stages") or []
            rows.append(
                {
                    "name": row["name"],
                    "source": "applied",
                    "stages": len(stages),
                    "annotations": row["annotations"],
                    "version": row["version"],
                    "updated_at": row["updated_at"],
                    "file": row["source"],
                }
            )
    for workflow, owner in shipped_workflows(plugins):
        if name is None or workflow.name == name:
            rows.append(
                {
                    "name": workflow.name,
                    "source": f"plugin {getattr(owner, 'distribution', owner)}",
                    "stages": len(workflow.spec.stages),
                    "annotations": workflow.metadata.annotations,
                    "version": None,
                    "updated_at": None,
                    "file": workflow.source,
                }
            )
    if name is not None and not rows:
        raise UnknownNameError(
            _unknown("workflow", name).replace("applied workflows", "known workflows")
        )
    return rows


def config_rows(name: str | None = None) -> list[dict[str, Any]]:
    """Applied configs as rows for ``get configs``."""

    rows = []
    for row in get_store().list_resources("config"):
        if name is None or row["name"] == name:
            config = ConfigResource.model_validate(row["document"])
            rows.append(
                {
                    "name": row["name"],
                    "selector": _selector_text(config),
                    "data": config.spec.data,
                    "version": row["version"],
                    "updated_at": row["updated_at"],
                }
            )
    if name is not None and not rows:
        raise UnknownNameError(_unknown("config", name))
    return rows


def trigger_rows(name: str | None = None) -> list[dict[str, Any]]:
    """Applied trigger rules as rows for ``get triggers`` (stored; the service runs them)."""

    rows = []
    for row in get_store().list_resources("trigger_rule"):
        if name is None or row["name"] == name:
            rule = TriggerRule.model_validate(row["document"])
            last = fires.last_slot(get_store(), rule.name)
            rows.append(
                {
                    "name": row["name"],
                    "type": rule.spec.type,
                    "enabled": rule.spec.enabled,
                    "rule": rule.spec.rule,
                    "action": rule.spec.action.target,
                    "parameters": rule.spec.action.parameters,
                    "last_fire": last.isoformat() if last else None,
                    "next_fire": _next_fire(rule),
                    "version": row["version"],
                    "updated_at": row["updated_at"],
                }
            )
    if name is not None and not rows:
        raise UnknownNameError(_unknown("trigger_rule", name))
    return rows


def _next_fire(rule: TriggerRule) -> str | None:
    """When an enabled schedule fires next (None without croniter, the service extra)."""
    if rule.spec.type != "schedule" or not rule.spec.enabled:
        return None
    try:
        schedule = parse_schedule(list(rule.spec.rule), rule.spec.timezone)
    except (ImportError, ValueError):
        return None
    return schedule.next_after(datetime.now(timezone.utc)).isoformat()


def describe_workflow(name: str, plugins: FlowstagePlugins) -> dict[str, Any]:
    """The workflow as a resource document, with a ``status``: where it comes from, the
    configs that apply to it (in merge order) and the config data they give."""

    store = get_store()
    row = store.get_resource("workflow", name)
    if row is not None:
        workflow = _from_row(row)
        document = row["document"]
        status: dict[str, Any] = {
            "source": "applied",
            "file": row["source"],
            "version": row["version"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }
    else:
        for workflow, owner in shipped_workflows(plugins):
            if workflow.name == name:
                document = workflow.model_dump(mode="json", exclude_unset=True)
                status = {"source": f"plugin {owner}", "file": workflow.source}
                break
        else:
            raise UnknownNameError(
                _unknown("workflow", name).replace("applied workflows", "known workflows")
            )
    status["configs"] = [c.name for c in matching_configs(workflow)]
    status["config"] = merge_configs(get_store().configs(), workflow)
    runs, total = store.list_runs(limit=1, workflow=name)
    status["runs"] = total
    if runs:
        status["last_run"] = runs[0]
    return {**document, "status": status}


def describe_config(name: str, plugins: FlowstagePlugins) -> dict[str, Any]:
    """The config as a resource document, with the workflows it applies to."""

    row = get_store().get_resource("config", name)
    if row is None:
        raise UnknownNameError(_unknown("config", name))
    config = ConfigResource.model_validate(row["document"])
    selector = config.spec.selector
    workflows = [_from_row(r) for r in get_store().list_resources("workflow")]
    workflows += [w for w, _owner in shipped_workflows(plugins)]
    applies = sorted({w.name for w in workflows if selector is None or selector.matches(w)})
    status = {
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "applies_to": applies,
    }
    return {**row["document"], "status": status}


def matching_configs(workflow: Workflow) -> list[ConfigResource]:
    """The applied configs that apply to ``workflow``, in merge order."""
    return applying(get_store().configs(), workflow)

"""Reading resources from YAML files, YAML text or mappings, and validating workflows.

Every problem in a workflow is collected before anything runs and reported at once by a
:class:`~flowstage.core.errors.WorkflowError`, each naming the file, the stage, the key,
what was expected and what was found.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from flowstage.core.dag import StageGraph
from flowstage.core.errors import TargetError, WorkflowError
from flowstage.core.hints import did_you_mean
from flowstage.core.models import (
    ConfigResource,
    Metadata,
    Resources,
    Stage,
    TriggerRule,
    Workflow,
    WorkflowSpec,
)
from flowstage.core.plugin_manager import default_registries
from flowstage.core.targets import resolve_target, signature_of
from flowstage.core.yamlfiles import load_yaml_documents, read_text_file

if TYPE_CHECKING:
    from flowstage.core.registry import Registry
    from flowstage.core.targets import Signature

_KINDS: dict[str, type[BaseModel]] = {
    "workflow": Workflow,
    "config": ConfigResource,
    "trigger_rule": TriggerRule,
}


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and (
        text.endswith((".yaml", ".yml")) or os.path.exists(text) or ":" not in text
    )


def read_documents(source: str | os.PathLike[str]) -> tuple[list[Any], str | None]:
    """The YAML documents of a file path or of YAML text, and the file's path (if a file).

    :raises WorkflowError: the file is missing or is not valid YAML
    """
    text = os.fspath(source)
    path: str | None = None
    if isinstance(source, os.PathLike) or _looks_like_path(text):
        path = text
        text = read_text_file(Path(path), "a YAML file", WorkflowError)
    label = path or "<yaml text>"
    documents = [doc for doc in load_yaml_documents(text, label, WorkflowError) if doc is not None]
    if not documents:
        raise WorkflowError(f"{label}: the file holds no resource")
    return documents, path


def parse_resource(
    data: Any, label: str, default_kind: str | None = None, search_paths: tuple[str, ...] = ()
) -> BaseModel:
    """A :class:`Workflow`, :class:`ConfigResource` or :class:`TriggerRule` from one mapping.

    ``search_paths`` are where targets import from when the graph and targets are
    checked along with schema problems (the file's folder, for a file).

    :raises WorkflowError: listing every schema problem found
    """
    if not isinstance(data, Mapping):
        raise WorkflowError(
            f"{label}: expected a mapping with kind, metadata and spec, got {type(data).__name__}"
        )
    kind = data.get("kind", default_kind)
    if kind is None:
        raise WorkflowError(f"{label}: missing key 'kind' (expected one of: {', '.join(_KINDS)})")
    model = _KINDS.get(str(kind).lower())
    if model is None:
        hint = did_you_mean(str(kind).lower(), list(_KINDS))
        raise WorkflowError(
            f"{label}: unknown kind {kind!r}{hint} (expected one of: {', '.join(_KINDS)})"
        )
    data = {**data, "kind": str(kind).lower()}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = _describe_validation(exc, data, label)
    if model is Workflow:
        problems.extend(_graph_problems_of_raw(data, label, search_paths))
    raise WorkflowError(problems, source=label)


def _graph_problems_of_raw(
    data: Mapping[str, Any], label: str, search_paths: tuple[str, ...]
) -> list[str]:
    """Graph and target problems of the stages that parse, when others do not:
    every problem is reported at once, not only the schema ones."""
    spec = data.get("spec")
    raw_stages = spec.get("stages") if isinstance(spec, Mapping) else None
    if not isinstance(raw_stages, list):
        return []
    stages = []
    unparsed = set()
    for raw in raw_stages:
        try:
            stages.append(Stage.model_validate(raw))
        except ValidationError:
            if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
                unparsed.add(raw["name"])
    try:
        return stage_problems(
            stages, label, default_registries().stage_types, search_paths, frozenset(unparsed)
        )
    except Exception:  # noqa: BLE001 - the schema problems already tell the user what to fix
        return []


_parsed_files: dict[tuple[str, int, int], list[BaseModel]] = {}


def load_resources(source: str | os.PathLike[str]) -> list[BaseModel]:
    """Every resource in a (multi-document) YAML file or text, validated for shape only.

    A file is parsed once while it is unchanged (same size and modification time).
    """
    text = os.fspath(source)
    key = None
    if isinstance(source, os.PathLike) or _looks_like_path(text):
        try:
            stat = os.stat(text)
            key = (os.path.realpath(text), stat.st_mtime_ns, stat.st_size)
        except OSError:
            pass
    if key is not None and key in _parsed_files:
        return list(_parsed_files[key])
    resources = _parse_resources(source)
    if key is not None:
        if len(_parsed_files) > 64:
            _parsed_files.clear()
        _parsed_files[key] = resources
    return list(resources)


def _parse_resources(source: str | os.PathLike[str]) -> list[BaseModel]:
    documents, path = read_documents(source)
    label = path or "<yaml text>"
    # targets import from the file's folder, as they do once the file validates
    folder = (str(Path(path).resolve().parent),) if path is not None else ()
    problems: list[str] = []
    resources: list[BaseModel] = []
    for index, document in enumerate(documents):
        where = label if len(documents) == 1 else f"{label} (document {index + 1})"
        try:
            resource = parse_resource(document, where, search_paths=folder)
        except WorkflowError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(resource, Workflow) and path is not None:
            resource._source = str(Path(path).resolve())
            resource._label = path
        resources.append(resource)
    if problems:
        raise WorkflowError(problems, source=label)
    return resources


def load_workflow(
    source: Any, *, stage_types: Registry[Any] | None = None, search_paths: tuple[str, ...] = ()
) -> Workflow:
    """The validated workflow from a path, YAML text, a mapping or a :class:`Workflow`.

    Checks everything that does not depend on the run input: keys, values, stage names,
    dependencies, cycles, stage types and their settings, and that targets import.

    :raises WorkflowError: listing every problem found
    """
    workflow = parse_workflow(source)
    validate_workflow(workflow, stage_types=stage_types, search_paths=search_paths)
    return workflow


def parse_workflow(source: Any) -> Workflow:
    """The workflow of a path, YAML text, a mapping or a :class:`Workflow`, its schema
    checked (the rest is :func:`validate_workflow`'s).

    :raises WorkflowError: listing every schema problem found
    """
    if isinstance(source, Workflow):
        workflow = source
    elif isinstance(source, Mapping):
        metadata = source.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        label = f"workflow {name!r}" if name else "workflow"
        workflow = parse_resource(source, label, default_kind="workflow")  # type: ignore[assignment]
    elif isinstance(source, (str, os.PathLike)):
        workflows = [r for r in load_resources(source) if isinstance(r, Workflow)]
        label = os.fspath(source) if _looks_like_path(os.fspath(source)) else "<yaml text>"
        if not workflows:
            raise WorkflowError(f"{label}: holds no resource of kind 'workflow'")
        if len(workflows) > 1:
            names = ", ".join(w.name for w in workflows)
            raise WorkflowError(
                f"{label}: holds {len(workflows)} workflows ({names}); expected one"
            )
        workflow = workflows[0]
    else:
        raise WorkflowError(
            f"expected a workflow file path, YAML text or a mapping, got {type(source).__name__}"
        )
    return workflow


def workflow_label(workflow: Workflow) -> str:
    """How messages name a workflow: its file as the user gave it, else its name."""
    return workflow.label


def search_paths_for(workflow: Workflow, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Folders targets import from: the workflow file's folder, then ``extra``."""
    paths = [str(Path(workflow.source).parent)] if workflow.source else []
    return (*paths, *extra)


def validate_workflow(
    workflow: Workflow,
    *,
    stage_types: Registry[Any] | None = None,
    search_paths: tuple[str, ...] = (),
    reused: Callable[[Workflow, StageGraph], Collection[str]] | None = None,
) -> StageGraph:
    """Check a parsed workflow as a whole (see :func:`load_workflow`); its stage graph.

    :param reused: called with the workflow and its stage graph once the graph is sound
        (names, dependencies, no cycle); it names the stages this run will not call (a
        retry reuses their outputs), whose stage types and targets are then not checked
    """
    if stage_types is None:
        stage_types = default_registries().stage_types
    label = workflow_label(workflow)
    stages = workflow.spec.stages
    problems, graph = graph_problems(stages, label)
    skip = reused(workflow, graph) if reused is not None and graph is not None else ()
    problems += target_problems(
        stages, label, stage_types, search_paths_for(workflow, search_paths), skip
    )
    if problems or graph is None:
        raise WorkflowError(problems, source=label)
    return graph


def stage_problems(
    stages: list[Stage],
    label: str,
    stage_types: Registry[Any],
    paths: tuple[str, ...],
    unparsed: frozenset[str] = frozenset(),
) -> list[str]:
    """Names, dependencies, cycles, stage types and targets of ``stages``.

    ``unparsed`` names stages of the file that failed their schema check: they exist,
    so depending on them is no problem (their own problems are reported already).
    """
    problems, _ = graph_problems(stages, label, unparsed)
    return problems + target_problems(stages, label, stage_types, paths)


def graph_problems(
    stages: list[Stage], label: str, unparsed: frozenset[str] = frozenset()
) -> tuple[list[str], StageGraph | None]:
    """Duplicate names, unknown dependencies and cycles of ``stages`` (``unparsed``: as
    for :func:`stage_problems`); and their graph when it is sound (None: problems, or
    stages depend on unparsed ones)."""
    problems: list[str] = []
    names = [s.name for s in stages]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(
                f"{label}: stage {name!r}: duplicate stage name (each stage needs a unique name)"
            )
        seen.add(name)
    for stage in stages:
        for dep in stage.depends_on:
            if dep not in seen and dep not in unparsed:
                hint = did_you_mean(dep, [n for n in [*names, *unparsed] if n != stage.name])
                problems.append(
                    f"{label}: stage {stage.name!r}: key 'depends_on': unknown stage {dep!r}{hint}"
                )
            elif dep == stage.name:
                problems.append(
                    f"{label}: stage {stage.name!r}: key 'depends_on': "
                    "a stage cannot depend on itself"
                )
    if problems or (unparsed and any(dep in unparsed for s in stages for dep in s.depends_on)):
        return problems, None
    graph = StageGraph({s.name: s.depends_on for s in stages})
    try:
        graph.topological_order()  # kept for the run; finds that there is a cycle
    except ValueError:
        cycle = graph.find_cycle() or []
        problems.append(f"{label}: the stages form a cycle: {' -> '.join(cycle)}")
        return problems, None
    return problems, graph


def target_problems(
    stages: list[Stage],
    label: str,
    stage_types: Registry[Any],
    paths: tuple[str, ...],
    skip: Collection[str] = (),
) -> list[str]:
    """Unknown stage types, targets that do not import, and what each stage type finds
    wrong with its stage (:meth:`~flowstage.core.stage_types.StageType.check`); the
    stages named in ``skip`` are left out."""
    problems: list[str] = []
    for stage in stages:
        if stage.name in skip:
            continue
        where = f"{label}: stage {stage.name!r}"
        stage_type = stage_types.get_or_none(stage.type)
        if stage_type is None:
            hint = did_you_mean(stage.type, stage_types.names())
            problems.append(f"{where}: key 'type': {stage_types.unknown(stage.type, hint)}")
        try:
            fn = resolve_target(stage.target, paths)
        except TargetError as exc:
            problems.append(f"{where}: key 'target': {stage.target_name!r} cannot be used: {exc}")
            continue
        if stage_type is not None:
            problems.extend(f"{where}: {p}" for p in stage_type.check(stage, signature_of(fn)))
    return problems


def check_input(
    workflow: Workflow,
    run_input: Mapping[str, Any],
    *,
    stage_types: Registry[Any] | None = None,
    search_paths: tuple[str, ...] = (),
    skip: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """Check the run input against the root stages; return their coerced keyword arguments.

    :param skip: stages this run will not call (a retry's reused stages): not checked,
        and left out of the result
    :raises WorkflowError: required parameters missing, ``map_on`` keys missing, or
        values that cannot be converted to the parameters' annotations
    """
    if stage_types is None:
        stage_types = default_registries().stage_types
    label = workflow_label(workflow)
    paths = search_paths_for(workflow, search_paths)
    problems: list[str] = []
    bound: dict[str, dict[str, Any]] = {}
    for stage in workflow.spec.stages:
        if stage.name in skip:
            continue
        signature = signature_of(resolve_target(stage.target, paths))
        stage_problems, kwargs = stage_types.get(stage.type).bind_input(stage, signature, run_input)
        problems.extend(f"{label}: stage {stage.name!r}: {p}" for p in stage_problems)
        bound[stage.name] = kwargs
    if problems:
        raise WorkflowError(problems, source=label)
    return bound


def root_signatures(
    workflow: Workflow, search_paths: tuple[str, ...] = ()
) -> Iterator[tuple[Stage, Signature]]:
    """The root stages (no ``depends_on``: the ones the run input feeds) with their
    targets' signatures, in workflow order; a stage whose target does not import is left
    out (validation reports it)."""
    paths = search_paths_for(workflow, search_paths)
    for stage in workflow.spec.stages:
        if stage.depends_on:
            continue
        try:
            yield stage, signature_of(resolve_target(stage.target, paths))
        except TargetError:
            continue


def input_annotations(
    workflow: Workflow, *, search_paths: tuple[str, ...] = ()
) -> dict[str, list[Any]]:
    """The annotations of the root stages' parameters that the run input feeds, by input
    key (a ``map_on`` key: a list of the first parameter's annotation).

    Lets a caller holding input as text (the CLI) give each key the value its
    parameters want; a stage whose target does not import is left out.
    """
    found: dict[str, list[Any]] = {}
    for stage, signature in root_signatures(workflow, search_paths):
        for key, annotation in signature.annotations.items():
            found.setdefault(key, []).append(annotation)
        first = signature.positional[:1]
        if stage.map_on and first and first[0] in signature.annotations:
            item = signature.annotations[first[0]]
            found.setdefault(stage.map_on, []).append(types.GenericAlias(list, (item,)))
    return found


# -- turning pydantic errors into sentences ------------------------------------------

_FIELDS_BY_KEY: dict[str, type[BaseModel]] = {
    "metadata": Metadata,
    "spec": WorkflowSpec,
    "resources": Resources,
}


def _describe_validation(exc: ValidationError, data: Mapping[str, Any], label: str) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for error in exc.errors():
        loc = list(error["loc"])
        where, key_path, scope = _locate(loc, data, label)
        key_path = _strip_union_tags(key_path)
        message = _explain(error, key_path, scope)
        if (where, message) in seen:
            continue
        seen.add((where, message))
        problems.append(f"{where}: {message}")
    return problems


def _locate(
    loc: list[Any], data: Mapping[str, Any], label: str
) -> tuple[str, list[str], list[str]]:
    """Where an error is (``file: stage 'x'``), the key path inside it, and its valid keys."""
    if len(loc) >= 3 and loc[0] == "spec" and loc[1] == "stages" and isinstance(loc[2], int):
        index = loc[2]
        try:
            raw = data["spec"]["stages"][index]
            name = raw.get("name") if isinstance(raw, Mapping) else None
        except (KeyError, IndexError, TypeError):
            name = None
        stage = f"stage {name!r}" if name else f"stage #{index + 1}"
        return f"{label}: {stage}", [str(p) for p in loc[3:]], stage_keys()
    kind = str(data.get("kind", "workflow"))
    root = _KINDS.get(kind, Workflow)
    return label, [str(p) for p in loc], sorted(root.model_fields)


def _strip_union_tags(path: list[str]) -> list[str]:
    # pydantic names union members in the location ("target.str", "target.callable")
    out: list[str] = []
    for part in path:
        if out and out[-1] == "target":
            break
        if part in ("str", "dict[str,any]"):
            continue
        out.append(part)
    return out


def _explain(error: Mapping[str, Any], path: list[str], scope: list[str]) -> str:
    kind = error["type"]
    found = error.get("input")
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        parent = path[:-1]
        valid = _valid_keys(parent) if parent else scope
        hint = did_you_mean(key, valid) if valid else ""
        where = f" under '{'.'.join(parent)}'" if parent else ""
        listed = f" (expected one of: {', '.join(valid)})" if valid and not hint else ""
        return f"unknown key {key!r}{where}{hint}{listed}"
    dotted = ".".join(path) or "stage"
    if kind == "missing":
        return f"missing required key {dotted!r}"
    if path and path[0] == "target":
        return f"key 'target': expected an import string or a callable, got {found!r}"
    msg = str(error.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if not path:
        return msg
    got = "" if repr(found) in msg else f" (got {found!r})"
    return f"key {dotted!r}: {msg}{got}"


def _valid_keys(parent: list[str]) -> list[str]:
    model = _FIELDS_BY_KEY.get(parent[-1])
    if model is not None:
        return sorted(model.model_fields)
    return []


def stage_keys() -> list[str]:
    """Keys a stage accepts (for did-you-mean on typos such as ``depend_on``)."""
    return sorted(Stage.model_fields)


def names_a_workflow(source: Any) -> bool:
    """Whether ``source`` is a bare name (``train``) to look up, rather than a file path
    or YAML text; built on the same test that :func:`read_documents` uses for paths."""
    return (
        isinstance(source, str)
        and _looks_like_path(source)
        and "/" not in source
        and not source.endswith((".yaml", ".yml"))
        and not os.path.exists(source)
    )

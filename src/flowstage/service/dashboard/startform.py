"""The workflow page's form to start a run: one field per parameter of the root stages,
its values read exactly as ``flowstage run --KEY VALUE`` reads them, then checked
against the stages' signatures as every run's input is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowstage.core.appdir import app_dir
from flowstage.core.inputs import parse_input_args
from flowstage.core.loading import check_input, input_annotations, root_signatures

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowstage.core.models import Workflow


@dataclass(frozen=True)
class Field:
    """One input of the form."""

    name: str
    #: the annotation as written (``int``, ``list[str]``), empty when there is none
    kind: str
    required: bool
    #: a ``map_on`` key: several values, one per item
    many: bool
    stage: str


def _kind(annotation: Any) -> str:
    if annotation is None:
        return ""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def input_fields(workflow: Workflow) -> list[Field]:
    """The fields of the root stages' parameters, in stage then parameter order (a
    stage whose function does not import gives none)."""
    fields: dict[str, Field] = {}
    for stage, signature in root_signatures(workflow, (str(app_dir()),)):
        names = list(signature.positional)
        names += sorted(signature.keyword - set(names))
        if stage.map_on:
            first = names.pop(0) if names else None
            item = signature.annotations.get(first) if first else None
            fields.setdefault(
                stage.map_on,
                Field(stage.map_on, f"list of {_kind(item) or 'values'}", True, True, stage.name),
            )
        for name in names:
            annotation = signature.annotations.get(name)
            fields.setdefault(
                name,
                Field(name, _kind(annotation), name in signature.required, False, stage.name),
            )
    return list(fields.values())


def form_input(workflow: Workflow, form: Mapping[str, str]) -> dict[str, Any]:
    """The run input a posted form gives ``workflow``: each filled field as ``--NAME
    VALUE`` (a ``map_on`` field: one ``--NAME[] ITEM`` per comma-separated item), parsed
    as the CLI parses it and checked against the root stages.

    :raises UserError: a value does not parse or does not fit its parameter (the
        message names the stage and parameter)
    """
    args: list[str] = []
    for field in input_fields(workflow):
        text = form.get(field.name, "")
        if not text.strip():
            continue
        if field.many:
            for item in text.split(","):
                args.append(f"--{field.name}[]={item.strip()}")
        else:
            args.append(f"--{field.name}={text}")
    home = (str(app_dir()),)
    run_input = parse_input_args(args, input_annotations(workflow, search_paths=home))
    check_input(workflow, run_input, search_paths=home)
    return run_input

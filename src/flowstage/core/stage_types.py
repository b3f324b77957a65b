"""Stage types: how a stage turns its inputs into calls of its target.

A stage type checks its stages before the run (:meth:`StageType.check`,
:meth:`StageType.bind_input`) and drives them during the run (:meth:`StageType.execute`)
through a :class:`~flowstage.core.scheduler.StageExecution`. ``simple`` and
``parameterized`` are built in; plugins add more through
``flowstage_register_stage_types``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from flowstage.core.errors import StageError
from flowstage.core.mapping import MapStream
from flowstage.core.targets import Signature, coerce

if TYPE_CHECKING:
    from flowstage.core.models import Stage
    from flowstage.core.scheduler import StageExecution


class StageType:
    """Base class: a simple stage that calls its target once."""

    name: ClassVar[str] = "simple"

    def check(self, stage: Stage, signature: Signature) -> list[str]:
        """Problems with ``stage`` found before any input is known."""
        if stage.depends_on and not signature.accepts_positional(len(stage.depends_on)):
            return [
                _too_few_positional(signature, len(stage.depends_on), "its dependencies' outputs")
            ]
        return []

    def bind_input(
        self, stage: Stage, signature: Signature, run_input: Mapping[str, Any]
    ) -> tuple[list[str], dict[str, Any]]:
        """``(problems, keyword arguments)`` a root stage gets from the run input."""
        if stage.depends_on:
            return [], {}
        return bind_keywords(signature, run_input)

    def consumes_stream(self, stage: Stage) -> bool:
        """Whether :meth:`execute` takes its first dependency's output while that map
        still runs (a :class:`~flowstage.core.mapping.MapStream`), not the finished list."""
        return False

    async def execute(self, execution: StageExecution) -> Any:
        """Run the stage; return its output (a value or an executor handle)."""
        if execution.is_root:
            return await execution.call_output(**execution.bound_input)
        return await execution.call_output(*execution.dependencies)


class SimpleStage(StageType):
    name = "simple"


class ParameterizedStage(StageType):
    """Maps the target over the first dependency's output, or over ``input[map_on]``."""

    name = "parameterized"

    def check(self, stage: Stage, signature: Signature) -> list[str]:
        if stage.map_on is None and not stage.depends_on:
            return [
                "a parameterized stage without dependencies needs 'map_on' naming an input list "
                "to map over"
            ]
        wanted = len(stage.depends_on) + (1 if stage.map_on else 0)
        if not signature.accepts_positional(wanted):
            what = (
                "the item and its dependencies' outputs"
                if stage.map_on
                else "the item and the other dependencies' outputs"
            )
            return [_too_few_positional(signature, wanted, what)]
        return []

    def consumes_stream(self, stage: Stage) -> bool:
        # Subclasses that run the stage their own way get whole outputs, as by default.
        return stage.map_on is None and type(self).execute is ParameterizedStage.execute

    def bind_input(
        self, stage: Stage, signature: Signature, run_input: Mapping[str, Any]
    ) -> tuple[list[str], dict[str, Any]]:
        if stage.map_on is None:
            return [], {}
        problems: list[str] = []
        if stage.map_on not in run_input:
            keys = ", ".join(sorted(run_input)) or "none"
            problems.append(
                f"key 'map_on': the input has no key {stage.map_on!r} to map over "
                f"(input keys: {keys})"
            )
        if stage.depends_on:
            return problems, {}
        first = signature.positional[:1]
        found, kwargs = bind_keywords(
            signature, {k: v for k, v in run_input.items() if k != stage.map_on}, skip=first
        )
        return problems + found, kwargs

    async def execute(self, execution: StageExecution) -> Any:
        stage = execution.stage
        if stage.map_on is not None:
            source = f"input key {stage.map_on!r}"
            items = execution.input[stage.map_on]
            extra = execution.dependencies
        else:
            source = f"the output of stage {stage.depends_on[0]!r}"
            items = execution.dependencies[0]
            extra = execution.dependencies[1:]
            if isinstance(items, MapStream):  # the upstream map is still running
                return await execution.map_output(items, *extra, **execution.bound_input)
            items = await execution.fetch(items)
        return await execution.map_output(
            as_items(items, stage.name, source), *extra, **execution.bound_input
        )


def as_items(value: Any, stage: str, source: str) -> Sequence[Any]:
    """The items a map goes over: a sequence, or any iterable made a list; a dict gives its
    keys, as iterating it in Python (and in Flowdapt) does.

    :raises StageError: ``value`` is not iterable (naming both ends of the map)
    """
    if isinstance(value, (list, tuple, range)):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        msg = (
            f"stage {stage!r} maps over {source}, which is a {type(value).__name__}, "
            "not a list, tuple, dict or other iterable"
        )
        raise StageError(msg, stage=stage)
    return list(value)


def bind_keywords(
    signature: Signature, run_input: Mapping[str, Any], skip: Iterable[str] = ()
) -> tuple[list[str], dict[str, Any]]:
    """The input entries a function takes by name, coerced to its annotations."""
    skipped = set(skip)
    kwargs = signature.filter_kwargs(run_input, skip=skipped)
    problems: list[str] = []
    missing = [p for p in signature.required if p not in kwargs and p not in skipped]
    positional_only = [p for p in missing if p not in signature.keyword]
    if positional_only:
        names = ", ".join(repr(p) for p in positional_only)
        problems.append(
            f"key 'target': parameter {names} is positional-only, so the run input cannot be "
            "passed to it by name; wrap the function in one with named parameters"
        )
        missing = [p for p in missing if p in signature.keyword]
    if missing:
        keys = ", ".join(sorted(run_input)) or "none"
        names = ", ".join(repr(m) for m in missing)
        close = [
            k
            for m in missing
            for k in difflib.get_close_matches(m, list(run_input), n=1, cutoff=0.6)
        ]
        hint = (
            f"; did you mean to pass {close[0]!r} as {missing[0]!r}?"
            if len(missing) == 1 and close
            else ""
        )
        problems.append(
            f"the input is missing {names}, required by the target's parameters "
            f"(input keys: {keys}){hint}"
        )
    for key, value in list(kwargs.items()):
        annotation = signature.annotations.get(key)
        if annotation is None:
            continue
        try:
            kwargs[key] = coerce(value, annotation)
        except ValueError as exc:
            problems.append(f"input {key!r}: {exc}")
    return problems, kwargs


def _too_few_positional(signature: Signature, wanted: int, what: str) -> str:
    have = len(signature.positional)
    return (
        f"key 'target': the function takes {have} positional parameter{'s' * (have != 1)} "
        f"but is given {wanted} ({what}); add parameters or *args"
    )

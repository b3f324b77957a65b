"""The pydantic models of flowstage's resources: the one definition of a workflow.

Files, the Python API and the CLI all parse into these models. They check the shape of
each field; :mod:`flowstage.core.loading` adds the checks that need the whole workflow
(dependencies, cycles, targets, stage types) and turns errors into readable messages.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from flowstage.core.units import parse_duration, parse_memory

NAME_PATTERN = r"^[a-zA-Z0-9_.-]+$"

#: Stage-type settings that may be written at the top of a stage or under ``options:``.
OPTION_KEYS = ("map_on", "allow_partial_failure")


#: The top-level ``version`` Flowdapt writes on its resources (the only one it has).
ApiVersion = Literal["v1alpha1"] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, defer_build=True)


class Metadata(_Strict):
    """``metadata``: the resource's name and free-form annotations and labels."""

    name: str = Field(pattern=NAME_PATTERN)
    annotations: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    uid: str | None = None
    # set by a Flowdapt server on every resource it exports; kept as they come
    created_at: str | None = None
    updated_at: str | None = None

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> Any:
        # YAML reads an unquoted ISO time as a datetime
        return value.isoformat() if hasattr(value, "isoformat") else value


class Resources(BaseModel):
    """What one call of a stage needs: ``cpus``, ``gpus``, ``memory`` and custom labels.

    Frozen: the stages that set none share one instance (a workflow of many stages
    parses faster).
    """

    model_config = ConfigDict(extra="allow", defer_build=True, frozen=True)

    # custom labels: any other key, each a non-negative number
    __pydantic_extra__: dict[str, Annotated[float, Field(ge=0)]] = Field(init=False)

    cpus: float | None = Field(default=None, ge=0)
    gpus: float | None = Field(default=None, ge=0)
    memory: int | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int | None:
        return None if value is None else parse_memory(value)

    def requested(self) -> dict[str, float]:
        """Every resource that is set, by name (``cpus``, ``gpus``, ``memory``, custom)."""
        out: dict[str, float] = {}
        for key in ("cpus", "gpus", "memory"):
            value = getattr(self, key)
            if value is not None:
                out[key] = float(value)
        for key, value in (self.model_extra or {}).items():
            out[key] = float(value)
        return out


#: what a stage's cache key may be made of (``cache: {key: [...]}``)
CacheKeyPart = Literal["inputs", "code", "config"]
CACHE_KEY_PARTS: tuple[CacheKeyPart, ...] = ("inputs", "code", "config")


class CacheOptions(_Strict):
    """``cache:`` of a stage: reuse its stored result when the key is the same.

    ``cache: true`` is ``cache: {}``: every part in the key, entries never expire.
    """

    #: seconds an entry stays valid (``30m``, ``2h``, ``7d``); None: for ever
    expire: float | None = None
    #: what enters the key: the call's ``inputs``, the target's ``code``, the run ``config``
    key: list[CacheKeyPart] = Field(default_factory=lambda: list(CACHE_KEY_PARTS))

    @field_validator("expire", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("key", mode="before")
    @classmethod
    def _one_part(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Stage(_Strict):
    """One entry of ``spec.stages``."""

    name: str = Field(min_length=1)
    target: str | Callable[..., Any]
    type: str = "simple"
    depends_on: list[str] = Field(default_factory=list)
    map_on: str | None = None
    allow_partial_failure: bool = False
    retries: int = Field(default=0, ge=0)
    retry_delay: float = 1.0
    timeout: float | None = None
    resources: Resources = Resources()  # frozen: shared, never copied
    description: str | None = None
    version: str | None = None
    priority: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    #: reuse stored results (``cache: true`` or options); None: never cached
    cache: CacheOptions | None = None

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @model_validator(mode="before")
    @classmethod
    def _lift_options(cls, data: Any) -> Any:
        """``options: {map_on: x}`` means ``map_on: x`` (Flowdapt reads them there), and
        Flowdapt's ``required_resources`` means ``resources``."""
        if isinstance(data, dict) and "required_resources" in data:
            data = dict(data)
            required = data.pop("required_resources")
            if "resources" in data and data["resources"] != required:
                msg = (
                    "'required_resources' (Flowdapt's name) and 'resources' are both given; "
                    "keep one"
                )
                raise ValueError(msg)
            data["resources"] = required
        if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
            return data
        data = dict(data)
        options = dict(data["options"])
        for key in OPTION_KEYS:
            if key not in options:
                continue
            value = options.pop(key)
            if key in data and data[key] != value:
                msg = (
                    f"{key!r} is given both at the top of the stage ({data[key]!r}) "
                    f"and under options ({value!r})"
                )
                raise ValueError(msg)
            data[key] = value
        data["options"] = options
        return data

    @field_validator("target")
    @classmethod
    def _target(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("expected an import string such as 'package.module.function'")
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _depends_on(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("retry_delay", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @property
    def target_name(self) -> str:
        """The target as text: the import string, or the callable's qualified name."""
        if isinstance(self.target, str):
            return self.target
        module = getattr(self.target, "__module__", None) or "?"
        return f"{module}.{getattr(self.target, '__qualname__', repr(self.target))}"


class WorkflowSpec(_Strict):
    stages: list[Stage] = Field(min_length=1)


class Workflow(_Strict):
    """A ``kind: workflow`` resource."""

    kind: Literal["workflow"] = "workflow"
    version: ApiVersion = None
    metadata: Metadata
    spec: WorkflowSpec
    _source: str | None = PrivateAttr(default=None)
    _label: str | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def source(self) -> str | None:
        """The file this workflow was read from, if any."""
        return self._source

    @property
    def label(self) -> str:
        """How messages name this workflow: its file as given, else its name."""
        return self._label or self._source or f"workflow {self.name!r}"

    def stage(self, name: str) -> Stage:
        for stage in self.spec.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


class ConfigSelector(_Strict):
    """Which workflows a config applies to: by annotations or by workflow name."""

    type: Literal["annotation", "name"] = "name"
    value: dict[str, Any] | str
    # Flowdapt writes the selected kind (only workflows are selected); accepted, unused
    kind: Literal["workflow"] | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _value_shape(self) -> ConfigSelector:
        if self.type == "annotation" and not isinstance(self.value, dict):
            raise ValueError(
                "an annotation selector needs a mapping value such as {group: nowcast}"
            )
        if self.type == "name" and not isinstance(self.value, str):
            raise ValueError("a name selector needs a workflow name as its value")
        return self

    def matches(self, workflow: Workflow) -> bool:
        if self.type == "name":
            return self.value == workflow.metadata.name
        annotations = workflow.metadata.annotations
        wanted = self.value if isinstance(self.value, dict) else {}
        return all(annotations.get(k) == v for k, v in wanted.items())


class ConfigSpec(_Strict):
    selector: ConfigSelector | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ConfigResource(_Strict):
    """A ``kind: config`` resource: data merged into the run config of matching workflows."""

    kind: Literal["config"] = "config"
    version: ApiVersion = None
    metadata: Metadata
    spec: ConfigSpec = Field(default_factory=ConfigSpec)

    @property
    def name(self) -> str:
        return self.metadata.name


class TriggerAction(_Strict):
    """``spec.action``: what a trigger rule does when it fires (Flowdapt's
    ``run_workflow`` with ``parameters: {workflow: NAME, input: {...}}``)."""

    target: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class TriggerRuleSpec(_Strict):
    """``spec`` of a trigger rule: a cron schedule or a condition on events."""

    type: Literal["schedule", "condition"]
    rule: list[str] | dict[str, Any]
    action: TriggerAction
    #: a disabled rule is stored and listed but never fires
    enabled: bool = True
    #: schedules: the IANA time zone the cron expressions are read in (default UTC)
    timezone: str | None = None
    #: schedules: the slots missed while no service ran: fire none, the latest, or all
    catch_up: Literal["none", "latest", "all"] = "latest"
    #: schedules: with ``catch_up: all``, fire at most this many (the latest) missed slots
    catch_up_limit: int = Field(default=10, ge=1)
    #: schedules: a slot due while the rule's previous run still goes: run it anyway,
    #: skip it, or queue it until that run ends
    overlap: Literal["allow", "skip", "queue"] = "skip"

    @field_validator("rule", mode="before")
    @classmethod
    def _one_schedule(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _rule_shape(self) -> TriggerRuleSpec:
        if self.type == "schedule":
            if not isinstance(self.rule, list) or not self.rule:
                msg = "a schedule rule needs a list of cron expressions such as ['*/5 * * * *']"
                raise ValueError(msg)
            for expression in self.rule:
                if len(expression.split()) not in (5, 6):
                    msg = f"{expression!r} is not a cron expression (5 fields: m h dom mon dow)"
                    raise ValueError(msg)
        elif not isinstance(self.rule, dict):
            msg = "a condition rule needs a mapping such as {eq: [{var: type}, EVENT]}"
            raise ValueError(msg)
        if self.timezone is not None:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                msg = f"unknown time zone {self.timezone!r} (an IANA name such as Europe/Paris)"
                raise ValueError(msg) from None
        return self


class TriggerRule(_Strict):
    """A ``kind: trigger_rule`` resource (Flowdapt's schedules and event triggers).

    Parsed, validated and stored; running them belongs to the service.
    """

    kind: Literal["trigger_rule"] = "trigger_rule"
    version: ApiVersion = None
    metadata: Metadata
    spec: TriggerRuleSpec

    @property
    def name(self) -> str:
        return self.metadata.name

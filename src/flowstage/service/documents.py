"""Resource documents from a request body: what Flowdapt's clients send, made into what
flowstage's models accept, and trigger rules checked until the core models them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowstage.core.errors import WorkflowError
from flowstage.core.models import NAME_PATTERN

#: keys the server sets on ``metadata``; a client may send them back
_SERVER_METADATA = ("uid", "created_at", "updated_at")


def _without_none(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


def normalize(document: Any, kind: str) -> dict[str, Any]:
    """``document`` with the fields Flowdapt's SDK fills in with nulls and defaults removed
    (``metadata.uid``, ``created_at``, a selector's ``kind: null``, a stage's
    ``priority: null``); the data itself is left as sent.

    :raises WorkflowError: the body is not a mapping, or is of another kind
    """
    if not isinstance(document, dict):
        msg = f"expected a JSON object ({kind} resource), got {type(document).__name__}"
        raise WorkflowError(msg)
    found = document.get("kind") or kind
    if found != kind:
        raise WorkflowError(f"expected a resource of kind {kind!r}, got kind {found!r}")
    out = {k: v for k, v in document.items() if k != "version"}
    out["kind"] = kind
    metadata = out.get("metadata")
    if isinstance(metadata, dict):
        out["metadata"] = _without_none(
            {k: v for k, v in metadata.items() if k not in _SERVER_METADATA}
        )
    spec = out.get("spec")
    if isinstance(spec, dict):
        spec = dict(spec)
        if isinstance(spec.get("selector"), dict):
            spec["selector"] = _without_none(spec["selector"])
        if isinstance(spec.get("stages"), list):
            spec["stages"] = [
                _without_none(s) if isinstance(s, dict) else s for s in spec["stages"]
            ]
        out["spec"] = spec
    return out


# TODO(merge with the trigger_rule branch): validate with core.models' trigger rule model
# and store through state.resources once it lands; until then the document is checked
# here and stored as sent.
class _TriggerMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NAME_PATTERN)


class _TriggerAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1)
    parameters: dict[str, Any] | None = None


class _TriggerSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["schedule", "condition"] = "condition"
    rule: dict[str, Any] | list[str]
    action: _TriggerAction


class _TriggerRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["trigger_rule"] = "trigger_rule"
    metadata: _TriggerMetadata
    spec: _TriggerSpec


def check_trigger_rule(document: dict[str, Any]) -> str:
    """The name of a valid trigger rule document.

    :raises WorkflowError: listing every problem
    """
    try:
        rule = _TriggerRule.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"trigger_rule: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        raise WorkflowError(problems) from None
    return rule.metadata.name

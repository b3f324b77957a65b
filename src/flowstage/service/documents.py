"""Resource documents from a request body: what Flowdapt's clients send, made into what
flowstage's models accept."""

from __future__ import annotations

from typing import Any

from flowstage.core.errors import WorkflowError

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

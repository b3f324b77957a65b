"""Run records and resource documents in the shape Flowdapt's clients read.

Flowdapt names a run by a UUID ``uid``; flowstage's run ids are 12 hex digits, which
become the last group of a UUID whose other groups are zero, so the two map both ways.
Times are naive UTC ISO strings: flowctl subtracts them from ``datetime.utcnow()``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstage.core.runs import Run

_ZERO_PREFIX = "00000000-0000-0000-0000-"
#: Flowdapt resources carry a uid: a stable one from the kind and name
_UID_NAMESPACE = uuid.UUID("6f1c3c0e-3b0a-4d57-9a55-0e5f3f1f0c11")
_EXCEPTION_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Cancelled)): (.*)"
)


def run_uid(run_id: str) -> str:
    """The UUID a client sees for the run ``run_id``."""
    if re.fullmatch(r"[0-9a-f]{12}", run_id):
        return _ZERO_PREFIX + run_id
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(_UID_NAMESPACE, f"run/{run_id}"))


def run_id_of(identifier: str) -> str:
    """The run id a client's identifier (a uid, or the id itself) names."""
    return identifier.removeprefix(_ZERO_PREFIX)


def resource_uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, f"{kind}/{name}"))


def wire_time(value: str | datetime | None) -> str | None:
    """A stored time as naive UTC ISO 8601."""
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat()


def failure(error: str | None, traceback: str | None = None) -> list[str]:
    """``[ExceptionName, message]`` of a failed run, as Flowdapt reports it."""
    for text in (traceback or "", error or ""):
        for line in reversed(text.strip().splitlines()):
            found = _EXCEPTION_LINE.match(line.strip())
            if found:
                return [found.group(1).rsplit(".", 1)[-1], found.group(2)]
    return ["RunFailed", error or "the run failed"]


def _result(state: str, result: Any, error: str | None, traceback: str | None) -> Any:
    if state == "finished":
        return result
    if state in ("failed", "cancelled"):
        return failure(error, traceback)
    return None


def run_record(run: Run, *, created_at: datetime | None = None) -> dict[str, Any]:
    """The record of a run this process holds."""
    traceback = getattr(run.exception, "traceback", None)
    started = run.started_at or created_at
    return {
        "uid": run_uid(run.id),
        "name": run.id,
        "id": run.id,
        "workflow": run.workflow,
        "state": run.state,
        "result": _result(run.state, run.result, run.error, traceback),
        "source": run.source,
        "started_at": wire_time(started) or wire_time(datetime.now(timezone.utc)),
        "finished_at": wire_time(run.finished_at),
        "error": run.error,
        "retry_of": run.retry_of,
    }


def row_record(row: dict[str, Any], result: Any = None) -> dict[str, Any]:
    """The record of a run from its row in the store (``result`` already loaded)."""
    state = row["state"]
    return {
        "uid": run_uid(row["id"]),
        "name": row["id"],
        "id": row["id"],
        "workflow": row["workflow"],
        "state": state,
        "result": _result(state, result, row.get("error"), row.get("traceback")),
        "source": row.get("source"),
        "started_at": wire_time(row.get("started_at") or row.get("created_at")),
        "finished_at": wire_time(row.get("finished_at")),
        "error": row.get("error"),
        "retry_of": row.get("retry_of"),
    }


def resource_document(row: dict[str, Any]) -> dict[str, Any]:
    """A stored resource as Flowdapt returns it: ``metadata`` with uid and times."""
    document = dict(row["document"])
    metadata = dict(document.get("metadata") or {})
    metadata.update(
        uid=resource_uid(row["kind"], row["name"]),
        name=row["name"],
        created_at=wire_time(row.get("created_at")),
        updated_at=wire_time(row.get("updated_at")),
    )
    metadata.setdefault("annotations", {})
    document["metadata"] = metadata
    document.setdefault("kind", row["kind"])
    return document

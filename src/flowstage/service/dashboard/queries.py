"""What the dashboard's pages read from the store: pages of runs and one run in full.

The runs list pages by ``seq`` (keyset: ``seq < ?`` newest first, never ``OFFSET``) and
counts nothing, so a page costs the same with ten runs or a hundred thousand. Each
filter has an index (schema version 4).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flowstage.core.errors import UserError
from flowstage.core.runs import REUSED_NOTE
from flowstage.state.logs import read_tail
from flowstage.state.rows import parse_time, stages_json
from flowstage.state.store import get_store

if TYPE_CHECKING:
    from flowstage.service.service import Service

#: the run states and sources the filters offer
RUN_STATES = ("pending", "running", "finished", "failed", "cancelled")
RUN_SOURCES = ("cli", "api", "trigger", "background")
#: runs on one page
PAGE_SIZE = 50
#: characters of a result or input shown before it is cut
PREVIEW_CHARS = 20_000
#: bytes of a run's log shown (its end)
LOG_TAIL_BYTES = 64 * 1024

_LIST_COLUMNS = ("seq", "id", "workflow", "state", "source", "created_at", "started_at",
                 "finished_at")  # fmt: skip


@dataclass
class RunFilters:
    """The runs page's filters, as given in its query string ("" or None: any)."""

    workflow: str = ""
    state: str = ""
    source: str = ""
    since: str = ""
    until: str = ""
    #: what was wrong with a filter (shown above the table; the filter is left out)
    errors: list[str] = field(default_factory=list)

    def window(self) -> tuple[list[str], list[Any]]:
        """SQL conditions on ``created_at`` (the time filters) and their parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for name, operator in (("since", ">="), ("until", "<")):
            text = getattr(self, name).strip()
            if not text:
                continue
            try:
                moment = parse_moment(text)
            except ValueError as exc:
                self.errors.append(f"{name}: {exc}")
                continue
            clauses.append(f"created_at {operator} ?")
            params.append(moment.isoformat())
        return clauses, params

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions on workflow, state and source, and their parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("workflow", "state", "source"):
            value = getattr(self, column).strip()
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        return clauses, params

    def query(self) -> dict[str, str]:
        """The non-empty filters, for links that keep them."""
        keys = ("workflow", "state", "source", "since", "until")
        return {k: getattr(self, k) for k in keys if getattr(self, k)}

    def link(self, **paging: int | None) -> str:
        """The query string of this page of the list with these filters (``?...``)."""
        given = self.query() | {k: str(v) for k, v in paging.items() if v is not None}
        return f"?{urlencode(given)}"

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether a run held in memory passes the workflow, state and source filters."""
        return all(
            not getattr(self, k).strip() or row.get(k) == getattr(self, k).strip()
            for k in ("workflow", "state", "source")
        )


def parse_moment(text: str) -> datetime:
    """A date (``2026-12-04``) or a date and time (ISO 8601; no zone means UTC), in UTC.

    :raises ValueError: neither (the message says what is expected)
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            msg = f"{text!r} is not a date or time (expected e.g. 2026-12-04 or 2026-12-04T15:30)"
            raise ValueError(msg) from None
        moment = datetime(day.year, day.month, day.day)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass
class RunPage:
    """One page of runs, newest first, and the seqs its paging links go from."""

    rows: list[dict[str, Any]]
    #: older runs exist: the next page has ``before`` this seq
    older: int | None
    #: newer runs exist: the previous page has ``after`` this seq
    newer: int | None


def run_page(
    filters: RunFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
    service: Service | None = None,
) -> RunPage:
    """The runs passing ``filters``: the newest ``size`` with ``seq < before`` (or, with
    ``after``, the oldest ``size`` newer than it, shown newest first). The first page also
    shows the service's runs not yet in the store."""
    store = get_store()
    if not store.path.exists():
        return RunPage(_unstored(service, filters, set()), None, None)
    clauses, params = filters.where()
    source = "runs"
    window, bounds = filters.window()
    if window and not clauses:
        # the time filters alone: walk the (seq, created_at) index newest first, which
        # stops at a page of matches and reads no row that does not match
        source = "runs INDEXED BY runs_by_created"
    clauses += window
    params += bounds
    if after is not None:
        clauses.append("seq > ?")
        params.append(after)
        order = "ASC"
    else:
        if before is not None:
            clauses.append("seq < ?")
            params.append(before)
        order = "DESC"
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    found = store.query(
        f"SELECT {', '.join(_LIST_COLUMNS)} FROM {source}{where} ORDER BY seq {order} LIMIT ?",
        (*params, size + 1),
    )
    more = len(found) > size
    rows = [_summary(dict(zip(_LIST_COLUMNS, r, strict=True))) for r in found[:size]]
    if after is not None:
        rows.reverse()
        older = rows[-1]["seq"] if rows else None
        newer = rows[0]["seq"] if rows and more else None
    else:
        older = rows[-1]["seq"] if rows and more else None
        newer = rows[0]["seq"] if rows and before is not None else None
    if before is None and after is None:
        rows = _unstored(service, filters, {r["id"] for r in rows}) + rows
    return RunPage(rows, older, newer)


def _unstored(service: Service | None, filters: RunFilters, seen: set[str]) -> list[dict[str, Any]]:
    """The service's runs whose row is not written yet (they show on the first page)."""
    if service is None:
        return []
    rows = []
    for entry in reversed(service.active):
        run = entry.run
        row = {
            "seq": None,
            "id": run.id,
            "workflow": run.workflow,
            "state": run.state,
            "source": run.source,
            "created_at": entry.created_at.isoformat(),
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": None,
        }
        if run.id not in seen and filters.matches(row) and not filters.since + filters.until:
            rows.append(_summary(row))
    return rows


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    row["duration"] = duration(row.get("started_at"), row.get("finished_at"))
    return row


def duration(start: str | None, end: str | None) -> float | None:
    """Seconds from ``start`` to ``end`` (to now while it goes on); None before a start."""
    begun = parse_time(start)
    if begun is None:
        return None
    ended = parse_time(end) or datetime.now(timezone.utc)
    return max((ended - begun).total_seconds(), 0.0)


def workflow_names() -> list[str]:
    """The workflows runs were recorded for (the filter's choices; from the index)."""
    store = get_store()
    if not store.path.exists():
        return []
    rows = store.query(
        "WITH RECURSIVE names(name) AS ("
        " SELECT min(workflow) FROM runs"
        " UNION ALL SELECT (SELECT min(workflow) FROM runs WHERE workflow > name)"
        " FROM names WHERE name IS NOT NULL"
        ") SELECT name FROM names WHERE name IS NOT NULL LIMIT 500"
    )
    return [r[0] for r in rows]


# -- one run ----------------------------------------------------------------------------


def load_run(service: Service | None, identifier: str) -> dict[str, Any] | None:
    """One run with everything its page shows; the service's copy of a run in flight
    (fresher than its row). None: no such run.

    :raises UserError: ``identifier`` is a prefix of several run ids
    """
    row = get_store().find_run(identifier)
    entry = None
    if service is not None:
        wanted = row["id"] if row is not None else identifier
        entry = next((e for e in service.active if e.id == wanted), None)
    if row is None and entry is None:
        return None
    view: dict[str, Any] = dict(row) if row is not None else {"id": entry.id}  # type: ignore[union-attr]
    if entry is not None:
        run = entry.run
        view.update(
            workflow=run.workflow,
            state=run.state,
            source=run.source,
            executor=run.executor,
            namespace=run.namespace,
            input=run.input,
            created_at=entry.created_at.isoformat(),
            started_at=run.started_at.isoformat() if run.started_at else None,
            finished_at=None,
            stages=json.loads(stages_json(run)),
        )
    view["stage_list"] = [stage_view(name, stage) for name, stage in view["stages"].items()]
    for stage in view["stage_list"]:
        failing = failing_item(stage, view.get("traceback"))
        if failing is not None:
            stage["failed_items"].append(failing)
    view["active"] = view.get("state") in ("pending", "running")
    view["in_service"] = entry is not None
    view["duration"] = duration(view.get("started_at"), view.get("finished_at"))
    view["input_text"] = preview(view.get("input") or {})
    view["result_text"] = _result_text(view) if row is not None and entry is None else None
    view["log_text"] = log_tail(view["id"]) if view.get("log_path") else None
    return view


def display_state(entry: Mapping[str, Any]) -> str:
    """A stage's state as the pages colour it: the recorded state, and ``cached`` for a
    stage a retry reused whole (recorded ``finished``, note ``reused from run ID``). A
    stage that ran some of its items (a note such as ``3 of 10 item(s) taken from the
    cache`` or ``4 item(s) reused from run ID``) stays ``finished``."""
    state = str(entry.get("state") or "pending")
    note = str(entry.get("note") or "")
    return "cached" if state == "finished" and note.startswith(REUSED_NOTE) else state


def stage_view(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One stage of a run as its detail section shows it."""
    total = entry.get("items_total")
    return {
        "name": name,
        "state": display_state(entry),
        "attempts": entry.get("attempts", 0),
        "started_at": entry.get("started_at"),
        "duration": duration(entry.get("started_at"), entry.get("finished_at")),
        "item_count": f"{entry.get('items_done', 0)}/{total}" if total is not None else None,
        "failed_items": list(entry.get("failed_items") or []),
        "error": entry.get("error"),
        "note": entry.get("note"),
        "depends_on": list(entry.get("depends_on") or []),
    }


def failing_item(stage: dict[str, Any], traceback: str | None) -> dict[str, Any] | None:
    """The map item whose failure failed ``stage``, with the run's traceback (a map that
    does not allow partial failure stops at its first failed item, and the run keeps that
    item's traceback); None when the stage did not fail on an item."""
    if stage["state"] != "failed" or not stage["error"]:
        return None
    found = re.match(
        rf"stage {re.escape(repr(stage['name']))} failed on item (\d+)", stage["error"]
    )
    if found is None:
        return None
    return {
        "index": int(found.group(1)),
        "error": traceback or stage["error"],
        "attempts": stage["attempts"],
    }


def _result_text(row: dict[str, Any]) -> str | None:
    kind = row.get("result_kind")
    if kind is None:
        return None
    try:
        return preview(get_store().load_result(row))
    except UserError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a result that no longer unpickles is shown as such
        return f"<the result could not be loaded: {type(exc).__name__}: {exc}>"


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """``value`` as indented JSON (``repr`` for the rest), cut at ``limit`` characters:
    a run's input and result, and the pages' ``to_json`` filter (configs, metadata)."""
    try:
        text = json.dumps(value, indent=2, default=repr, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}\n… ({len(text) - limit} more characters not shown)"
    return text


def log_tail(run_id: str, limit: int = LOG_TAIL_BYTES) -> str | None:
    """The last ``limit`` bytes of run ``run_id``'s log (None: no log, it is gone, or
    it is not a file in the logs directory)."""
    found = read_tail(run_id, limit)
    if found is None:
        return None
    data, size = found
    text = data.decode("utf-8", "replace")
    return f"… (first {size - limit} bytes not shown)\n{text}" if size > limit else text

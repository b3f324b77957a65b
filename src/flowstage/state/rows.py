"""Run rows as the CLI and the API show them, and runs as the store writes them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flowstage.core.runs import ACTIVE_STATES
from flowstage.core.settings import app_dir

if TYPE_CHECKING:
    from flowstage.core.runs import Run


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def describe_run(row: dict[str, Any]) -> dict[str, Any]:
    """A run row as ``inspect run`` shows it: every stage with state, duration, attempts,
    map items, failed items and error; the run's error with traceback; its result."""

    def seconds(start: str | None, end: str | None) -> float | None:
        begun, ended = parse_time(start), parse_time(end)
        return round((ended - begun).total_seconds(), 3) if begun and ended else None

    stages = {}
    for name, entry in (row.get("stages") or {}).items():
        stage: dict[str, Any] = {
            "state": entry.get("state"),
            "attempts": entry.get("attempts", 0),
            "started_at": entry.get("started_at"),
            "finished_at": entry.get("finished_at"),
            "duration": seconds(entry.get("started_at"), entry.get("finished_at")),
        }
        if entry.get("items_total") is not None:
            stage["items"] = f"{entry.get('items_done', 0)}/{entry['items_total']}"
        if entry.get("failed_items"):
            stage["failed_items"] = entry["failed_items"]
        if entry.get("error"):
            stage["error"] = entry["error"]
        if entry.get("note"):
            stage["note"] = entry["note"]
        stages[name] = stage
    out: dict[str, Any] = {
        key: row.get(key) for key in ("id", "workflow", "state", "source", "executor", "namespace")
    }
    out.update(
        {
            "input": row.get("input") or {},
            "created_at": row.get("created_at"),
            "started_at": row.get("started_at"),
            "finished_at": row.get("finished_at"),
            "duration": seconds(row.get("started_at"), row.get("finished_at")),
            "stages": stages,
        }
    )
    if row.get("retry_of"):
        out["retry_of"] = row["retry_of"]
    if row.get("error"):
        out["error"] = row["error"]
    if row.get("traceback"):
        out["traceback"] = row["traceback"]
    kind = row.get("result_kind")
    if kind == "json":
        out["result"] = json.loads(row["result"])
    elif kind == "file":
        out["result_file"] = str(app_dir() / row["result"])
    elif kind == "missing":
        out["result"] = f"<{row['result']}>"
    if row.get("log_path"):
        out["log"] = row["log_path"]
    if row.get("state") in ACTIVE_STATES:
        out["process"] = {
            "host": row.get("host"),
            "pid": row.get("pid"),
            "heartbeat_at": (
                datetime.fromtimestamp(row["heartbeat_at"], timezone.utc).isoformat()
                if row.get("heartbeat_at")
                else None
            ),
        }
    return out


def stages_json(run: Run) -> str:
    """The stages of ``run`` (state, times, attempts, map items and batch timings,
    failures) as JSON."""
    out: dict[str, Any] = {}
    # a retry marks its reused stages at one instant: each time is formatted once
    times: dict[datetime, str] = {}

    def iso(moment: datetime) -> str:
        text = times.get(moment)
        if text is None:
            text = times[moment] = moment.isoformat()
        return text

    for name, record in list(run.stages.items()):
        entry: dict[str, Any] = {"state": record.state, "attempts": record.attempts}
        if record.started_at is not None:
            entry["started_at"] = iso(record.started_at)
        if record.finished_at is not None:
            entry["finished_at"] = iso(record.finished_at)
        if record.items_total is not None:
            entry["items_total"] = record.items_total
            entry["items_done"] = record.items_done
        if record.failed_items:
            entry["failed_items"] = list(record.failed_items)
        if record.error:
            entry["error"] = record.error
        if record.depends_on:
            entry["depends_on"] = list(record.depends_on)
        if record.note:
            entry["note"] = record.note
        if record.batches:
            entry["batches"] = [
                [round(offset, 4), round(seconds, 4), first, count]
                for offset, seconds, first, count in record.batches
            ]
            if record.batches_left_out:
                entry["batches_left_out"] = record.batches_left_out
        out[name] = entry
    # made here of strings, numbers, lists and dicts: no cycle to look for; compact, as
    # a long run's stages make most of its row
    return json.dumps(out, default=repr, check_circular=False, separators=(",", ":"))

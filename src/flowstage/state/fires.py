"""The slots schedule rules fired: each ``(rule, slot)`` is claimed once in the store, so a
slot never fires twice, whether the service restarts or two services share an app dir."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstage.state.database import Database


def slot_key(slot: datetime) -> str:
    """``slot`` as stored: UTC ISO 8601 to the second (sorts as time does)."""
    return slot.astimezone(timezone.utc).isoformat(timespec="seconds")


def claim_slot(store: Database, rule: str, slot: datetime, outcome: str) -> bool:
    """Record that ``rule`` fires ``slot``; False if it was claimed before (do not fire).

    :param outcome: ``fired``, ``caught_up``, ``skipped`` or ``queued``
    """
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    claimed = store.write_one(
        "INSERT OR IGNORE INTO trigger_fires (rule, slot, fired_at, outcome) VALUES (?, ?, ?, ?)",
        (rule, slot_key(slot), now, outcome),
    )
    return claimed > 0


def set_outcome(
    store: Database, rule: str, slot: datetime, outcome: str, run_id: str | None
) -> None:
    """What came of a claimed slot: the run it started, or why it started none."""
    store.write_one(
        "UPDATE trigger_fires SET outcome = ?, run_id = ? WHERE rule = ? AND slot = ?",
        (outcome, run_id, rule, slot_key(slot)),
    )


def last_slot(store: Database, rule: str) -> datetime | None:
    """The latest slot ``rule`` claimed, None if it never fired."""
    if not store.path.exists():
        return None
    rows = store.query("SELECT max(slot) FROM trigger_fires WHERE rule = ?", (rule,))
    return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None


def fires(store: Database, rule: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The recorded slots (of ``rule``), newest first."""
    if not store.path.exists():
        return []
    where, params = ("WHERE rule = ?", (rule,)) if rule is not None else ("", ())
    rows = store.query(
        "SELECT rule, slot, fired_at, outcome, run_id FROM trigger_fires "
        f"{where} ORDER BY slot DESC LIMIT ?",
        (*params, limit),
    )
    keys = ("rule", "slot", "fired_at", "outcome", "run_id")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def forget_rule(store: Database, rule: str) -> None:
    """Drop the fired slots of a deleted rule."""
    store.write_one("DELETE FROM trigger_fires WHERE rule = ?", (rule,))

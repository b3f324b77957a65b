"""Progress of a running workflow: a live table on a terminal, plain lines when piped."""

from __future__ import annotations

import sys
import threading
from typing import IO, Any

from flowstage.core.runs import DONE_STAGE_STATES, Run, StageRecord

_SYMBOL = {
    "pending": "·",
    "running": "▶",
    "finished": "✔",
    "cached": "↺",
    "failed": "✘",
    "cancelled": "−",
}


def _items(record: StageRecord) -> str:
    if record.items_total is None:
        return ""
    failed = f", {len(record.failed_items)} failed" if record.failed_items else ""
    more = "+" if record.items_growing else ""
    return f"{record.items_done}/{record.items_total}{more} items{failed}"


def _duration(record: StageRecord) -> str:
    return f"{record.duration:.2f}s" if record.duration is not None else ""


class ProgressDisplay:
    """Watches a run record from a thread and shows its stages on ``stream``."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.live = self.stream.isatty()
        self.run: Run | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: dict[str, str] = {}

    def attach(self, run: Run) -> None:
        """Start showing ``run`` (called once the run record exists)."""
        self.run = run
        self._thread = threading.Thread(target=self._loop, daemon=True, name="flowstage-progress")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        if self.live:
            self._loop_live()
        else:
            while not self._stop.wait(self.interval):
                self._print_changes()
            self._print_changes()

    def _print_changes(self) -> None:
        assert self.run is not None
        for record in list(self.run.stages.values()):
            if (
                record.state in (*DONE_STAGE_STATES, "failed", "cancelled")
                and self._reported.get(record.name) != record.state
            ):
                self._reported[record.name] = record.state
                detail = ", ".join(x for x in (_items(record), _duration(record)) if x)
                print(
                    f"stage {record.name} {record.state}" + (f" ({detail})" if detail else ""),
                    file=self.stream,
                    flush=True,
                )

    def _loop_live(self) -> None:
        # lazy: rich is slow to import; only printed output needs it
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream)
        with Live(self._table(), console=console, refresh_per_second=10, transient=False) as live:
            while not self._stop.wait(self.interval):
                live.update(self._table())
            live.update(self._table())

    def _table(self) -> Any:
        # lazy: rich is slow to import; only printed output needs it
        from rich.table import Table

        assert self.run is not None
        stages = list(self.run.stages.values())
        done = sum(1 for s in stages if s.state in DONE_STAGE_STATES)
        running = sum(1 for s in stages if s.state == "running")
        table = Table(
            title=f"{self.run.workflow}: {done}/{len(stages)} done, {running} running",
            title_justify="left",
            box=None,
        )
        table.add_column("")
        table.add_column("stage")
        table.add_column("state")
        table.add_column("items")
        table.add_column("time", justify="right")
        for record in stages:
            table.add_row(
                _SYMBOL.get(record.state, "?"),
                record.name,
                record.state,
                _items(record),
                _duration(record),
            )
        return table

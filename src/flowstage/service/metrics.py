"""Prometheus metrics of one service: runs by state, run and stage durations, queue
depth, trigger lag (each service has a registry of its own, so tests can start several)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from flowstage.core.runs import Run

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class ServiceMetrics:
    """The collectors; the service updates them as runs move."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "flowstage_runs", "Runs that ended, by state", ["state"], registry=self.registry
        )
        self.run_seconds = Histogram(
            "flowstage_run_duration_seconds",
            "Run durations, by workflow",
            ["workflow"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "flowstage_stage_duration_seconds",
            "Stage durations, by workflow and stage",
            ["workflow", "stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.pending = Gauge(
            "flowstage_queue_depth", "Runs waiting for a slot", registry=self.registry
        )
        self.running = Gauge("flowstage_runs_running", "Runs executing", registry=self.registry)
        self.trigger_lag = Histogram(
            "flowstage_trigger_lag_seconds",
            "From a schedule's slot to its run's submission",
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def ended(self, run: Run) -> None:
        self.runs.labels(run.state).inc()
        if run.duration is not None:
            self.run_seconds.labels(run.workflow).observe(run.duration)
        for stage in run.stages.values():
            if stage.duration is not None:
                self.stage_seconds.labels(run.workflow, stage.name).observe(stage.duration)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)

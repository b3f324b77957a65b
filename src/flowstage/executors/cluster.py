"""What the Dask and Ray executors share: how they batch and pipeline, the options only a
cluster of their own takes, importing their engine, and checking before a run that every
stage's resources fit some worker (or node) of the cluster."""

from __future__ import annotations

import abc
import importlib
import time
from typing import TYPE_CHECKING, Any

from flowstage.core.errors import ExecutorError
from flowstage.core.executor import Executor

if TYPE_CHECKING:
    from flowstage.core.models import Resources, Workflow
    from flowstage.executors.common import ClusterOptions


def show_amount(name: str, value: float) -> str:
    """``name=value`` for messages; memory in decimal units (``memory=8.59GB``)."""
    if name in ("memory", "object_store_memory"):
        for unit in ("B", "KB", "MB", "GB", "TB"):
            if value < 1000 or unit == "TB":
                return f"{name}={value:.3g}{unit}" if unit != "B" else f"{name}={value:g}B"
            value /= 1000
    return f"{name}={value:g}"


class ClusterExecutor(Executor):
    """Base of the executors that run calls as tasks of a cluster engine."""

    options: ClusterOptions
    #: the engine's packages (the first is imported) and the extra that installs them
    requires: tuple[str, ...]
    extra: str
    batch_seconds = 0.1
    pipelines = True
    shares_context = True
    #: options that configure a cluster the executor starts itself: refused with ``address``
    local_only: tuple[str, ...] = ()
    #: one machine of the engine, as messages name it
    machine = "worker"
    #: the engine's cluster in messages: ``the <remote_name> at ADDRESS``,
    #: ``the local <local_name>``
    remote_name = local_name = "cluster"
    #: how long capacities read from the cluster are reused (runs without resources)
    refresh_seconds = 5.0

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        given = [k for k in self.local_only if k in self.options.model_fields_set]
        if self.options.address and given:
            names = ", ".join(repr(k) for k in given)
            msg = (
                f"executor {self.name!r}: option{'s' * (len(given) > 1)} {names} only apply to "
                f"a cluster flowstage starts, not to the one at {self.options.address!r} "
                f"({self.cluster_hint()})"
            )
            raise ExecutorError(msg)
        self._refreshed = 0.0

    def import_engine(self) -> Any:
        """The engine's top module, or an error saying which extra to install."""
        module = self.requires[0]
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            msg = (
                f"the {self.name} executor needs the {module!r} package ({exc}): "
                f"pip install 'flowstage[{self.extra}]'"
            )
            raise ExecutorError(msg) from None

    # resources -------------------------------------------------------------------------

    def check_resources(self, workflow: Workflow) -> list[str]:
        started_here = not self.started
        if started_here:
            self.start()
        wanted = any(s.resources.requested() for s in workflow.spec.stages if s.resources)
        if not started_here and (
            wanted or time.monotonic() - self._refreshed > self.refresh_seconds
        ):
            self.refresh()
        if not wanted:
            return []
        offers = self.offers()
        problems = [
            p
            for stage in workflow.spec.stages
            if (p := self._unsatisfiable(stage.name, stage.resources, offers)) is not None
        ]
        if problems and started_here:
            self.close()
        return problems

    def refresh(self) -> None:
        """Read the cluster's capacities again."""
        self._read_capacities()
        self._refreshed = time.monotonic()

    def _unsatisfiable(
        self, stage: str, resources: Resources | None, offers: list[dict[str, float]]
    ) -> str | None:
        wanted = {k: v for k, v in (resources.requested() if resources else {}).items() if v}
        if not wanted or any(self.fits(wanted, offer) for offer in offers):
            return None
        request = ", ".join(show_amount(k, v) for k, v in wanted.items())
        shown = {
            ", ".join(show_amount(k, v) for k, v in self.shown(offer)) or "nothing"
            for offer in offers
        }
        have = "; ".join(sorted(shown)) or f"no {self.machine}s"
        address = self.options.address
        where = (
            f"the {self.remote_name} at {address}" if address else f"the local {self.local_name}"
        )
        return (
            f"stage {stage!r}: requests {request}, but no {self.machine} of {where} has that "
            f"much ({self.machine}s offer: {have}); {self.resource_hint()}"
        )

    def shown(self, offer: dict[str, float]) -> list[tuple[str, float]]:
        """The amounts of ``offer`` worth showing in a message, sorted."""
        return sorted(offer.items())

    @abc.abstractmethod
    def _read_capacities(self) -> None:
        """Read what the cluster offers (called by :meth:`refresh`)."""

    @abc.abstractmethod
    def offers(self) -> list[dict[str, float]]:
        """What each machine of the cluster offers, in the engine's resource names."""

    @abc.abstractmethod
    def fits(self, wanted: dict[str, float], offer: dict[str, float]) -> bool:
        """Whether one machine offering ``offer`` can run a stage requesting ``wanted``."""

    @abc.abstractmethod
    def cluster_hint(self) -> str:
        """Where to configure an external cluster's machines instead."""

    @abc.abstractmethod
    def resource_hint(self) -> str:
        """How to give the cluster the resources a stage requests."""

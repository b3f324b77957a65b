"""The executor interface: how the scheduler puts work on an engine.

An executor receives plain functions from :mod:`flowstage.core.calls` with their
arguments, runs them on its engine and hands back *handles* (engine futures or object
references). Handles may be passed as arguments to later submissions, so an engine can
chain stages without bringing values back to the driver.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from flowstage.core.errors import ExecutorError

if TYPE_CHECKING:
    from flowstage.core.models import Resources, Workflow
    from flowstage.core.sources import SourceBundle


class ExecutorOptions(BaseModel):
    """Options every executor accepts; subclasses add their own fields."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class Executor(abc.ABC):
    """Base class of executors. Subclasses set ``name`` and ``Options``.

    An executor is a context manager: started on enter, closed on exit. It can serve
    any number of runs in between.
    """

    name: ClassVar[str]
    Options: ClassVar[type[ExecutorOptions]] = ExecutorOptions
    #: seconds one map batch should last: long enough to amortize a submission
    batch_seconds: float = 0.02
    #: whether a handle may be passed to ``submit`` before its call is done (the engine
    #: then starts the new call when its inputs are ready)
    pipelines: ClassVar[bool] = False
    #: whether :meth:`share` keeps the run context on the engine (else every task
    #: carries the pickled context)
    shares_context: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        try:
            self.options = self.Options(**options)
        except ValidationError as exc:
            raise ExecutorError(describe_option_errors(self.name, self.Options, exc)) from None
        self._started = False

    # lifecycle -----------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Start the engine (idempotent)."""
        if not self._started:
            self._start()
            self._started = True

    def close(self) -> None:
        """Stop the engine and everything it started (idempotent)."""
        if self._started:
            self._started = False
            self._close()

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    # work ----------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def parallelism(self) -> int:
        """How many calls can run at once (used to size map batches)."""

    @property
    def uploads_code(self) -> bool:
        """Whether workers may be on hosts without the driver's folders, so that each
        run sends its stage code along (see :mod:`flowstage.core.sources`)."""
        address = getattr(self.options, "address", None)
        return bool(address) and bool(getattr(self.options, "upload_code", False))

    def check_resources(self, workflow: Workflow) -> list[str]:
        """Problems with stage resources this executor can never satisfy."""
        return []

    def install_code(self, bundle: SourceBundle) -> None:  # noqa: B027 - optional; no-op
        """Put a run's stage code in place on every worker before its tasks start (when
        ``uploads_code``; may block). Tasks also bring it along, but a worker unpickles
        a task's upstream values (instances of classes from that code) before the task
        runs, so an engine that can should install it ahead."""

    @abc.abstractmethod
    async def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        resources: Resources | None = None,
        label: str = "",
    ) -> Any:
        """Start ``fn(*args)`` on the engine and return a handle at once.

        Arguments that are handles from this executor are replaced by their values on
        the engine. ``resources`` is what the call needs; ``label`` names it for humans.
        """

    @abc.abstractmethod
    async def wait(self, handle: Any) -> None:
        """Wait until the call behind ``handle`` is done; raise what it raised."""

    async def call_started(self, handle: Any) -> None:
        """Return once the call behind ``handle`` has started on a worker, or is done: a
        stage ``timeout`` counts from then, not while the call waits for a free worker.
        Engines that cannot tell return at once (there it counts from submission)."""
        return

    async def watch(self, handle: Any) -> None:
        """:meth:`wait`, for a call nothing is blocked on (its dependents are already
        submitted): the engine may notice its end a little later, in batches."""
        await self.wait(handle)

    @abc.abstractmethod
    async def result(self, handle: Any) -> Any:
        """Wait for ``handle`` and return its value in the driver."""

    @abc.abstractmethod
    def cancel(self, handles: Iterable[Any]) -> None:
        """Stop calls that have not finished (best effort; never raises)."""

    def share(self, data: bytes) -> Any:
        """Keep ``data`` (a run's pickled context) on the engine while the returned
        stand-in lives, or return None to send ``data`` inside every task instead.

        Tasks carry the stand-in; in a worker it turns back into ``data`` or into an
        object whose ``load()`` returns it. Called once per run when ``shares_context``
        is set.
        """
        raise NotImplementedError(f"executor {self.name!r} does not share data")

    def cluster_memory(self) -> dict[str, Any] | None:
        """Where stages of this executor keep ``cluster_memory`` objects.

        A picklable descriptor ``{"factory": "module:Class", **arguments}`` that
        :mod:`flowstage.storage.object_store` turns into a backend inside workers, or
        ``None`` when the engine has no cluster memory (objects go to artifacts). It
        must stay valid as long as the executor is started.
        """
        return None

    def is_handle(self, value: Any) -> bool:
        """Whether ``value`` is a handle from this executor (not a plain value)."""
        return False

    def describe(self) -> str:
        return self.name


def describe_option_errors(name: str, model: type[BaseModel], exc: ValidationError) -> str:
    """One message for every bad executor option, listing the valid ones."""
    valid = ", ".join(sorted(model.model_fields)) or "none"
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "options"
        if error["type"] == "extra_forbidden":
            lines.append(f"executor {name!r}: unknown option {key!r} (valid options: {valid})")
        else:
            lines.append(
                f"executor {name!r}: option {key!r}: {error['msg']} (got {error.get('input')!r})"
            )
    return "\n".join(lines)

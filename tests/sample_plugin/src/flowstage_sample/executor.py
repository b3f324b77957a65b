"""The ``inline`` executor: every call runs in the driver's own thread, one at a time.

For debugging: ``breakpoint()`` inside a stage stops in your terminal, a profiler sees
stage code, and values never leave the process. Select it with ``--executor inline``
or ``run_workflow(..., executor="inline")``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flowstage.core.executor import Executor, ExecutorOptions

if TYPE_CHECKING:
    from flowstage.core.models import Resources, Workflow

log = logging.getLogger("flowstage.sample.inline")


class InlineOptions(ExecutorOptions):
    """Options of the ``inline`` executor (validated like every executor's)."""

    #: log every call (stage name) at INFO level
    log_calls: bool = False


class Done:
    """A finished call: its value, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class InlineExecutor(Executor):
    """Runs each call as it is submitted, in the calling thread."""

    name = "inline"
    Options = InlineOptions
    options: InlineOptions

    @property
    def parallelism(self) -> int:
        return 1

    def _start(self) -> None:
        """Nothing to start: there is no engine."""

    def _close(self) -> None:
        """Nothing to stop."""

    def check_resources(self, workflow: Workflow) -> list[str]:
        # An async target is run with asyncio.run(), which cannot nest inside the
        # driver's running event loop: say so before the run instead of failing in it.
        from flowstage.core.targets import resolve_target

        problems = []
        for stage in workflow.spec.stages:
            try:
                fn = resolve_target(stage.target)  # validation has imported it already
            except Exception:  # noqa: BLE001 - validation reports targets that do not import
                continue
            if inspect.iscoroutinefunction(fn):
                problems.append(f"stage {stage.name!r}: async targets cannot run on the inline executor "
                                "(use the local executor)")
        return problems

    async def submit(self, fn: Callable[..., Any], *args: Any, resources: Resources | None = None,
                     label: str = "") -> Done:
        values = [a.get() if isinstance(a, Done) else a for a in args]
        if self.options.log_calls:
            log.info("inline call: %s", label)
        try:
            return Done(fn(*values))
        except Exception as exc:  # noqa: BLE001  # handed back by wait() and result(), like a future
            return Done(error=exc)

    async def wait(self, handle: Any) -> None:
        handle.get()

    async def result(self, handle: Any) -> Any:
        return handle.get()

    def cancel(self, handles: Iterable[Any]) -> None:
        """Calls finish as they are submitted: nothing is ever left to cancel."""

    def is_handle(self, value: Any) -> bool:
        return isinstance(value, Done)

    def describe(self) -> str:
        return "inline (the driver thread)"

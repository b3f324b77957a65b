"""The exceptions flowstage raises.

::

    FlowstageError                     base of everything below
    ├── UserError                      bad input; the CLI prints it without a traceback, exit 2
    │   ├── WorkflowError              a workflow/config file or input failed validation
    │   ├── UnknownNameError           no executor / stage type / workflow of that name
    │   ├── PluginError                a plugin failed to load or misbehaved
    │   ├── ExecutorError              an executor could not start or was misconfigured
    │   ├── StoreError                 the app dir's store cannot be read or written
    │   ├── ObjectStoreError           an object could not be stored or read
    │   │   ├── InvalidKeyError (ValueError)  a key, artifact name or namespace not allowed
    │   │   └── MemoryFull             cluster memory has no room for the object
    │   └── ServiceError               a service refused a request (shutting down, HTTP error)
    │       └── ServiceClosed          the service is draining or stopped: no new runs
    ├── StageError                     a stage failed while the workflow ran (CLI exit 1)
    ├── RunCancelled                   the run was cancelled (Ctrl-C, ``runs cancel``)
    ├── ObjectNotFound (KeyError)      ``object_store.get`` of a missing key
    │   └── ArtifactNotFound (FileNotFoundError)  no artifact of that name
    ├── TargetError                    a stage target does not import or is not callable
    ├── ResultNotTransferable          a call's result cannot leave its worker
    ├── CallTimeout (TimeoutError)     a call ran longer than its stage's ``timeout``
    ├── CallStopped (RuntimeError)     a running call was cancelled: its worker process killed
    └── WorkerLost (RuntimeError)      the worker process running a call died
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ExecutorError",
    "FlowstageError",
    "InvalidKeyError",
    "MemoryFull",
    "ArtifactNotFound",
    "ObjectNotFound",
    "ObjectStoreError",
    "PluginError",
    "CallStopped",
    "CallTimeout",
    "ResultNotTransferable",
    "RunCancelled",
    "ServiceClosed",
    "ServiceError",
    "StageError",
    "StoreError",
    "TargetError",
    "UnknownNameError",
    "UserError",
    "WorkerLost",
    "WorkflowError",
]


class FlowstageError(Exception):
    """Base class of every flowstage exception."""


class UserError(FlowstageError):
    """Something the user gave us is wrong; the message says what and where."""


class WorkflowError(UserError):
    """A workflow, config or run input failed validation.

    ``problems`` lists every problem found, each a complete sentence naming the file,
    the stage and the key.
    """

    def __init__(self, problems: Iterable[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        if len(self.problems) == 1:
            msg = self.problems[0]
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            msg = f"{len(self.problems)} problems found:\n{listed}"
        super().__init__(msg)


class UnknownNameError(UserError):
    """A name (executor, stage type, workflow) that nothing provides."""


class PluginError(UserError):
    """A plugin failed to load, conflicts with another one, or raised inside a hook."""


class ExecutorError(UserError):
    """An executor was misconfigured or could not start."""


class StoreError(UserError):
    """The store file cannot be used: corrupt, not a flowstage store, from a newer
    flowstage, or held locked by another process for longer than ``store.busy_timeout``."""


class ObjectStoreError(UserError):
    """An object could not be stored or read (bad key, unpicklable value, full or
    unreachable storage); the message names the key, the namespace and the stage."""


class InvalidKeyError(ObjectStoreError, ValueError):
    """A key, artifact name or namespace that is not allowed (``..``, absolute, empty)."""


class MemoryFull(ObjectStoreError):
    """Cluster memory has no room for the object (``fallback`` then uses an artifact)."""


class ServiceError(UserError):
    """A service refused a request: it is shutting down, or answered with an error."""


class ServiceClosed(ServiceError):
    """The service is draining or stopped: it takes no new runs."""


class StageError(FlowstageError):
    """A stage failed during a run.

    :ivar stage: name of the failed stage
    :ivar item_index: position of the failed item inside a map, else ``None``
    :ivar attempts: how many times the failing call was tried
    :ivar traceback: the traceback text from the worker that ran the call
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        item_index: int | None = None,
        attempts: int = 1,
        traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.item_index = item_index
        self.attempts = attempts
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:  # keep the keyword-only attributes across pickling
        return (
            _rebuild_stage_error,
            (str(self), self.stage, self.item_index, self.attempts, self.traceback),
        )


def _rebuild_stage_error(
    message: str, stage: str, item_index: int | None, attempts: int, traceback: str
) -> StageError:
    return StageError(
        message, stage=stage, item_index=item_index, attempts=attempts, traceback=traceback
    )


class RunCancelled(FlowstageError):
    """The run was cancelled before it finished."""


class ObjectNotFound(FlowstageError, KeyError):
    """``object_store.get`` found no object under the key (and no default was given)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TargetError(FlowstageError):
    """A target does not import, or is not callable; the message says why."""


class ResultNotTransferable(FlowstageError):
    """A call's result cannot be serialized, so it could never leave its worker."""


class CallTimeout(FlowstageError, TimeoutError):
    """A call ran longer than its stage's ``timeout``."""


class CallStopped(FlowstageError, RuntimeError):
    """The call was cancelled while it ran: its worker process was killed."""


class WorkerLost(FlowstageError, RuntimeError):
    """The worker process running a call died before the call returned."""


class ArtifactNotFound(ObjectNotFound, FileNotFoundError):
    """No artifact of that name: a :class:`KeyError` like every missing object, and a
    :class:`FileNotFoundError`, which code written for Flowdapt catches ("first run:
    download the data")."""

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

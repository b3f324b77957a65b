"""The run context: what a stage (and any function it calls) knows about its run.

The context travels with every task to its worker (threads, processes, Dask or Ray) and
is set there in a :mod:`contextvars` variable around each call, because context
variables do not cross process boundaries by themselves.
"""

from __future__ import annotations

import contextvars
import copy
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from flowstage.core.errors import FlowstageError

if TYPE_CHECKING:
    from flowstage.core.models import Workflow


class ConfigView(dict[str, Any]):
    """Read-only run config with item and attribute access.

    ``config["study_identifier"]`` and ``config.data_config["n"]`` both work;
    ``config.input`` is the run input unless the config data defines ``input``. It is a
    ``dict`` too, as Flowdapt's config is: ``json.dumps(config)``, ``config | other`` and
    ``dict(config)`` work (they see the config data, not the run input).
    """

    __slots__ = ("_input",)

    def __init__(self, data: Mapping[str, Any], run_input: Mapping[str, Any]) -> None:
        super().__init__(data)
        object.__setattr__(self, "_input", run_input)

    def __getitem__(self, key: str) -> Any:
        if key == "input" and not super().__contains__("input"):
            return self._input
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            known = ", ".join(sorted(self)) or "none"
            msg = f"the run config has no key {key!r} (keys: {known})"
            raise AttributeError(msg) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("the run config is read-only")

    def _read_only(self, *_args: Any, **_kwargs: Any) -> Any:
        msg = "the run config is read-only: copy it first (dict(config) or config | {...})"
        raise TypeError(msg)

    __setitem__ = __delitem__ = _read_only
    update = pop = popitem = clear = setdefault = _read_only
    __ior__ = _read_only

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or key == "input"

    def __repr__(self) -> str:
        return f"ConfigView({dict(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConfigView, (dict(self), self._input))

    def __copy__(self) -> ConfigView:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ConfigView:
        return ConfigView(copy.deepcopy(dict(self), memo), self._input)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self))


@dataclass(frozen=True)
class RunInfo:
    """Identity of a run: ``id``, ``workflow`` name, ``source`` (api|cli|background)."""

    id: str
    workflow: str
    source: str
    started_at: datetime

    @property
    def uid(self) -> str:
        """The run id (Flowdapt's name for it)."""
        return self.id

    @property
    def name(self) -> str:
        """A readable unique name of the run: the workflow's name and the id's start."""
        return f"{self.workflow}-{self.id[:8]}"


class _Definition:
    """The ``definition`` field of :class:`RunContext`: a worker receives the workflow in
    its compact form (a :class:`_Compacted`) and rebuilds the model only when a stage
    reads it (validating a large workflow costs more than a small call)."""

    def __get__(self, context: Any, owner: Any = None) -> Workflow:
        if context is None:
            raise AttributeError("definition")  # the dataclass field has no default
        value = context.__dict__["_definition"]
        return value.workflow() if isinstance(value, _Compacted) else value

    def __set__(self, context: Any, value: Any) -> None:
        context.__dict__["_definition"] = value


class _Compacted:
    """A workflow as it arrived in a worker: its compact form (see :func:`_compact`), the
    model rebuilt once on first use, and its stages' targets. Shared by the per-stage
    copies of a restored context, and forgotten with it."""

    __slots__ = ("compact", "model", "targets", "lock")

    def __init__(self, compact: Any) -> None:
        self.compact = compact
        self.model: Workflow | None = None
        self.targets: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def workflow(self) -> Workflow:
        with self.lock:
            if self.model is None:
                self.model = _expand(self.compact)
            return self.model

    def target(self, stage: str) -> Any:
        """The target of ``stage`` as it was sent (without rebuilding the model).

        :raises KeyError: no such stage
        """
        if self.targets is None:
            compact = self.compact
            stages = (
                [(s.name, s.target) for s in compact.spec.stages]
                if not isinstance(compact, tuple)
                else [(s["name"], s["target"]) for s in compact[0]["spec"]["stages"]]
            )
            self.targets = dict(stages)
        return self.targets[stage]


@dataclass
class RunContext:
    """Everything ``get_run_context()`` returns inside a stage."""

    input: dict[str, Any]
    config: ConfigView
    namespace: str
    executor: str
    # a descriptor, not a default: the field stays required (hence both ignores)
    definition: Workflow = _Definition()  # type: ignore[assignment]
    run: RunInfo  # type: ignore[misc]
    stage: str | None = None
    item_index: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def for_stage(self, stage: str, item_index: int | None = None) -> RunContext:
        """A copy of this context for one stage (and item) of the run."""
        return RunContext(
            self.input,
            self.config,
            self.namespace,
            self.executor,
            self.__dict__["_definition"],
            self.run,
            stage,
            item_index,
            self.extras,
        )

    def pickled(self) -> bytes:
        """The run-wide part of this context, pickled once (what workers unpickle)."""
        blob = self.__dict__.get("_blob")
        if blob is None:
            # lazy: cloudpickle is needed only for what plain pickle refuses
            import cloudpickle

            extras = dict(self.extras)
            sources = extras.pop("sources", None)
            definition = self.definition
            targets = {stage.name: stage.target for stage in definition.spec.stages}
            rest = cloudpickle.dumps(
                (
                    self.input,
                    self.config,
                    self.namespace,
                    self.executor,
                    _compact(definition),
                    self.run,
                    extras,
                )
            )
            if COMPRESS_ABOVE < len(rest) <= COMPRESS_BELOW:  # (the stage code is zipped already)
                rest = _ZLIB + zlib.compress(rest, 1)
            # Stage code sent with the run comes first: it is put in place before the
            # rest (which may refer to its modules) is unpickled.
            blob = cloudpickle.dumps((sources, rest))
            self.__dict__["_blob"] = blob
            self.__dict__["_sent_targets"] = targets
        return cast(bytes, blob)

    def sent_target(self, stage: str) -> Any:
        """The target of ``stage`` in the workflow this context is pickled with (None
        if it has no such stage): what a worker finds with :func:`stage_target`."""
        self.pickled()
        sent = self.__dict__.get("_sent_targets")
        if sent is not None:
            return sent.get(stage)
        try:  # a restored context travels on with the pickle it arrived with
            return stage_target(self, stage)
        except KeyError:
            return None

    def pickles_plainly(self) -> bool:
        """Whether pickling this context gives only names of flowstage's functions and
        plain data (the run-wide part as bytes, not an engine's stand-in for them)."""
        return self.__dict__.get("_shipped") is None

    def ship_with(self, share: Callable[[bytes], Any]) -> None:
        """Let tasks carry ``share(self.pickled())`` instead of the pickled context,
        unless that is None (see ``Executor.share``)."""
        self.__dict__["_shipped"] = share(self.pickled())

    def __reduce__(self) -> tuple[Any, ...]:
        # Every task carries the context: pickle the run-wide part once per run (or send
        # a stand-in for it), and let each worker process unpickle it once.
        payload = self.__dict__.get("_shipped") or self.pickled()
        return (_restore_context, (self.run.id, payload, self.stage, self.item_index))


#: the run-wide part of a context is compressed between these sizes: it travels in every
#: task (larger ones are shared once per run, see ``Executor.share``)
COMPRESS_ABOVE, COMPRESS_BELOW = 1024, 100_000
_ZLIB = b"zlib:"

#: contexts restored in this process (a run's tasks share one), least recently used first
_restored: dict[str, RunContext] = {}
#: the pickled bytes of the contexts in ``_restored``
_restored_bytes = 0
#: taken to change ``_restored`` (tasks of several runs start on threads of one worker)
_restored_lock = threading.Lock()
#: at most this many restored contexts are kept, of at most this many pickled bytes in all
#: (the stage code sent with a run counts: up to 20 MB each)
KEEP_RESTORED, KEEP_RESTORED_BYTES = 16, 64 * 1024 * 1024


def _restore_context(
    run_id: str, payload: Any, stage: str | None, item_index: int | None
) -> RunContext:
    """The context of ``run_id`` in this process, unpickled on first use.

    ``payload`` is the pickled context, or a stand-in whose ``load()`` returns it.
    """
    base = _restored.get(run_id)
    if base is None:
        # lazy: keeps `import flowstage` fast
        import pickle

        blob = payload if isinstance(payload, bytes) else payload.load()
        sources, rest = pickle.loads(blob)
        if sources is not None:
            _use_sources(sources)
        if rest.startswith(_ZLIB):
            rest = zlib.decompress(rest[len(_ZLIB) :])
        *fields, extras = pickle.loads(rest)
        fields[4] = _Compacted(fields[4])
        if sources is not None:
            extras["sources"] = sources
        # extras is not the 7th field (stage is); mypy cannot count a starred list
        base = RunContext(*fields, extras=extras)  # type: ignore[misc]
        base.__dict__["_blob"] = blob
        base = _keep_restored(run_id, base)
    else:
        _keep_restored(run_id, base)  # used again: the most recent now
        if "sources" in base.extras:
            _use_sources(base.extras["sources"])  # before the task's arguments are unpickled
    return base if stage is None and item_index is None else base.for_stage(stage, item_index)  # type: ignore[arg-type]


def _keep_restored(run_id: str, context: RunContext) -> RunContext:
    """Keep ``context`` as the most recently used of ``_restored``, forgetting the least
    recently used beyond ``KEEP_RESTORED`` or ``KEEP_RESTORED_BYTES`` (a later task of
    a forgotten run unpickles its context again); the context kept for ``run_id`` (one
    that another thread restored first)."""
    global _restored_bytes
    with _restored_lock:
        kept = _restored.pop(run_id, None)
        if kept is not None:
            context = kept
        else:
            size = len(context.__dict__["_blob"])
            while _restored and (
                len(_restored) >= KEEP_RESTORED or _restored_bytes + size > KEEP_RESTORED_BYTES
            ):
                _restored_bytes -= len(_restored.pop(next(iter(_restored))).__dict__["_blob"])
            _restored_bytes += size
        _restored[run_id] = context
        return context


def _compact(workflow: Workflow) -> Any:
    """``workflow`` as the fields that differ from their defaults, with where it came
    from (a fifth of its pickled size: the context travels with every task); the model
    itself if it would not come back equal (objects in ``options`` or ``metadata``)."""
    compact = (workflow.model_dump(exclude_defaults=True), workflow.source, workflow._label)
    try:
        same = _expand(compact) == workflow
    except Exception:  # noqa: BLE001 - changed after validation: send it as it is
        same = False
    return compact if same else workflow


def stage_target(context: RunContext, stage: str) -> Any:
    """The target of ``stage`` in ``context``'s workflow; in a worker, as it arrived with
    the run (the model is not rebuilt for it).

    :raises KeyError: the workflow has no such stage
    """
    value = context.__dict__["_definition"]
    if isinstance(value, _Compacted):
        return value.target(stage)
    return context.definition.stage(stage).target


def _expand(compact: Any) -> Workflow:
    # lazy: keeps `import flowstage` fast
    from flowstage.core.models import Workflow

    if isinstance(compact, Workflow):
        return compact
    data, source, label = compact
    workflow = Workflow.model_validate(data)
    workflow._source, workflow._label = source, label
    return workflow


def _use_sources(sources: Any) -> None:
    # lazy: keeps `import flowstage` fast
    from flowstage.core.sources import use_sources

    use_sources(sources)


_current: contextvars.ContextVar[RunContext] = contextvars.ContextVar("flowstage_run_context")


def get_run_context() -> RunContext:
    """The context of the run this code is part of.

    :raises FlowstageError: called outside a stage of a running workflow
    """
    try:
        return _current.get()
    except LookupError:
        msg = (
            "get_run_context() was called outside a running workflow: call it from a stage "
            "function (or a function a stage calls) while run_workflow or `flowstage run` runs it"
        )
        raise FlowstageError(msg) from None


def set_run_context(context: RunContext) -> contextvars.Token[RunContext]:
    """Make ``context`` current in this thread or task; undo with :func:`reset_run_context`."""
    return _current.set(context)


def reset_run_context(token: contextvars.Token[RunContext]) -> None:
    _current.reset(token)

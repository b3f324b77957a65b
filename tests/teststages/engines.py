"""Stage functions for the engine tests (importable as ``teststages.engines``)."""

from __future__ import annotations

import os
import threading
import time

from flowstage import get_run_context


def worker_pid() -> int:
    return os.getpid()


def read_env(name: str) -> str | None:
    return os.environ.get(name)


def shout(word: str) -> str:
    print(f"stage says {word}", flush=True)
    return word


def make_lock() -> threading.Lock:
    return threading.Lock()


def lock_on_one(x: int) -> object:
    return threading.Lock() if x == 1 else x


def type_name(value: object) -> str:
    return type(value).__name__


class CountsPickling:
    """Appends a line to ``path`` each time it is pickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        with open(self.path, "a", encoding="utf-8") as log:
            log.write("pickled\n")
        return (CountsPickling, (self.path,))


def counts_pickling(path: str) -> CountsPickling:
    return CountsPickling(path)


def sleep_long(seconds: float = 30.0) -> float:
    time.sleep(seconds)
    return seconds


def stamp(seconds: float) -> list[float]:
    """Sleeps, then reports when it started and finished (to see overlap)."""
    began = time.time()
    time.sleep(seconds)
    return [began, time.time()]


def spans(a: list[float], b: list[float]) -> list[list[float]]:
    return [a, b]


def item_and_stage(x: object) -> list[object]:
    ctx = get_run_context()
    return [x, ctx.stage, ctx.item_index]


def keyed(n_vals: int, tag: str) -> list[str]:
    return [f"{tag}-{i}" for i in range(n_vals)]


def mark_then_sleep(marker: str, seconds: float) -> float:
    from pathlib import Path

    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return seconds


def die_once(x: int, marker_dir: str) -> int:
    """Item ``x == 1`` kills its own worker process the first time it runs."""
    import signal
    from pathlib import Path

    folder = Path(marker_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if x == 1 and not (folder / "died").exists():
        (folder / "died").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


def input_size(blob: str) -> int:
    """The length of ``blob``, a root input."""
    return len(blob)


def context_blob_size(previous: object) -> int:
    """The length of the run input's ``blob``, read through the run context."""
    from flowstage import get_run_context

    return len(get_run_context().input["blob"])


def size_of_item(x: int) -> int:
    from flowstage import get_run_context

    return len(get_run_context().input["blob"]) + x


def put_in_ray(n: int) -> list[object]:
    """A list holding a Ray object reference (Ray must carry it to the next stage)."""
    import ray

    return [ray.put(n * 10)]


def get_from_ray(refs: list[object]) -> int:
    import ray

    return ray.get(refs[0]) + 1


def timed_sleep(seconds: float) -> list[float]:
    """Sleeps ``seconds``; returns them and when it finished."""
    time.sleep(seconds)
    return [seconds, time.time()]


def started_after(slept: list[float]) -> list[float]:
    """``slept`` and the time this call started."""
    return [*slept, time.time()]


def get_one(ref: object) -> int:
    import ray

    return ray.get(ref) + 1


class Halt(BaseException):
    """Not an Exception: stages do not catch it (as asyncio.CancelledError)."""


def halt() -> None:
    raise Halt("halted on purpose")


def refuse(word: str) -> None:
    """Fail with an ordinary exception, after a stage that gave ``word``."""
    raise ValueError(f"refused {word!r}")

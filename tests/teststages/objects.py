"""Stages that share objects through ``object_store`` (importable as ``teststages.objects``)."""

from __future__ import annotations

import os
import threading
from typing import Any

from flowstage import ObjectNotFound, get_run_context, object_store
from flowstage.artifacts import get_artifact, new_artifact


class Model:
    """A user class: it must survive every trip between workers."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def predict(self, x: float) -> float:
        return sum(w * x for w in self.weights)


def put_value(key: str, value: Any, strategy: str = "fallback") -> str:
    return object_store.put(key, value, strategy=strategy)


def _input(name: str, default: Any = None) -> Any:
    """Dependent stages get only their dependencies' outputs: the rest comes from the input."""
    return get_run_context().input.get(name, default)


def get_value(_previous: Any) -> Any:
    return object_store.get(
        _input("key"), strategy=_input("get_strategy", _input("strategy", "fallback"))
    )


def get_root(key: str, strategy: str = "fallback", default: Any = "no default") -> Any:
    if default == "no default":
        return object_store.get(key, strategy=strategy)
    return object_store.get(key, default, strategy=strategy)


def put_model(key: str, strategy: str = "fallback") -> dict[str, Any]:
    tier = object_store.put(key, Model([1.0, 2.0]), strategy=strategy)
    return {"tier": tier, "pid": os.getpid()}


def use_model(put: dict[str, Any]) -> dict[str, Any]:
    model = object_store.get(_input("key"), strategy=_input("strategy", "fallback"))
    return {
        "prediction": model.predict(2.0),
        "tier": put["tier"],
        "put_pid": put["pid"],
        "pid": os.getpid(),
    }


def fallback_roundtrip(key: str) -> list[Any]:
    import numpy as np

    tiers = [object_store.put(key, [1, 2, 3])]  # small: cluster memory
    tiers.append(object_store.put(key, np.ones(100_000)))  # big: an artifact; the memory copy goes
    after_big = float(object_store.get(key).sum())
    tiers.append(object_store.put(key, "small again"))  # memory again; the artifact goes
    return [tiers, after_big, object_store.get(key), object_store.exists(key, strategy="artifact")]


def put_two(prefix: str) -> int:
    object_store.put(f"{prefix}/a", list(range(100)), strategy="cluster_memory")
    object_store.put(f"{prefix}/b", "b" * 1000, strategy="cluster_memory")
    return 2


def put_array(key: str, n: int, strategy: str = "fallback") -> str:
    import numpy as np

    return object_store.put(key, np.arange(n, dtype="float64"), strategy=strategy)


def array_sum(_put: Any) -> float:
    return float(object_store.get(_input("key"), strategy=_input("strategy", "fallback")).sum())


def delete_value(_previous: Any) -> list[Any]:
    key, strategy = _input("key"), _input("strategy", "fallback")
    return [
        object_store.delete(key, strategy=strategy),
        object_store.delete(key, strategy=strategy),
        object_store.get(key, None),
    ]


def missing(key: str) -> str:
    try:
        object_store.get(key)
    except ObjectNotFound as exc:
        return f"{type(exc).__name__}|{isinstance(exc, KeyError)}|{exc}"
    return "found"


def put_lock(key: str, strategy: str = "fallback") -> None:
    object_store.put(key, threading.Lock(), strategy=strategy)


def bad_key(key: str) -> str:
    try:
        object_store.put(key, 1)
    except ValueError as exc:
        return str(exc)
    return "accepted"


def namespace_and_value(key: str) -> list[Any]:
    return [get_run_context().namespace, object_store.get(key, None)]


def item_put(item: int) -> int:
    object_store.put(f"items/{item}", item * 10)
    return item


def item_sum(items: list[int]) -> int:
    return sum(object_store.get(f"items/{i}") for i in items)


def write_artifact(name: str) -> str:
    artifact = new_artifact(name, metadata={"stage": get_run_context().stage})
    artifact.new_file("notes.txt", "written in a stage")
    artifact["rows"] = 3
    return artifact.namespace


def read_artifact(_previous: Any) -> dict[str, Any]:
    artifact = get_artifact(_input("name"))
    return {
        "metadata": artifact.metadata,
        "notes": artifact.read("notes.txt", "r"),
        "files": [f.name for f in artifact.list_files()],
    }

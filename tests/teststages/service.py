"""Stages the service tests run (importable as ``teststages.service``)."""

from __future__ import annotations

import time

from flowstage import object_store


def echo(value: object = "hi") -> object:
    return value


def fail(message: str = "svc boom") -> None:
    raise ValueError(message)


def sleep_for(seconds: float = 0.2) -> float:
    time.sleep(float(seconds))
    return float(seconds)


def remember(key: str = "asset_list", value: object = "abc") -> str:
    """Keeps ``value`` in cluster memory, where a later run of the same service finds it."""
    object_store.put(key, value, strategy="cluster_memory")
    return key


def recall(key: str = "asset_list") -> object:
    return object_store.get(key, strategy="cluster_memory")

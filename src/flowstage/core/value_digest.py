"""A stable digest of a value: what a cached stage's arguments and config add to its key."""

from __future__ import annotations

import hashlib
import json
import pickle
from typing import Any


def value_digest(value: Any) -> bytes:
    """A stable digest of ``value``: of its JSON form (keys sorted, sets as sorted lists)
    when it has one, else of its pickle (cloudpickle for functions and classes defined
    in scripts). JSON does not tell a tuple from a list, nor ``{1: x}`` from
    ``{"1": x}``: such values share a key.

    :raises TypeError: the value can be neither (the message says why)
    """
    try:
        data = (
            b"j"
            + json.dumps(
                value, sort_keys=True, separators=(",", ":"), default=_set_as_list
            ).encode()
        )
    except (TypeError, ValueError):
        try:
            data = b"p" + pickle.dumps(value, protocol=5)
        except Exception:  # noqa: BLE001 - any pickling failure: try the broader pickler
            import cloudpickle

            try:
                data = b"c" + cloudpickle.dumps(value, protocol=5)
            except Exception as exc:  # noqa: BLE001 - reported as the argument's problem
                msg = f"a {type(value).__name__} is neither JSON nor picklable ({exc})"
                raise TypeError(msg) from None
    return hashlib.blake2b(data, digest_size=16).digest()


def _set_as_list(value: Any) -> list[Any]:
    """A set's JSON form: its items sorted (a set pickles in an order that changes with
    each process's string hashing, so its pickle would miss in every new process)."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    msg = f"a {type(value).__name__} has no JSON form"
    raise TypeError(msg)

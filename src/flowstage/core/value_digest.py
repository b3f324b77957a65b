"""A stable digest of a value: what a cached stage's arguments and config add to its key.

The digest must be the same in every process that computes the same value, or a cached
stage misses in each new ``flowstage run``. Pickles are not: a set pickles in an order
that follows string hashing (``PYTHONHASHSEED`` changes it per process), a dict in its
insertion order, and an object met twice pickles differently from two equal objects.
So a value is digested by its JSON form when it has one, else by a canonical form
built from its structure, in which only leaves without a JSON form are pickled.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from typing import Any

#: leaves that enter the canonical form as themselves (their repr is stable)
_PLAIN = (str, int, float, bool, bytes, type(None))


def value_digest(value: Any) -> bytes:
    """A stable digest of ``value``: of its JSON form (keys sorted, sets as sorted lists)
    when it has one, else of its canonical form: dicts by sorted keys, sets sorted,
    lists and tuples in order (recursively), and each leaf without a JSON form by its
    pickle (cloudpickle for functions and classes defined in scripts). JSON does not
    tell a tuple from a list, nor ``{1: x}`` from ``{"1": x}``: such values share a key.

    :raises TypeError: a leaf can be neither JSON-encoded nor pickled (the message says why)
    """
    try:
        data = (
            b"j"
            + json.dumps(
                value, sort_keys=True, separators=(",", ":"), default=_set_as_list
            ).encode()
        )
    except (TypeError, ValueError):
        data = b"c" + repr(_canonical(value, set())).encode()
    return hashlib.blake2b(data, digest_size=16).digest()


def _set_as_list(value: Any) -> list[Any]:
    """A set's JSON form: its items sorted (a set pickles in an order that changes with
    each process's string hashing, so its pickle would miss in every new process)."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    msg = f"a {type(value).__name__} has no JSON form"
    raise TypeError(msg)


def _canonical(value: Any, active: set[int]) -> Any:
    """``value`` as nested tuples of plain values whose repr is the same in every
    process. ``active``: the containers being walked (one that contains itself is
    pickled whole, as a leaf)."""
    if isinstance(value, _PLAIN):
        return value
    if not isinstance(value, (dict, list, tuple, set, frozenset)) or id(value) in active:
        return ("leaf", _leaf_digest(value))
    active.add(id(value))
    try:
        if isinstance(value, dict):
            pairs = [(_canonical(k, active), _canonical(v, active)) for k, v in value.items()]
            return ("dict", tuple(sorted(pairs, key=repr)))
        items = tuple(_canonical(v, active) for v in value)
        if isinstance(value, (set, frozenset)):
            return ("set", tuple(sorted(items, key=repr)))
        return ("list" if isinstance(value, list) else "tuple", items)
    finally:
        active.discard(id(value))


def _leaf_digest(value: Any) -> bytes:
    """The digest of a leaf's pickle (cloudpickle when pickle cannot).

    :raises TypeError: neither can pickle it
    """
    try:
        data = b"p" + pickle.dumps(value, protocol=5)
    except Exception:  # noqa: BLE001 - any pickling failure: try the broader pickler
        # lazy: importing cloudpickle takes about 75 ms, and only a leaf that pickle
        # cannot take needs it (`import flowstage` and the CLI must stay fast)
        import cloudpickle

        try:
            data = b"c" + cloudpickle.dumps(value, protocol=5)
        except Exception as exc:  # noqa: BLE001 - reported as the argument's problem
            msg = f"a {type(value).__name__} is neither JSON nor picklable ({exc})"
            raise TypeError(msg) from None
    return hashlib.blake2b(data, digest_size=16).digest()

"""Flowdapt's condition rules: a tree of ``eq ne gt lt ge le and or not bool var``
evaluated on an event, and an index of rules by the equalities they require, so that an
event is tested only against the rules that can match it."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from flowstage.core.errors import UserError

T = TypeVar("T")

#: the field paths an index prefers, most selective first (``type`` has two values)
PREFERRED = ("data.workflow", "workflow", "type")

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "lt": operator.lt,
    "ge": operator.ge,
    "le": operator.le,
}
OPERATORS = frozenset({*_COMPARE, "and", "or", "not", "bool", "var"})


class RuleError(UserError):
    """A condition rule that is not a tree of Flowdapt's operators."""


def lookup(data: Any, path: str) -> Any:
    """The value at the dotted ``path`` of ``data`` (None where a key is missing)."""
    value = data
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _args(node: Mapping[str, Any], op: str) -> list[Any]:
    value = node[op]
    return list(value) if isinstance(value, list | tuple) else [value]


def evaluate(rule: Any, event: Mapping[str, Any]) -> Any:
    """The value of ``rule`` on ``event`` (``{type, source, data, ...}``): a literal is
    itself, ``{var: a.b}`` the field at that path, an operator its result. A comparison of
    values that cannot be ordered (``None > 3``) is false."""
    if isinstance(rule, list):
        return [evaluate(item, event) for item in rule]
    if not isinstance(rule, Mapping) or len(rule) != 1:
        return rule
    op = next(iter(rule))
    if op not in OPERATORS:
        return rule
    if op == "var":
        path = rule[op]
        return lookup(event, path[0] if isinstance(path, list) else str(path))
    args = _args(rule, op)
    if op == "and":
        return all(evaluate(a, event) for a in args)
    if op == "or":
        return any(evaluate(a, event) for a in args)
    if op == "not":
        return not evaluate(args[0], event)
    if op == "bool":
        return bool(evaluate(args[0], event))
    left, right = evaluate(args[0], event), evaluate(args[1], event)
    try:
        return bool(_COMPARE[op](left, right))
    except TypeError:
        return False


def check(rule: Any, where: str) -> None:
    """:raises RuleError: ``rule`` uses an unknown operator or a wrong number of operands"""
    if isinstance(rule, list):
        for item in rule:
            check(item, where)
        return
    if not isinstance(rule, Mapping):
        return
    if len(rule) != 1 or next(iter(rule)) not in OPERATORS:
        msg = (
            f"{where}: {dict(rule)!r} is not an operator; expected one key among "
            f"{', '.join(sorted(OPERATORS))}"
        )
        raise RuleError(msg)
    op = next(iter(rule))
    if op == "var":
        return
    args = _args(rule, op)
    wanted = 2 if op in _COMPARE else 1 if op in ("not", "bool") else None
    if wanted is not None and len(args) != wanted:
        msg = f"{where}: {op!r} takes {wanted} operand(s), got {len(args)}"
        raise RuleError(msg)
    for arg in args:
        check(arg, where)


def equalities(rule: Any) -> dict[str, Any]:
    """The ``path == literal`` tests every match of ``rule`` must pass (from an ``eq`` at
    the top or inside a top-level ``and``)."""
    found: dict[str, Any] = {}
    if not isinstance(rule, Mapping) or len(rule) != 1:
        return found
    op = next(iter(rule))
    if op == "and":
        for arg in _args(rule, op):
            for path, value in equalities(arg).items():
                found.setdefault(path, value)
    elif op == "eq":
        args = _args(rule, op)
        if len(args) == 2:
            for var, literal in (args, args[::-1]):
                if isinstance(var, Mapping) and set(var) == {"var"} and _hashable(literal):
                    path = var["var"]
                    found[path[0] if isinstance(path, list) else str(path)] = literal
                    break
    return found


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


class RuleIndex(Generic[T]):
    """Condition rules (any payload ``T`` with a rule tree) indexed by one equality each:
    :meth:`candidates` returns the rules an event can match without testing the others."""

    def __init__(self, items: Iterable[tuple[Any, T]] = ()) -> None:
        self._by_path: dict[str, dict[Any, list[tuple[Any, T]]]] = {}
        self._unindexed: list[tuple[Any, T]] = []
        self.size = 0
        for rule, item in items:
            self.add(rule, item)

    def add(self, rule: Any, item: T) -> None:
        tests = equalities(rule)
        self.size += 1
        if not tests:
            self._unindexed.append((rule, item))
            return
        path = next((p for p in PREFERRED if p in tests), None) or sorted(tests)[0]
        self._by_path.setdefault(path, {}).setdefault(tests[path], []).append((rule, item))

    def candidates(self, event: Mapping[str, Any]) -> list[tuple[Any, T]]:
        found = list(self._unindexed)
        for path, buckets in self._by_path.items():
            value = lookup(event, path)
            if _hashable(value):
                found.extend(buckets.get(value, ()))
        return found

    def matches(self, event: Mapping[str, Any]) -> list[T]:
        """The payloads of the rules ``event`` satisfies."""
        return [item for rule, item in self.candidates(event) if evaluate(rule, event)]

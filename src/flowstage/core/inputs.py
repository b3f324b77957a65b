"""Run inputs given as text, as Flowdapt's ``flowctl run`` takes them (the CLI and the
dashboard's start form share this parsing).

``--n_vals 5`` gives ``{"n_vals": 5}``; ``--a.b 1`` gives ``{"a": {"b": 1}}``;
``--l[] x --l[] y`` gives ``{"l": ["x", "y"]}``; a flag with no value is ``true``.
Values become int, float, bool or null where they parse as such, except for a parameter
that takes text but not that value: ``--code 007`` gives ``code: str`` the text ``"007"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstage.core.errors import UserError
from flowstage.core.targets import coerce


def parse_scalar(text: str) -> Any:
    """``"5"`` -> 5, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"null"`` -> None, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "none", "~"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class _Given:
    """A value as typed on the command line, and what it parses as."""

    text: str

    @property
    def parsed(self) -> Any:
        return parse_scalar(self.text)


def _settle(value: Any, as_text: bool) -> Any:
    if isinstance(value, _Given):
        return value.text if as_text else value.parsed
    if isinstance(value, dict):
        return {k: _settle(v, as_text) for k, v in value.items()}
    if isinstance(value, list):
        return [_settle(v, as_text) for v in value]
    return value


def _accepts(annotation: Any, value: Any) -> bool:
    try:
        coerce(value, annotation)
    except ValueError:
        return False
    return True


def _choose(value: Any, annotations: Sequence[Any]) -> Any:
    """The parsed value, or the text as typed where a parameter wants it: ``007`` for a
    ``str`` parameter is ``"007"``, not 7 (which ``str`` refuses)."""
    parsed = _settle(value, as_text=False)
    text = _settle(value, as_text=True)
    if text != parsed and any(not _accepts(a, parsed) and _accepts(a, text) for a in annotations):
        return text
    return parsed


def parse_input_args(
    args: Sequence[str], annotations: Mapping[str, Sequence[Any]] | None = None
) -> dict[str, Any]:
    """The run input given as ``--KEY VALUE`` pairs.

    :param annotations: by input key, the annotations of the parameters it feeds (see
        :func:`~flowstage.core.loading.input_annotations`); a key whose parameter takes
        text but not the parsed value keeps the text as typed
    :raises UserError: an argument is not of that form
    """
    given: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise UserError(
                f"unexpected argument {arg!r}: run inputs are given as --KEY VALUE "
                "(e.g. --n_vals 5)"
            )
        key = arg[2:]
        if "=" in key:
            key, text = key.split("=", 1)
            value: Any = _Given(text)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = _Given(args[i + 1])
            i += 2
        else:
            value = True
            i += 1
        assign_key(given, key, value)
    wanted = annotations or {}
    return {key: _choose(value, wanted.get(key, ())) for key, value in given.items()}


def assign_key(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``value`` in ``target`` under a flag's key: ``NAME``, ``NAME.SUB`` (nested
    mappings, made as needed) or ``NAME[]`` (appended to a list).

    :raises UserError: a malformed key, or one that clashes with what earlier keys set
    """
    is_list = key.endswith("[]")
    parts = (key[:-2] if is_list else key).split(".")
    if not all(parts):
        raise UserError(f"bad input key {key!r}: expected NAME, NAME.SUB or NAME[]")
    node = target
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"input key {key!r}: {part!r} is already set to a value, not a mapping")
        node = child
    last = parts[-1]
    name = ".".join(parts)
    if is_list:
        existing = node.setdefault(last, [])
        if not isinstance(existing, list):
            raise UserError(f"input key {key!r}: {last!r} is already set to a value, not a list")
        existing.append(value)
        return
    # A plain --NAME after --NAME.KEY or --NAME[] flags would silently drop what they gave.
    if isinstance(node.get(last), dict):
        msg = (
            f"input flag --{key}: {name!r} already holds keys given by --{name}.KEY flags; "
            f"give either --{name} or --{name}.KEY"
        )
        raise UserError(msg)
    if isinstance(node.get(last), list):
        msg = (
            f"input flag --{key}: {name!r} already holds a list given by --{name}[] flags; "
            f"give every item as --{name}[] VALUE"
        )
        raise UserError(msg)
    node[last] = value


def read_input_file(path: Path) -> dict[str, Any]:
    """A run input from a JSON or YAML file holding a mapping."""
    # lazy: keeps `flowstage --help` fast (it imports every command module)
    from flowstage.core.yamlfiles import load_yaml, read_text_file

    data = load_yaml(read_text_file(path, "an input file"), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of input keys, got {type(data).__name__}")
    return data

"""Run inputs from the command line, as Flowdapt's ``flowctl run`` takes them.

``--n_vals 5`` gives ``{"n_vals": 5}``; ``--a.b 1`` gives ``{"a": {"b": 1}}``;
``--l[] x --l[] y`` gives ``{"l": ["x", "y"]}``; a flag with no value is ``true``.
Values become int, float, bool or null where they parse as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowstage.core.errors import UserError


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


def parse_input_args(args: Sequence[str]) -> dict[str, Any]:
    """The run input given as ``--KEY VALUE`` pairs.

    :raises UserError: an argument is not of that form
    """
    result: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise UserError(
                f"unexpected argument {arg!r}: run inputs are given as --KEY VALUE (e.g. --n_vals 5)"
            )
        key = arg[2:]
        if "=" in key:
            key, text = key.split("=", 1)
            value: Any = parse_scalar(text)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = parse_scalar(args[i + 1])
            i += 2
        else:
            value = True
            i += 1
        _assign(result, key, value)
    return result


def _assign(target: dict[str, Any], key: str, value: Any) -> None:
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
    from flowstage.core.yamlfiles import load_yaml, read_text_file

    data = load_yaml(read_text_file(path, "an input file"), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of input keys, got {type(data).__name__}")
    return data

"""Reading YAML: every workflow, config, settings and input file goes through one loader.

The loader is PyYAML's safe loader with limits, so that a small hostile file cannot make
flowstage build an enormous value: aliases may add at most :data:`MAX_ALIAS_NODES` nodes
to a document (a "billion laughs" file of 1 KB expands to billions), an alias may not
contain itself, and sequences and mappings may nest at most :data:`MAX_DEPTH` levels.
A key written twice in one mapping is an error, not "the last one wins".

Kept free of pydantic: the CLI reads settings with it before anything else is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from flowstage.core.errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

#: how many nodes aliases may add to one document, beyond the nodes written in it
MAX_ALIAS_NODES = 100_000
#: how deeply sequences and mappings may nest
MAX_DEPTH = 100


class LimitedSafeLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that refuses alias bombs, recursive aliases and deep
    nesting while composing, before any Python value is built, and duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                msg = f"nested more than {MAX_DEPTH} levels deep"
                raise yaml.composer.ComposerError(None, None, msg, mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # A key written twice is a mistake PyYAML hides (the last one wins); keys that
        # '<<' merges in may be overridden, as YAML intends.
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: SafeConstructor reports it
                    continue
                if duplicate:
                    msg = f"duplicate key {key!r} (each key may appear once in a mapping)"
                    raise yaml.constructor.ConstructorError(None, None, msg, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it by more than :data:`MAX_ALIAS_NODES`
    nodes, or that contains itself. Iterative, and linear in the nodes written."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            visiting.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in _children(node)), 1 << 62)
            continue
        if key in sizes:
            continue
        if key in visiting:
            msg = "an alias refers to a node that contains it (a recursive value)"
            raise yaml.composer.ComposerError(None, None, msg, node.start_mark)
        visiting.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    written = len(sizes)
    if sizes[id(root)] - written > MAX_ALIAS_NODES:
        msg = (
            f"aliases expand this document by more than {MAX_ALIAS_NODES:,} values "
            f"(it has {written:,} written); repeat fewer values through '*' aliases"
        )
        raise yaml.composer.ComposerError(None, None, msg, root.start_mark)


def _describe(exc: yaml.YAMLError) -> str:
    where = getattr(exc, "problem_mark", None)
    at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{at}: {problem}"


def _load(text: str, label: str, error: type[UserError], single: bool) -> Any:
    loader = LimitedSafeLoader(text)
    try:
        if single:
            return loader.get_single_data()
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    except yaml.YAMLError as exc:
        msg = f"{label}: not valid YAML{_describe(exc)}"
        raise error(msg) from None
    except RecursionError:  # complex keys can still nest through the constructor
        msg = f"{label}: not valid YAML: nested too deeply"
        raise error(msg) from None
    finally:
        loader.dispose()


def load_yaml(text: str, label: str, error: type[UserError] = UserError) -> Any:
    """The one YAML document in ``text`` (``None`` if empty).

    :param label: the file (or what the text is) named in the error message
    :raises UserError: (or ``error``) the text is not valid YAML or breaks a limit
    """
    return _load(text, label, error, single=True)


def load_yaml_documents(text: str, label: str, error: type[UserError] = UserError) -> list[Any]:
    """Every YAML document in ``text``, empty ones included (as ``None``).

    :raises UserError: (or ``error``) as :func:`load_yaml`
    """
    documents: list[Any] = _load(text, label, error, single=False)
    return documents


def read_text_file(path: Path, what: str, error: type[UserError] = UserError) -> str:
    """The UTF-8 text of the file at ``path``.

    :param what: what the file should be, for messages (``"an input file"``)
    :raises UserError: (or ``error``) the file is missing, a folder, unreadable or not UTF-8
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path}: no such file"
    except IsADirectoryError:
        msg = f"{path}: expected {what}, found a folder"
    except UnicodeDecodeError as exc:
        msg = (
            f"{path}: expected {what} in UTF-8 text, found byte "
            f"0x{exc.object[exc.start]:02x} at offset {exc.start} (a binary file?)"
        )
    except OSError as exc:
        msg = f"{path}: cannot be read: {exc.strerror or exc}"
    raise error(msg)

"""Where the stages of a graph go in its picture, in time linear in stages and edges.

Each stage sits in the column of its longest path from a root (so every edge points
right); within a column, stages keep the workflow's order. A stage named as a dependency
but not part of the graph is left out with its edges.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: the size of a stage's box and the gaps between boxes, in SVG units
BOX_WIDTH, BOX_HEIGHT = 150, 30
COLUMN_GAP, ROW_GAP = 50, 14
MARGIN = 10


@dataclass(frozen=True)
class Node:
    """A stage's box: its top-left corner and its state."""

    name: str
    x: int
    y: int
    state: str
    label: str


@dataclass(frozen=True)
class Edge:
    """An arrow from the right of one box to the left of another, as an SVG path."""

    path: str


@dataclass(frozen=True)
class Layout:
    """A laid-out graph and the size of its picture."""

    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layers(depends_on: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each stage's column: the length of its longest path from a root (a cycle's
    stages, which a valid workflow never has, go after the rest)."""
    users: dict[str, list[str]] = {name: [] for name in depends_on}
    missing: dict[str, int] = {}
    for name, deps in depends_on.items():
        known = [d for d in dict.fromkeys(deps) if d in users]
        missing[name] = len(known)
        for dep in known:
            users[dep].append(name)
    column = dict.fromkeys(depends_on, 0)
    ready = deque(name for name, count in missing.items() if count == 0)
    placed = 0
    while ready:
        name = ready.popleft()
        placed += 1
        for user in users[name]:
            column[user] = max(column[user], column[name] + 1)
            missing[user] -= 1
            if missing[user] == 0:
                ready.append(user)
    if placed < len(column):
        last = max(column.values(), default=0) + 1
        for name, count in missing.items():
            if count > 0:
                column[name] = last
    return column


def _label(name: str, limit: int = 20) -> str:
    return name if len(name) <= limit else f"{name[: limit - 1]}…"


def layout(depends_on: Mapping[str, Sequence[str]], states: Mapping[str, str]) -> Layout:
    """Boxes and arrows for the graph ``depends_on`` (stage -> the stages it needs, in
    the workflow's order), each box in its stage's state (``pending`` if not given)."""
    column = layers(depends_on)
    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for name in depends_on:
        col = column[name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        nodes[name] = Node(
            name,
            MARGIN + col * (BOX_WIDTH + COLUMN_GAP),
            MARGIN + row * (BOX_HEIGHT + ROW_GAP),
            states.get(name, "pending"),
            _label(name),
        )
    edges = []
    for name, deps in depends_on.items():
        end = nodes[name]
        for dep in dict.fromkeys(deps):
            start = nodes.get(dep)
            if start is None:
                continue
            x1, y1 = start.x + BOX_WIDTH, start.y + BOX_HEIGHT // 2
            x2, y2 = end.x, end.y + BOX_HEIGHT // 2
            bend = (x1 + x2) // 2
            edges.append(Edge(f"M{x1},{y1} C{bend},{y1} {bend},{y2} {x2},{y2}"))
    columns = max(column.values(), default=-1) + 1
    tallest = max(rows.values(), default=0)
    width = 2 * MARGIN + columns * BOX_WIDTH + max(columns - 1, 0) * COLUMN_GAP
    height = 2 * MARGIN + tallest * BOX_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    return Layout(list(nodes.values()), edges, max(width, 1), max(height, 1))

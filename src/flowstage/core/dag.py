"""The stage graph: dependents, roots, terminals, cycles and a topological order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class StageGraph:
    """A DAG of stage names built from ``{stage: [dependencies]}``.

    Unknown dependencies must have been rejected before; cycles are found by
    :meth:`find_cycle` and make :meth:`topological_order` raise ``ValueError``.
    """

    def __init__(self, dependencies: Mapping[str, Sequence[str]]) -> None:
        self.dependencies: dict[str, list[str]] = {k: list(v) for k, v in dependencies.items()}
        self.dependents: dict[str, list[str]] = {name: [] for name in self.dependencies}
        for name, deps in self.dependencies.items():
            for dep in deps if len(deps) < 2 else dict.fromkeys(deps):
                self.dependents[dep].append(name)
        self._order: list[str] | None = None

    @property
    def roots(self) -> list[str]:
        return [name for name, deps in self.dependencies.items() if not deps]

    @property
    def terminals(self) -> list[str]:
        return [name for name, users in self.dependents.items() if not users]

    def find_cycle(self) -> list[str] | None:
        """One cycle as ``[a, b, ..., a]``, or ``None`` when the graph is acyclic."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in self.dependencies:
            if start in state:
                continue
            path: list[str] = []
            stack: list[tuple[str, int]] = [(start, 0)]
            while stack:
                node, i = stack.pop()
                if i == 0:
                    state[node] = 1
                    path.append(node)
                deps = self.dependencies[node]
                if i < len(deps):
                    stack.append((node, i + 1))
                    dep = deps[i]
                    if state.get(dep) == 1:
                        cycle = path[path.index(dep) :] + [dep]
                        return list(reversed(cycle))  # in execution order: a -> b -> a
                    if dep not in state:
                        stack.append((dep, 0))
                else:
                    state[node] = 2
                    path.pop()
        return None

    def dependency_counts(self) -> dict[str, int]:
        """How many different stages each stage depends on."""
        return {
            name: len(deps) if len(deps) < 2 else len(set(deps))
            for name, deps in self.dependencies.items()
        }

    def topological_order(self) -> list[str]:
        """Stages so that each comes after its dependencies (file order among equals);
        worked out once per graph.

        :raises ValueError: the graph has a cycle (:meth:`find_cycle` shows it)
        """
        if self._order is None:
            remaining = self.dependency_counts()
            order = [name for name, n in remaining.items() if n == 0]
            for name in order:  # grows while it is walked: each stage once its inputs are in
                for user in self.dependents[name]:
                    remaining[user] -= 1
                    if remaining[user] == 0:
                        order.append(user)
            if len(order) != len(self.dependencies):
                raise ValueError("the stage graph has a cycle")
            self._order = order
        return list(self._order)

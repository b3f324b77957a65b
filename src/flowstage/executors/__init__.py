"""The built-in executors, each a plugin of the ``flowstage.plugins`` entry-point group.

The entry points name the light plugin objects below, not the executor modules: an
executor's module (and its engine) is imported only when that executor is used, so
every other command starts fast. Third-party plugins can register the same way,
``registry.add("package.module:Class", name="mine")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstage.core.plugin_manager import hookimpl

if TYPE_CHECKING:
    from flowstage.core.registry import Registry


class ExecutorPlugin:
    """Registers one executor class by its import string."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target

    @hookimpl
    def flowstage_register_executors(self, registry: Registry[Any]) -> None:
        registry.add(self.target, name=self.name)

    def __repr__(self) -> str:
        return f"ExecutorPlugin({self.name!r}, {self.target!r})"


# Not named like the submodules: importing flowstage.executors.local would replace them.
local_plugin = ExecutorPlugin("local", "flowstage.executors.local:LocalExecutor")
dask_plugin = ExecutorPlugin("dask", "flowstage.executors.dask.executor:DaskExecutor")
ray_plugin = ExecutorPlugin("ray", "flowstage.executors.ray.executor:RayExecutor")

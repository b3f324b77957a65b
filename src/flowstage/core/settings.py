"""Settings: ``$FLOWSTAGE_HOME/settings.yaml``, overridden by ``FLOWSTAGE__*`` variables.

``FLOWSTAGE__EXECUTOR__NAME=dask`` sets ``executor.name``: ``__`` separates nesting
levels, and values are read as YAML scalars (``true``, ``2``, ``null``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flowstage.core.appdir import (
    ENV_PREFIX,
    app_dir,
    deep_merge,
    disabled_plugins,
    env_overrides,
    read_settings_file,
    settings_path,
    split_names,
)
from flowstage.core.errors import UserError
from flowstage.core.units import parse_duration, parse_memory

# appdir's names are re-exported: settings users import them from here
__all__ = [
    "ENV_PREFIX",
    "ExecutorSettings",
    "ServiceSettings",
    "Settings",
    "StoreSettings",
    "app_dir",
    "deep_merge",
    "disabled_plugins",
    "env_overrides",
    "load_settings",
    "read_settings_file",
    "settings_path",
    "split_names",
]


class ExecutorSettings(BaseModel):
    """``executor:``: the default executor's ``name`` and its options."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    name: str = "local"

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, **(self.model_extra or {})}


class PluginSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    disabled: list[str] = Field(default_factory=list)

    @field_validator("disabled", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return split_names(value)


class ArtifactSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ObjectStoreSettings(BaseModel):
    """``object_store:``: how ``strategy="fallback"`` chooses between the tiers."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    #: objects whose pickled size is above this go to artifacts instead of cluster memory
    memory_size_limit: int = 512 * 1024 * 1024

    @field_validator("memory_size_limit", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_memory(value)


class StoreSettings(BaseModel):
    """``store:``: the SQLite store of applied resources and run history."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    #: how long a write waits for another process's write to finish
    busy_timeout: float = 30.0
    #: results whose JSON is at most this big are kept in the run row, bigger ones are
    #: pickled into a file under ``<app dir>/results``
    max_inline_result: int = 64 * 1024
    #: results bigger than this (pickled) are not kept: the run notes their size
    max_result_size: int = 256 * 1024 * 1024
    #: how often a running process marks its runs alive and saves their progress
    heartbeat_interval: float = 2.0
    #: ended runs older than this are deleted with their files by ``flowstage runs prune``
    #: (without options) and by the service; None keeps every run
    run_retention: float | None = None
    #: keep finished stages' outputs of runs that succeed too (for ``runs retry``); runs
    #: that fail or are cancelled always keep them
    keep_outputs: bool = False

    @field_validator("busy_timeout", "heartbeat_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("run_retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("max_inline_result", "max_result_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_memory(value)


class ServiceSettings(BaseModel):
    """``service:``: ``flowstage serve`` and the CLI commands that talk to a service."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    #: the address ``flowstage serve`` binds (another than loopback needs ``api_token``)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: when set, every request needs ``Authorization: Bearer <api_token>``
    api_token: str | None = None
    #: how long a login to the dashboard lasts
    session_max_age: float = Field(default=12 * 3600, gt=0)
    #: runs executing at once; more wait in the queue as ``pending``
    max_concurrent_runs: int = Field(default=8, ge=1)
    #: on SIGTERM/SIGINT, how long running runs may go on before they are cancelled
    drain_timeout: float = 30.0
    #: the largest request body accepted
    max_body_size: int = 10 * 1024 * 1024
    #: the service that ``run``, ``get``, ``apply``, ``delete`` and ``runs`` talk to
    #: (``--server``); unset: they work on the local app directory
    url: str | None = None

    @field_validator("drain_timeout", "session_max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("max_body_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_memory(value)


class Settings(BaseModel):
    """The effective settings of this process."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    object_store: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    debug: bool = False


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the file, then the environment.

    :raises UserError: the settings file is not valid (naming the file and key)
    """
    path = settings_path()
    data = read_settings_file(path) if path.exists() else {}
    data = deep_merge(data, env_overrides(os.environ if environ is None else environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(p) for p in error["loc"])
            problems.append(
                f"{path} (or {ENV_PREFIX}{key.upper().replace('.', '__')}): "
                f"key {key!r}: {error['msg']}"
            )
        raise UserError("\n".join(problems)) from None

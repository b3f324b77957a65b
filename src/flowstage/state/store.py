"""The store of an app directory: applied resources (workflows, configs) and, through
:class:`~flowstage.state.history.RunHistory`, the run history."""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

from flowstage.core.errors import StoreError
from flowstage.core.settings import (
    StoreSettings,
    app_dir,
    load_settings,
    read_settings_file,
    settings_path,
)
from flowstage.state.database import DB_NAME
from flowstage.state.history import RunHistory, _utcnow

if TYPE_CHECKING:
    import sqlite3

    from flowstage.core.models import ConfigResource

__all__ = ["Store", "StoreError", "get_store"]


class Store(RunHistory):
    """The SQLite store of one app directory: resources and runs."""

    # resources ---------------------------------------------------------------------

    def _bump_generation(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('resources', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def put_resources(self, items: list[dict[str, Any]]) -> list[str]:
        """Create or update resources, all in one transaction.

        :param items: ``{kind, name, document, annotations, source}`` each
        :returns: ``created``, ``updated`` or ``unchanged`` for each item
        """
        outcomes = []
        stamp = _utcnow()
        with self.write() as conn:
            for item in items:
                document = json.dumps(item["document"], sort_keys=True, default=str)
                annotations = json.dumps(item.get("annotations") or {}, sort_keys=True, default=str)
                row = conn.execute(
                    "SELECT document, source FROM resources WHERE kind = ? AND name = ?",
                    (item["kind"], item["name"]),
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO resources "
                        "(kind, name, document, annotations, source, version, "
                        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                        (
                            item["kind"],
                            item["name"],
                            document,
                            annotations,
                            item.get("source"),
                            stamp,
                            stamp,
                        ),
                    )
                    outcomes.append("created")
                elif row[0] == document:
                    if row[1] != item.get("source"):
                        conn.execute(
                            "UPDATE resources SET source = ? WHERE kind = ? AND name = ?",
                            (item.get("source"), item["kind"], item["name"]),
                        )
                    outcomes.append("unchanged")
                else:
                    conn.execute(
                        "UPDATE resources SET document = ?, annotations = ?, source = ?, "
                        "version = version + 1, updated_at = ? WHERE kind = ? AND name = ?",
                        (
                            document,
                            annotations,
                            item.get("source"),
                            stamp,
                            item["kind"],
                            item["name"],
                        ),
                    )
                    outcomes.append("updated")
            if any(o != "unchanged" for o in outcomes):
                self._bump_generation(conn)
        return outcomes

    def delete_resources(self, keys: list[tuple[str, str]]) -> list[bool]:
        """Delete ``(kind, name)`` resources in one transaction; whether each existed."""
        found = []
        with self.write() as conn:
            for kind, name in keys:
                cursor = conn.execute(
                    "DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name)
                )
                found.append(cursor.rowcount > 0)
            if any(found):
                self._bump_generation(conn)
        return found

    _RESOURCE_COLUMNS = "kind, name, document, annotations, source, version, created_at, updated_at"

    def _resource(self, row: tuple[Any, ...]) -> dict[str, Any]:
        kind, name, document, annotations, source, version, created, updated = row
        return {
            "kind": kind,
            "name": name,
            "document": json.loads(document),
            "annotations": json.loads(annotations),
            "source": source,
            "version": version,
            "created_at": created,
            "updated_at": updated,
        }

    def get_resource(self, kind: str, name: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        rows = self.query(
            f"SELECT {self._RESOURCE_COLUMNS} FROM resources WHERE kind = ? AND name = ?",
            (kind, name),
        )
        return self._resource(rows[0]) if rows else None

    def list_resources(self, kind: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = self.query(
            f"SELECT {self._RESOURCE_COLUMNS} FROM resources WHERE kind = ? ORDER BY name", (kind,)
        )
        return [self._resource(r) for r in rows]

    def configs(self) -> list[ConfigResource]:
        """Every applied config, in name order (parsed once per change of the resources)."""
        if not self.path.exists():
            return []
        rows = self.query("SELECT value FROM meta WHERE key = 'resources'")
        generation = rows[0][0] if rows else None
        if generation != self._configs[0]:
            # lazy: keeps `flowstage --help` fast (it imports this module)
            from flowstage.core.models import ConfigResource

            parsed = [
                ConfigResource.model_validate(r["document"]) for r in self.list_resources("config")
            ]
            self._configs = (generation, parsed)
        return self._configs[1]


# -- one store per app directory and settings ---------------------------------------------

_stores: dict[tuple[Any, ...], Store] = {}
#: the variables that can change the store settings (looked up one by one: walking the
#: whole environment on every run would cost more than recording the run)
_STORE_ENV = (
    "FLOWSTAGE__STORE",
    *(f"FLOWSTAGE__STORE__{f.upper()}" for f in StoreSettings.model_fields),
)
_stores_lock = threading.Lock()


def _settings_file(home: str | None) -> str:
    cached = _settings_files.get(home)
    if cached is None:
        cached = _settings_files[home] = str(app_dir() / "settings.yaml")
    return cached


_settings_files: dict[str | None, str] = {}


def get_store() -> Store:
    """The store of the current app directory (``FLOWSTAGE_HOME``), with its settings."""
    # called twice per run: keep it to a stat and a few lookups
    environ = os.environ
    home = environ.get("FLOWSTAGE_HOME")
    try:
        stat = os.stat(_settings_file(home))
        signature: Any = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        signature = None
    key = (home, signature, *(environ.get(name) for name in _STORE_ENV))
    store = _stores.get(key)
    if store is None:
        settings = _store_settings(signature is not None, any(v is not None for v in key[2:]))
        with _stores_lock:
            store = _stores.get(key)
            if store is None:
                if len(_stores) >= 16:  # tests switch FLOWSTAGE_HOME often: forget old stores
                    _stores.pop(next(iter(_stores)))
                store = _stores[key] = Store(app_dir() / DB_NAME, settings)
    return store


def _store_settings(has_file: bool, has_env: bool) -> StoreSettings:
    """``store:`` settings; the defaults without validating the whole settings file when
    neither the file nor the environment sets any (``flowstage get runs`` starts faster)."""

    if has_env or (has_file and "store" in read_settings_file(settings_path())):
        return load_settings().store
    return StoreSettings.model_construct()

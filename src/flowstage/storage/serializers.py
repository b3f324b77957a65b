"""How artifact values are written to files: cloudpickle, JSON, Parquet, Arrow, and
the serializers users register."""

from __future__ import annotations

import json
from typing import Any, BinaryIO, ClassVar

from flowstage.core.errors import ObjectStoreError
from flowstage.storage.pickling import type_name


class Serializer:
    """How an object becomes a file. Subclass, set ``name`` and ``extension``, and
    :func:`register_serializer` it in every process that reads or writes it."""

    name: ClassVar[str] = ""
    extension: ClassVar[str] = "bin"

    def dump(self, value: Any, file: BinaryIO) -> None:
        """Write ``value`` to the open binary ``file``."""
        raise NotImplementedError

    def load(self, file: BinaryIO) -> Any:
        """Read a value back from the open binary ``file``."""
        raise NotImplementedError


class CloudpickleSerializer(Serializer):
    """The default: any picklable object, closures and classes included."""

    name = "cloudpickle"
    extension = "pkl"

    def dump(self, value: Any, file: BinaryIO) -> None:
        # lazy: cloudpickle is needed only for what plain pickle refuses
        import cloudpickle

        cloudpickle.dump(value, file, protocol=5)

    def load(self, file: BinaryIO) -> Any:
        import pickle

        return pickle.load(file)


class JsonSerializer(Serializer):
    """Plain data, readable by any tool."""

    name = "json"
    extension = "json"

    def dump(self, value: Any, file: BinaryIO) -> None:
        file.write(json.dumps(value).encode())

    def load(self, file: BinaryIO) -> Any:
        return json.loads(file.read())


class _ArrowBase(Serializer):
    """pandas DataFrames and pyarrow Tables (a DataFrame comes back as a DataFrame)."""

    @staticmethod
    def _table(value: Any) -> Any:
        # lazy: pyarrow is optional and heavy; only parquet needs it
        import pyarrow as pa

        if isinstance(value, pa.Table):
            return value
        if type(value).__module__.startswith("pandas"):
            return pa.Table.from_pandas(value)
        raise TypeError(
            f"the parquet and arrow serializers write pandas DataFrames or pyarrow Tables, "
            f"not {type_name(value)}"
        )

    @staticmethod
    def _value(table: Any) -> Any:
        return table.to_pandas() if table.schema.pandas_metadata else table


class ParquetSerializer(_ArrowBase):
    name = "parquet"
    extension = "parquet"

    def dump(self, value: Any, file: BinaryIO) -> None:
        # lazy: pyarrow is optional and heavy; only parquet needs it
        import pyarrow.parquet as pq

        pq.write_table(self._table(value), file)

    def load(self, file: BinaryIO) -> Any:
        # lazy: pyarrow is optional and heavy; only parquet needs it
        import pyarrow.parquet as pq

        return self._value(pq.read_table(file))


class ArrowSerializer(_ArrowBase):
    """Arrow IPC files: fast to write and to read, larger than Parquet."""

    name = "arrow"
    extension = "arrow"

    def dump(self, value: Any, file: BinaryIO) -> None:
        # lazy: pyarrow is optional and heavy; only parquet needs it
        import pyarrow as pa

        table = self._table(value)
        with pa.ipc.new_file(file, table.schema) as writer:
            writer.write_table(table)

    def load(self, file: BinaryIO) -> Any:
        # lazy: pyarrow is optional and heavy; only parquet needs it
        import pyarrow as pa

        return self._value(pa.ipc.open_file(file).read_all())


_serializers: dict[str, Serializer] = {
    s.name: s
    for s in (CloudpickleSerializer(), JsonSerializer(), ParquetSerializer(), ArrowSerializer())
}


def register_serializer(serializer: Serializer, *, replace: bool = False) -> Serializer:
    """Make ``serializer`` usable by name in this process.

    :raises ObjectStoreError: another serializer has that name (unless ``replace``)
    """
    if not serializer.name:
        raise ObjectStoreError(f"serializer {serializer!r} has no name")
    known = _serializers.get(serializer.name)
    if (
        known is not None
        and known is not serializer
        and not replace
        and type(known) is not type(serializer)
    ):
        raise ObjectStoreError(
            f"a serializer named {serializer.name!r} is already registered ({known!r})"
        )
    _serializers[serializer.name] = serializer
    return serializer


def get_serializer(spec: str | Serializer | None) -> Serializer:
    """A serializer by name (``None``: cloudpickle) or an instance, registering it."""
    if spec is None:
        return _serializers["cloudpickle"]
    if isinstance(spec, Serializer):
        return register_serializer(spec)
    found = _serializers.get(spec)
    if found is None:
        msg = (
            f"unknown serializer {spec!r} (registered: {', '.join(sorted(_serializers))}; "
            f"custom ones need register_serializer() in every process that uses them)"
        )
        raise ObjectStoreError(msg)
    return found

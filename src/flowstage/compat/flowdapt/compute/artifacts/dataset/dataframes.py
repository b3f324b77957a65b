"""``flowdapt.compute.artifacts.dataset.dataframes``: a pandas DataFrame in an artifact.

pandas (and pyarrow for parquet) are optional: imported when a hook runs.
"""

from __future__ import annotations

import io
from typing import Any

from flowstage.compat.flowdapt.compute.artifacts.misc import LoadHook, SaveHook, _checked
from flowstage.storage.artifacts import Artifact

FORMATS = ("parquet", "csv", "json")


def _format(format: str) -> str:
    if format not in FORMATS:
        msg = f"dataframe format {format!r} is not one of: {', '.join(FORMATS)}"
        raise ValueError(msg)
    return format


def dataframe_to_artifact(format: str = "parquet", name: str = "file") -> SaveHook:
    """Write a DataFrame to ``<name>.<format>``."""
    fmt = _format(format)

    def save(artifact: Artifact, value: Any) -> None:
        buffer = io.BytesIO()
        if fmt == "parquet":
            value.to_parquet(buffer)
        elif fmt == "csv":
            value.to_csv(buffer, index=False)
        else:
            value.to_json(buffer, orient="records", date_format="iso")
        artifact.set_meta("value_type", f"dataframe/{fmt}")
        artifact.write(f"{name}.{fmt}", buffer.getvalue())

    return save


def dataframe_from_artifact(format: str = "parquet", name: str = "file") -> LoadHook:
    """Read the DataFrame :func:`dataframe_to_artifact` wrote."""
    fmt = _format(format)

    def load(artifact: Artifact) -> Any:
        import pandas  # optional: only plugins that use DataFrames need it

        _checked(artifact, f"dataframe/{fmt}")
        buffer = io.BytesIO(artifact.read(f"{name}.{fmt}"))
        if fmt == "parquet":
            return pandas.read_parquet(buffer)
        if fmt == "csv":
            return pandas.read_csv(buffer)
        return pandas.read_json(buffer, orient="records")

    return load


__all__ = ["dataframe_from_artifact", "dataframe_to_artifact"]

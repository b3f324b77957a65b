"""``flowdapt.builtins.utils``: the DataFrame helpers Flowdapt plugins call.

They use only the DataFrames they are given (pandas is imported by callers, and here
only where a function needs it); column conventions as in Flowdapt: features start with
``%``, labels with ``&``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from typing import Any


def artifact_name_from_dict(values: dict[str, Any]) -> str:
    """A name usable for an artifact or object key, built from ``values`` in key order:
    ``{"city": "New York"}`` gives ``city-new_york``."""
    parts = [f"{key}-{value}" for key, value in values.items()]
    name = "_".join(parts).lower()
    return re.sub(r"[^a-z0-9_.-]+", "_", name).strip("_") or "artifact"


def get_data_gap(df: Any, tz: tzinfo = timezone.utc, date_column: str = "date") -> int:
    """Whole hours between the last ``date`` of ``df`` and now (0 if none passed)."""
    if len(df.index) == 0:
        return 0
    last = df[date_column].iloc[-1]
    last = last.to_pydatetime() if hasattr(last, "to_pydatetime") else last
    if last.tzinfo is None:
        last = last.replace(tzinfo=tz)
    hours = int((datetime.now(tz) - last).total_seconds() // 3600)
    return max(hours, 0)


def merge_dataframes(
    old: Any, new: Any, prefer_new: bool = False, date_column: str = "date"
) -> Any:
    """Rows of both, one per ``date`` (the new row wins with ``prefer_new``), by date."""
    import pandas  # optional dependency, as in every DataFrame helper

    merged = pandas.concat([old, new], axis=0, ignore_index=True)
    merged = merged.drop_duplicates(subset=[date_column], keep="last" if prefer_new else "first")
    return merged.sort_values(date_column).reset_index(drop=True)


def find_features(df: Any, prefix: str = "%") -> list[str]:
    return [c for c in df.columns if str(c).startswith(prefix)]


def find_labels(df: Any, prefix: str = "&") -> list[str]:
    return [c for c in df.columns if str(c).startswith(prefix)]


def extract_features_and_labels(
    df: Any, feature_prefix: str = "%", label_prefix: str = "&"
) -> tuple[Any, Any]:
    """``(features, labels)``: the columns starting with ``%`` and with ``&``."""
    return df[find_features(df, feature_prefix)], df[find_labels(df, label_prefix)]


def remove_none_columns(df: Any, threshold: int = 40) -> Any:
    """Drop columns with more than ``threshold`` missing values."""
    return df.loc[:, df.isna().sum() <= threshold]


def remove_rows_with_nans(df: Any) -> Any:
    return df.dropna(axis=0).reset_index(drop=True)


def shift_and_add_features(df: Any, n_shifts: int, features: Any) -> Any:
    """Add each feature shifted by 1..``n_shifts`` rows as ``<name>_shift-<i>``."""
    # lazy: pandas is optional and heavy
    import pandas

    shifted = [
        df[list(features)].shift(i).add_suffix(f"_shift-{i}") for i in range(1, n_shifts + 1)
    ]
    return pandas.concat([df, *shifted], axis=1)


__all__ = [
    "artifact_name_from_dict",
    "extract_features_and_labels",
    "find_features",
    "find_labels",
    "get_data_gap",
    "merge_dataframes",
    "remove_none_columns",
    "remove_rows_with_nans",
    "shift_and_add_features",
]

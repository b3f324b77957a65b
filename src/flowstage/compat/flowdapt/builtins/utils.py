"""``flowdapt.builtins.utils``: the DataFrame helpers Flowdapt plugins call.

Each behaves as Flowdapt's own (same arguments, same results, same quirks: a row gap
counted in the frame's own frequency, ``shift_and_add_features`` stopping one shift
short, index labels kept when rows are dropped), so a plugin's artifact names and
frames come out as they did under Flowdapt. One deliberate difference:
``merge_dataframes`` with an empty incoming frame returns the old frame, where Flowdapt
returns the tuple ``(False, 0)``. Column conventions: features start with ``%``, labels
with ``&``. pandas is imported only by the helpers that build frames (it is the
plugin's dependency, not flowstage's).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flowstage.compat.flowdapt.lib.logger import get_logger

logger = get_logger(__name__)

#: characters Flowdapt strips from artifact names (unsafe in file names)
_UNSAFE_IN_NAMES = re.compile(r'[\\/:*?"<>|]')


def find_features(df: Any, prefix: str = "%") -> list[str]:
    """The columns of ``df`` that start with ``prefix``, in column order."""
    return [c for c in df.columns if str(c).startswith(prefix)]


def find_labels(df: Any, prefix: str = "&") -> list[str]:
    """The columns of ``df`` that start with ``prefix``, in column order."""
    return [c for c in df.columns if str(c).startswith(prefix)]


def extract_features_and_labels(df: Any) -> tuple[Any, Any]:
    """``(features, labels)``: the ``%`` and the ``&`` columns of ``df`` (an empty frame
    for a kind that is missing, logged as an error as Flowdapt does)."""
    features = df.filter(items=find_features(df))
    labels = df.filter(items=find_labels(df))
    if labels.empty:
        logger.error("No labels found")
    if features.empty:
        logger.error("No features found")
    return features, labels


def dummy_pandas_df(rows: int, cols: int, withnans: bool = True) -> Any:
    """A random frame for tests: ``cols - 1`` features ``%-<i>`` and one label ``&-a``,
    values in [0, 35), those under 0.01 made NaN unless ``withnans`` is false."""
    import numpy as np  # deliberately lazy: the plugin's dependency, not flowstage's
    import pandas as pd

    df = pd.DataFrame(np.random.rand(rows, cols) * 35)
    df.columns = [*(f"%-{i}" for i in range(cols - 1)), "&-a"]
    return df.mask(df < 0.01) if withnans else df


def get_data_frequency(df: Any) -> timedelta:
    """The time between the last two ``date`` values of ``df`` (a ``pandas.Timedelta``)."""
    import pandas as pd  # deliberately lazy: the plugin's dependency, not flowstage's

    dates = df["date"]
    delta: timedelta = pd.to_timedelta(dates.iloc[-1] - dates.iloc[-2])
    return delta


def get_data_gap(df: Any, tz: tzinfo | None = None) -> int:
    """How many rows, at the frame's own frequency (:func:`get_data_frequency`), fit
    between its last ``date`` and now: the points to download to catch up.

    :param tz: the zone of the frame's naive dates (they are localized to it) and of
        "now"; ``None`` compares naive local times, as Flowdapt does
    """
    last = df.iloc[-1]["date"].tz_localize(tz)
    now = datetime.now(tz=tz)
    rows = int((now - last) / get_data_frequency(df))
    if rows > 0:
        logger.info("Gap in data", points=rows, last=str(last), now=str(now))
    else:
        logger.info("No gap in data")
    return rows


def merge_dataframes(df: Any, df_inc: Any, prefer_new: bool = True) -> Any:
    """``df`` followed by the rows of ``df_inc`` (a fresh 0..n index).

    Where the two overlap in ``date``, ``prefer_new`` keeps the incoming rows (the old
    ones from the first incoming date on are dropped); otherwise the old rows stay and
    only incoming rows after the last old date are added. A gap of more than one row
    between them is logged as a warning. An empty ``df_inc`` returns ``df``.
    """
    import pandas as pd  # deliberately lazy: the plugin's dependency, not flowstage's

    if len(df_inc.index) == 0:
        return df
    old_last = df["date"].iloc[-1]
    new_first = df_inc["date"].iloc[0]
    gap = (new_first - old_last) / get_data_frequency(df)
    if prefer_new:
        df = df[df["date"] < new_first]
    else:
        df_inc = df_inc[df_inc["date"] > old_last]
    if gap > 1:
        logger.warning("Gap in data, should redownload from scratch.")
    return pd.concat([df, df_inc], ignore_index=True)


def remove_rows_with_nans(df: Any) -> Any:
    """``df`` without the rows that have a missing value (their index labels stay)."""
    missing = df.isna().any(axis=1)
    kept = df[~missing]
    if len(kept) < len(df):
        logger.warning(f"Dropped {len(df) - len(kept)} from dataset due to NaNs")
    return kept


def remove_none_columns(df: Any, threshold: int = 40) -> Any:
    """``df`` without its columns of more than ``threshold`` missing values, and without
    its columns with no value at all."""
    before = len(df.columns)
    df = df.dropna(axis=1, thresh=len(df.index) - threshold).dropna(axis=1, how="all")
    logger.info(f"Removed {before - len(df.columns)} columns due to NaNs")
    return df


def shift_and_add_features(df: Any, shifts: int, cols: list[Any]) -> Any:
    """``df`` with ``cols`` shifted down by 1 to ``shifts - 1`` rows added, named
    ``<column>_shift-<n>`` (``shifts=1`` adds nothing, as in Flowdapt)."""
    import pandas as pd  # deliberately lazy: the plugin's dependency, not flowstage's

    for n in range(1, shifts):
        df = pd.concat((df, df[cols].shift(n).add_suffix(f"_shift-{n}")), axis=1)
    return df


def artifact_name_from_dict(d: dict[str, Any]) -> str:
    """A name for an artifact from the values of ``d`` (its keys are not used):
    the non-empty values joined by ``_``, URL-quoted, then with file-name-unsafe
    characters, ``%`` and dots removed or replaced: ``{"exchange": "binance",
    "symbol": "BTC/USDT", "interval": "1.5h"}`` gives ``binance_BTCUSDT_1_5h``."""
    name = quote("_".join(str(value) for value in d.values() if value))
    name = re.sub(r"\s+", "-", _UNSAFE_IN_NAMES.sub("", name))
    return name.replace("%", "").replace(" ", "_").replace(".", "_")


def path_from_string(s: str) -> Path:
    """``s`` as a relative path, each ``_`` a separator."""
    return Path(s.replace("_", "/"))


def string_to_uuid(s: str) -> str:
    """A UUID that ``s`` always gives (UUID 5 in the DNS namespace), as text."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, s))


__all__ = [
    "artifact_name_from_dict",
    "dummy_pandas_df",
    "extract_features_and_labels",
    "find_features",
    "find_labels",
    "get_data_frequency",
    "get_data_gap",
    "merge_dataframes",
    "path_from_string",
    "remove_none_columns",
    "remove_rows_with_nans",
    "shift_and_add_features",
    "string_to_uuid",
]

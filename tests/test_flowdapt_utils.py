"""``flowdapt.builtins.utils`` gives what Flowdapt's own helpers give (issue 15, item 1).

The expected values are worked out from Flowdapt's implementation
(``flowdapt/builtins/utils.py`` in emergentmethods/flowdapt), quirks included: plugins
find their artifacts by these names and train on these frames.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")

from flowstage.compat.flowdapt.builtins import utils  # noqa: E402 - after the pandas skip


def hourly(start: str, values: list[str], freq: str = "h") -> pd.DataFrame:
    dates = pd.date_range(start, periods=len(values), freq=freq)
    return pd.DataFrame({"date": dates, "value": values})


def test_artifact_names_are_built_from_values_as_flowdapt_builds_them() -> None:
    name = utils.artifact_name_from_dict
    assert name({"exchange": "binance", "symbol": "BTC/USDT", "interval": "1h"}) == (
        "binance_BTCUSDT_1h"
    )
    # quoted first ("New%20York"), then "%" dropped; falsy values skipped; dots become "_"
    assert name({"city": "New York", "n": 0, "skip": None, "v": 1.5}) == "New20York_1_5"
    assert name({"a": "x:y", "b": "é"}) == "x3Ay_C3A9"


def test_data_gap_counts_rows_at_the_frames_own_frequency() -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    quarter_hours = pd.DataFrame(
        {"date": pd.date_range(end=now - timedelta(hours=2, minutes=5), periods=4, freq="15min")}
    )
    assert utils.get_data_frequency(quarter_hours) == pd.Timedelta(minutes=15)
    assert utils.get_data_gap(quarter_hours, timezone.utc) == 8  # rows of 15 min, not hours
    fresh = pd.DataFrame({"date": pd.date_range(end=now, periods=3, freq="h")})
    assert utils.get_data_gap(fresh, timezone.utc) == 0


def test_data_gap_of_aware_dates_with_a_zone_raises_as_in_flowdapt() -> None:
    aware = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")})
    with pytest.raises(TypeError):
        utils.get_data_gap(aware, timezone.utc)


def test_merge_prefers_the_incoming_rows_by_default() -> None:
    old = hourly("2024-01-01 00:00", ["old"] * 5)
    new = hourly("2024-01-01 03:00", ["new"] * 4)
    merged = utils.merge_dataframes(old, new)
    assert list(merged["value"]) == ["old"] * 3 + ["new"] * 4
    assert list(merged.index) == list(range(7))
    kept = utils.merge_dataframes(old, new, prefer_new=False)
    assert list(kept["value"]) == ["old"] * 5 + ["new"] * 2
    assert list(kept["date"]) == list(pd.date_range("2024-01-01", periods=7, freq="h"))


def test_merge_warns_of_a_gap_and_returns_the_old_frame_for_nothing_new(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = hourly("2024-01-01 00:00", ["old"] * 3)
    with caplog.at_level(logging.WARNING):
        merged = utils.merge_dataframes(old, hourly("2024-01-01 06:00", ["new"]))
    assert len(merged) == 4 and "Gap in data" in caplog.text
    # Flowdapt returns (False, 0) here; the old frame is what every caller can use
    assert utils.merge_dataframes(old, old.iloc[0:0]) is old


def test_rows_with_nans_go_and_keep_their_index_labels() -> None:
    df = pd.DataFrame({"%-a": [1.0, None, 3.0, 4.0], "&-b": [1.0, 2.0, 3.0, None]})
    assert list(utils.remove_rows_with_nans(df).index) == [0, 2]
    assert utils.remove_rows_with_nans(df.fillna(0)).equals(df.fillna(0))


def test_columns_over_the_nan_threshold_and_empty_columns_go() -> None:
    rows = 50
    df = pd.DataFrame(
        {
            "full": [1.0] * rows,
            "over": [None] * 41 + [1.0] * 9,
            "at": [None] * 40 + [1.0] * 10,
        }
    )
    assert list(utils.remove_none_columns(df).columns) == ["full", "at"]
    assert list(utils.remove_none_columns(df, threshold=5).columns) == ["full"]
    # fewer rows than the threshold: only columns without any value go
    short = pd.DataFrame({"some": [1.0, None], "none": [None, None]})
    assert list(utils.remove_none_columns(short).columns) == ["some"]


def test_shifted_features_stop_one_short_of_shifts() -> None:
    df = pd.DataFrame({"%-a": [1.0, 2.0, 3.0], "&-b": [0.0, 0.0, 0.0]})
    out = utils.shift_and_add_features(df, 3, ["%-a"])
    assert list(out.columns) == ["%-a", "&-b", "%-a_shift-1", "%-a_shift-2"]
    assert out["%-a_shift-2"].tolist()[2] == 1.0
    assert list(utils.shift_and_add_features(df, 1, ["%-a"]).columns) == ["%-a", "&-b"]


def test_features_and_labels_are_split_by_prefix(caplog: pytest.LogCaptureFixture) -> None:
    df = pd.DataFrame({"date": [1], "%-x": [1], "&-y": [2], "%-z": [3]})
    features, labels = utils.extract_features_and_labels(df)
    assert list(features.columns) == ["%-x", "%-z"] and list(labels.columns) == ["&-y"]
    with caplog.at_level(logging.ERROR):
        features, labels = utils.extract_features_and_labels(df[["%-x"]])
    assert labels.empty and list(features.columns) == ["%-x"]
    assert "No labels found" in caplog.text


def test_dummy_frame_has_features_a_label_and_optional_nans() -> None:
    df = utils.dummy_pandas_df(200, 4, withnans=False)
    assert list(df.columns) == ["%-0", "%-1", "%-2", "&-a"] and df.shape == (200, 4)
    assert not df.isna().any().any() and df.max().max() < 35
    masked = utils.dummy_pandas_df(200, 4)
    assert (masked.fillna(1) >= 0.01).all().all()


def test_small_string_helpers() -> None:
    assert utils.path_from_string("binance_BTC_1h") == Path("binance/BTC/1h")
    assert utils.string_to_uuid("oslo") == str(uuid.uuid5(uuid.NAMESPACE_DNS, "oslo"))

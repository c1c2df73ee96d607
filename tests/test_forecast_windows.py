"""Forecast windows of the deep forecaster on a hand-built series (units on day d = d)."""
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from ecomlake.deep import forecast_windows as fw

START = date(2019, 10, 1)
ORIGIN = "2019-10-25"  # 24 days of history before it


@pytest.fixture(scope="module")
def series(spark):
    rows = [("category", "c", START + timedelta(days=d), d) for d in range(30)]
    rows += [("product", "p", date(2019, 10, 20) + timedelta(days=d), 1) for d in range(10)]  # too short
    daily = spark.createDataFrame(rows, "level string, series_key string, event_date date, units long")
    return fw.series_arrays(daily, ORIGIN)


def test_series_scale_uses_only_days_before_the_origin(series):
    scale = {r.series_key: r.scale for r in series.collect()}
    assert scale["c"] == pytest.approx(sum(range(24)) / 24)      # 11.5


def test_training_windows_end_before_the_origin(series):
    w = fw.windows(series, ORIGIN, history=7, horizon=3, training=True).orderBy("origin_date").collect()
    assert [r.series_key for r in w] == ["c"] * 15                 # origins at days 7..21; p is too short
    first, last = w[0], w[-1]
    assert str(first.origin_date) == "2019-10-08"
    assert [getattr(first, fw.x_name(i)) * 11.5 for i in range(7)] == pytest.approx([0, 1, 2, 3, 4, 5, 6])
    assert [getattr(first, fw.y_name(i)) * 11.5 for i in range(3)] == pytest.approx([7, 8, 9])
    assert [getattr(last, fw.y_name(i)) * 11.5 for i in range(3)] == pytest.approx([21, 22, 23])  # < day 24


def test_the_hold_out_window_and_its_seasonal_naive(series):
    (h,) = fw.windows(series, ORIGIN, history=7, horizon=3, training=False).collect()
    assert (str(h.origin_date), h.origin_dow, h.is_product) == (ORIGIN, 5, 0)   # a Friday (Sunday = 0)
    assert [getattr(h, fw.x_name(i)) * 11.5 for i in range(7)] == pytest.approx([17, 18, 19, 20, 21, 22, 23])
    assert [getattr(h, fw.y_name(i)) * 11.5 for i in range(3)] == pytest.approx([24, 25, 26])
    scored = (fw.windows(series, ORIGIN, history=7, horizon=3, training=False)
              .withColumn("forecast", F.array(F.lit(1.0), F.lit(2.0), F.lit(3.0))))
    rows = fw.explode_forecasts(scored, {"history": 7, "horizon": 3}).orderBy("forecast_date").collect()
    assert [(str(r.forecast_date), r.forecast) for r in rows] == [("2019-10-25", 1.0), ("2019-10-26", 2.0), ("2019-10-27", 3.0)]
    assert [r.seasonal_naive for r in rows] == pytest.approx([17, 18, 19])   # the same weekday a week earlier
    assert [r.actual for r in rows] == pytest.approx([24, 25, 26])

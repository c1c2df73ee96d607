"""Drift (PSI, KS on quantile bins) and daily anomalies against a trailing norm, by hand."""
import math
from datetime import date, timedelta

import pytest

from ecomlake import monitoring


def test_drift_by_hand(spark):
    # Reference 1..100: quartile edges 25, 50, 75, so the bins hold 24, 25, 25 and 26 values.
    # Today: 1..100 again plus 100 values of 80 (the top bin): shares 24, 25, 25, 126 of 200.
    reference = spark.createDataFrame([(float(v), float(v)) for v in range(1, 101)], "x double, same double")
    today = spark.createDataFrame([(float(v), float(v)) for v in range(1, 101)] + [(80.0, None)] * 100,
                                  "x double, same double")
    assert monitoring.quantile_edges(reference, ["x"], 4, relative_error=0.0) == {"x": [25.0, 50.0, 75.0]}
    got = {r.feature: r for r in monitoring.drift(reference, today, ["x", "same"], bins=4).collect()}
    r, c = [0.24, 0.25, 0.25, 0.26], [0.12, 0.125, 0.125, 0.63]
    psi = sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c))        # 0.583930
    assert got["x"].psi == pytest.approx(psi, abs=1e-5)
    assert got["x"].ks == pytest.approx(0.74 - 0.37, abs=1e-6)             # cumulative at the third edge
    assert (got["x"].reference_rows, got["x"].current_rows) == (100, 200)
    # The same values (nulls left out of both sides): nothing moved.
    assert (got["same"].psi, got["same"].ks, got["same"].current_rows) == (0.0, 0.0, 100)
    assert psi > monitoring.PSI_ALERT


def test_an_empty_bin_today_keeps_psi_finite(spark):
    reference = spark.createDataFrame([(float(v),) for v in range(1, 101)], "x double")
    shifted = spark.createDataFrame([(float(v) + 200,) for v in range(1, 101)], "x double")   # all in the top bin
    row = monitoring.drift(reference, shifted, ["x"], bins=4).first()
    expected = sum((c - r) * math.log(c / r) for r, c in zip([0.24, 0.25, 0.25, 0.26], [1e-4, 1e-4, 1e-4, 1.0]))
    assert row.psi == pytest.approx(expected, abs=1e-4) and row.ks == pytest.approx(0.74, abs=1e-6)


def test_robust_anomalies_flag_the_planted_day_only(spark):
    start = date(2019, 10, 1)
    values = [10, 12, 11] * 5 + [30, 11, 10]          # day 16 (index 15) jumps to 30
    daily = spark.createDataFrame([("rows", start + timedelta(days=i), float(v)) for i, v in enumerate(values)],
                                  "metric string, event_date date, value double")
    out = {r.event_date: r for r in monitoring.robust_anomalies(daily, ["metric"], history_days=14,
                                                                min_history=7, threshold=4.0).collect()}
    jump = out[start + timedelta(days=15)]
    # The 14 days before it (days 2-15): 4 x 10, 5 x 11, 5 x 12, median 11; the deviations are
    # 0 five times and 1 nine times: MAD 1, scale 1.4826, z = 19 / 1.4826.
    assert (jump.history_days, jump.median, jump.mad) == (14, 11.0, 1.0)
    assert jump.z == pytest.approx(19 / 1.4826, rel=1e-9) and jump.alert
    assert [d for d, r in sorted(out.items()) if r.alert] == [start + timedelta(days=15)]
    # The day after: the jump sits in its history, and the median and MAD do not move.
    after = out[start + timedelta(days=16)]
    assert (after.median, after.mad, after.alert) == (11.0, 1.0, False)
    # Too little history: no verdict, whatever the value.
    assert out[start + timedelta(days=3)].history_days == 3 and not out[start + timedelta(days=3)].alert


def test_a_constant_history_still_needs_a_real_change(spark):
    start = date(2019, 10, 1)
    values = [100.0] * 10 + [100.5, 150.0]
    daily = spark.createDataFrame([("rows", start + timedelta(days=i), v) for i, v in enumerate(values)],
                                  "metric string, event_date date, value double")
    out = [r for r in monitoring.robust_anomalies(daily, ["metric"], history_days=28, min_history=5)
           .orderBy("event_date").collect()]
    # MAD 0: the scale floor is 1 % of the median (1.0), so +0.5 gives z 0.5 and +50 gives z 50.
    assert out[10].z == pytest.approx(0.5) and not out[10].alert
    assert out[11].z == pytest.approx(50.0) and out[11].alert


def test_daily_quality_metrics_by_hand(spark):
    d1, d2 = date(2019, 10, 1), date(2019, 10, 2)
    events = spark.createDataFrame([(d1, "a", 1.0), (d1, None, 2.0), (d1, "b", None), (d1, "c", 3.0),
                                    (d2, "a", 1.0)], "event_date date, brand string, price double")
    quarantine = spark.createDataFrame([(d1, "negative_price"), (d2, "negative_price"), (d2, "duplicate"),
                                        (None, "unparseable_event_time")], "event_date date, reason string")
    got = {(r.event_date, r.metric): r.value for r in
           monitoring.daily_quality_metrics(events, quarantine, ["brand", "price"]).collect()}
    assert got == {(d1, "rows"): 4.0, (d1, "null_share:brand"): 0.25, (d1, "null_share:price"): 0.25,
                   (d2, "rows"): 1.0, (d2, "null_share:brand"): 0.0, (d2, "null_share:price"): 0.0,
                   (d1, "quarantine_share:negative_price"): 1 / 5,
                   (d2, "quarantine_share:negative_price"): 1 / 3, (d2, "quarantine_share:duplicate"): 1 / 3}


def test_the_price_index_ignores_what_shoppers_look_at(spark):
    """Product 1 costs 10, product 2 costs 100. On day 3 shoppers look mostly at product 2: the
    median price jumps, the index (each product against its own earlier price) stays 1. On day 4
    both prices rise by half: the index is 1.5."""
    rows = []
    for day, (views_1, views_2, factor) in enumerate([(3, 1, 1.0), (3, 1, 1.0), (1, 3, 1.0), (3, 1, 1.5)], start=1):
        d = date(2019, 10, day)
        rows += [(d, 1, "a", 10.0 * factor)] * views_1 + [(d, 2, "a", 100.0 * factor)] * views_2
    events = spark.createDataFrame(rows, "event_date date, product_id long, category_code string, price double")
    quarantine = spark.createDataFrame([], "event_date date, reason string")
    got = {(r.event_date.day, r.metric): r.value for r in monitoring.daily_quality_metrics(
        events, quarantine, [], "category_code", "price", history_days=28).collect()
        if r.metric.startswith(("median_price", "price_index"))}
    assert [got[(d, "median_price")] for d in (1, 2, 3, 4)] == [10.0, 10.0, 100.0, 15.0]
    assert [got.get((d, "price_index")) for d in (1, 2, 3, 4)] == [None, 1.0, 1.0, 1.5]
    assert got[(4, "price_index:a")] == 1.5


def test_planted_detection_scores_jumps_per_day_and_ramps_once():
    changes = [{"kind": "surge", "dates": ["d2", "d3"], "columns": ["*"], "detect": "each"},
               {"kind": "ramp", "dates": ["d4", "d5"], "columns": ["event_type"], "detect": "any"}]
    alerts = [("d2", "*"), ("d3", "*"), ("d3", "price"), ("d5", "event_type"), ("d1", "brand")]
    got = monitoring.planted_detection(alerts, changes, ["d1", "d2", "d3", "d4", "d5", "d6"])
    assert [(c["kind"], c["days_flagged"], c["found"]) for c in got["changes"]] == [("surge", 2, True),
                                                                                 ("ramp", 1, True)]
    assert (got["changes_found"], got["false_alerts"], got["false_alert_list"]) == (2, 2, ["d1 brand", "d3 price"])
    assert (got["quiet_days"], got["quiet_days_with_false_alert"]) == (2, 1)      # d1 and d6; d1 had one
    missed = monitoring.planted_detection([("d2", "*")], changes[:1], ["d1", "d2", "d3"])
    assert missed["changes"][0]["found"] is False and missed["changes_found"] == 0

import numpy as np
import pandas as pd
import pytest
from datetime import date

from ecomlake.models import pricing


def test_report_on_an_empty_lake_skips_every_section_with_a_note(spark, tmp_path):
    from ecomlake.report import SECTION_TITLES, build_report

    page, sections = build_report(spark, str(tmp_path / "empty-lake"))
    assert [s.title for s in sections] == SECTION_TITLES
    assert all(s.skipped for s in sections) and page.count("Skipped:") == len(SECTION_TITLES)
    assert "run `sessionize`" in page and "<img" not in page


def test_brand_regression_recovers_planted_elasticity_and_promotion_lift():
    rng = np.random.default_rng(3)
    n = 3000
    store = rng.integers(0, 30, n)
    log_price = rng.normal(-3.0, 0.15, n)
    log_other = rng.normal(-3.1, 0.1, n)
    deal = (rng.random(n) < 0.3).astype(float)
    feature = (rng.random(n) < 0.1).astype(float)
    store_effect = rng.normal(0, 0.5, 30)[store]
    log_units = 2 + store_effect - 2.5 * log_price + 1.2 * log_other + np.log(1.3) * deal + np.log(2.0) * feature \
        + rng.normal(0, 0.1, n)
    frame = pd.DataFrame({"store": store, "brand": 1, "brand_name": "planted", "log_units": log_units,
                          "log_price": log_price, "log_other_price": log_other, "deal": deal, "feature": feature})
    fit = pricing._fit_brand(frame).iloc[0]
    assert fit["elasticity"] == pytest.approx(-2.5, abs=0.05)
    assert fit["cross_elasticity"] == pytest.approx(1.2, abs=0.08)
    assert fit["deal_lift"] == pytest.approx(0.3, abs=0.02)
    assert fit["feature_lift"] == pytest.approx(1.0, abs=0.05)
    assert fit["stores"] == 30 and fit["rows"] == n


def test_inventory_suggestion_by_hand(spark):
    forecasts = spark.createDataFrame(
        [("p1", date(2019, 12, 1 + d), 2.0) for d in range(5)], "series_key string, forecast_date date, forecast double")
    history = spark.createDataFrame(
        [("p1", date(2019, 11, 27), 1.0), ("p1", date(2019, 11, 28), 3.0), ("p1", date(2019, 11, 29), 1.0),
         ("p1", date(2019, 11, 30), 3.0), ("p1", date(2019, 10, 1), 100.0)],   # before the 28-day window
        "series_key string, event_date date, units double")
    row = pricing.inventory_suggestions(forecasts, history, lead_time_days=4, service_level=0.95).first()
    # demand over 4 days = 8; std of (1, 3, 1, 3) = 1.1547; safety = 1.6449 * 1.1547 * 2 = 3.80
    assert (row.product_id, row.lead_time_demand, row.recent_daily_std) == ("p1", 8.0, 1.155)
    assert row.safety_stock == pytest.approx(3.80, abs=0.01)
    assert row.reorder_point == 12

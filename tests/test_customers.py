"""The customer master end to end: generated with planted dirty rows, ingested with quarantine and
reconciliation, pseudonymised in silver with the events' key, rebuilt only when it changed, erased."""
import html
import json

import pytest
from pyspark.sql import functions as F

from ecomlake import generate as gen
from ecomlake import lake, tables

pytestmark = pytest.mark.e2e


def test_customers_ingest_quarantine_pseudonymise_and_forget(spark, make_config, tmp_path):
    from ecomlake.jobs import clean, forget, pipeline

    config = make_config("generate.regions=true", "generate.dirty_fraction=0.05")
    root = config["lake_root"]
    pipeline.run(spark, config, events=3000, seed=4)
    truth = json.loads(lake.read_text_file(spark, f"{config['generate']['output']}/_ground_truth/generator.json"))
    regions = truth["regions"]
    bronze = lake.read_table(spark, root, tables.BRONZE_CUSTOMERS)
    quarantine = lake.read_table(spark, root, tables.QUARANTINE_CUSTOMERS)
    # Every line is in bronze or in quarantine, and the quarantine has exactly the planted reasons.
    assert bronze.count() + quarantine.count() == regions["lines"]
    reasons = {r.reason: r["count"] for r in quarantine.groupBy("reason").count().collect()}
    assert reasons == {k: v for k, v in regions["expected_quarantine"].items() if v}
    assert bronze.count() == gen.GeneratorParams(events=3000).users - sum(
        n for kind, n in regions["dirty_rows"].items() if kind != "duplicate_customer")

    # silver/customers: user_key, never user_id, with the events' key (every buyer's key is known).
    silver = lake.read_table(spark, root, tables.SILVER_CUSTOMERS)
    customers = silver.count()
    assert "user_id" not in silver.columns and customers == bronze.count()
    events = lake.read_table(spark, root, tables.SILVER_EVENTS).select("user_key").distinct()
    matched = events.join(silver, "user_key").count()
    assert matched > 0.85 * events.count()          # the others' customer line was quarantined
    assert silver.where(~F.col("region").isin(*[r[0] for r in gen.REGIONS])).count() == 0

    # Nothing new: clean does not rebuild it.
    version = lake.table_version(spark, root, tables.SILVER_CUSTOMERS)
    clean.run(spark, config)
    assert lake.table_version(spark, root, tables.SILVER_CUSTOMERS) == version

    # Erasure reaches the customer master in bronze (raw id) and silver (user_key).
    gone = bronze.orderBy("user_id").first().user_id
    ids = tmp_path / "forget.txt"
    ids.write_text(f"{gone}\n")
    forget.run(spark, config, str(ids))
    assert lake.read_table(spark, root, tables.BRONZE_CUSTOMERS).where(F.col("user_id") == gone).count() == 0
    assert lake.read_table(spark, root, tables.SILVER_CUSTOMERS).count() == customers - 1
    # ... and the next clean, which rebuilds silver/customers from the smaller bronze, keeps them out.
    clean.run(spark, config)
    assert lake.read_table(spark, root, tables.SILVER_CUSTOMERS).count() == customers - 1


def test_regional_demand_by_hand_and_the_planted_promotion_week(spark, make_config):
    """Two regions, 30 days: 10 sessions a day each, 1 of them buys, except in south's promotion
    week (days 20-26), when 5 do; a user without a customer record is 'unknown'. A region's last 7
    days convert k of 70 sessions against 7 of 70 before; with no spread in that history the scale
    is the binomial floor sqrt(0.1 x 0.9 / 70) = 0.0359, so a week alerts (z > 4) from k = 18 on:
    k = 7 + 4 x (promotion days in the week), the weeks ending on days 22 to 29.

    The forecasts (one backtest window, days 23-29, and the 7 days from as-of): north sells 1 a day,
    south 1 a day and 5 in the promotion week. Seasonal naive repeats days 16-22 on days 23-29:
    south's errors 4 x 4 + 3 x 4 = 28 on 23 units, north's 0 on 7: WAPE 28 / 30 at every level
    (the total repeats 2, 2, 2, 2, 6, 6, 6 against 6, 6, 6, 6, 2, 2, 2). Top-down splits the total
    by the 28 days before as-of (days 2-29): north 28 units of 84, so a third."""
    from datetime import date, timedelta

    from ecomlake.jobs import regional as job

    config = make_config("monitor.min_history_days=10", "regional.backtest_folds=1", "train.forecast_gbt_max_iter=5")
    root = config["lake_root"]
    start, promo = date(2019, 10, 1), range(20, 27)
    rows = []
    for i in range(30):
        day = start + timedelta(days=i)
        for region in ("north", "south"):
            buyers = 5 if (region == "south" and i in promo) else 1
            for s in range(10):
                session = f"{region}-{i}-{s}"
                rows.append((day, "view", 10.0, f"{region}{s}", session, "electronics.phone"))
                if s < buyers:
                    rows.append((day, "purchase", 10.0, f"{region}{s}", session, "electronics.phone"))
        rows.append((day, "view", 5.0, "stranger", f"x-{i}", None))
    events = (spark.createDataFrame(rows, "event_date date, event_type string, price double, user_key string, "
                                          "user_session string, category_code string")
              .withColumns({"event_time": F.col("event_date").cast("timestamp"), "product_id": F.lit(1).cast("long")}))
    lake.overwrite_table(events, root, tables.SILVER_EVENTS, partition_by=["event_date"])
    customers = spark.createDataFrame([(f"{r}{s}", r, 54.0 if r == "north" else 50.0, 19.0)
                                       for r in ("north", "south") for s in range(10)],
                                      "user_key string, region string, latitude double, longitude double")
    lake.overwrite_table(customers, root, tables.SILVER_CUSTOMERS)
    out = job.run(spark, config, "2019-10-31")
    demand = {(r.region, r.event_date, r.top_category): r for r in
              lake.read_table(spark, root, tables.GOLD_REGIONAL_DEMAND).collect()}
    south = demand[("south", start + timedelta(days=21), "electronics")]
    assert (south.units, south.revenue, south.sessions, south.buying_sessions, south.conversion) == (
        5, 50.0, 10, 5, 0.5)
    stranger = demand[("unknown", start + timedelta(days=3), "unknown")]
    assert (stranger.sessions, stranger.units) == (1, 0)
    daily = lake.read_table(spark, root, tables.GOLD_REGIONAL_DAILY)
    week = daily.where((F.col("region") == "south") & (F.col("event_date") == start + timedelta(days=25))).first()
    assert (week.sessions_7d, week.conversion_7d) == (70, round(31 / 70, 6))   # days 19-25: 6 of promotion
    assert [(r.region, r.event_date) for r in daily.where("alert").orderBy("event_date").collect()] == [
        ("south", start + timedelta(days=d)) for d in range(22, 30)]
    assert out["regional_alerts"] == 8 and out["against_planted"] is None

    # Forecasts: 9 nodes (total; north, south, unknown; electronics, unknown; 3 bottom series) x 7 days.
    forecasts = lake.read_table(spark, root, tables.GOLD_REGIONAL_FORECASTS)
    assert out["forecast_rows"] == forecasts.count() == 9 * 7
    by_node = {(r.level, r.region, r.top_category, r.event_date): r for r in forecasts.collect()}
    for i in range(7):
        day = date(2019, 10, 31) + timedelta(days=i)
        total = by_node[("total", "*", "*", day)]
        for method in ("forecast", "bottom_up", "top_down", "seasonal_naive"):
            for level in ("region", "category", "region_category"):   # every level adds up to the total
                parts = sum(r[method] for (lv, _, _, d), r in by_node.items() if lv == level and d == day)
                assert parts == pytest.approx(total[method], abs=1e-9), (method, level, day)
        assert by_node[("region_category", "north", "electronics", day)].top_down == pytest.approx(total.top_down / 3)
        assert by_node[("region_category", "unknown", "unknown", day)].top_down == 0.0
        assert total.top_down == pytest.approx(total.base)
    # From a date past the data the model would read the missing days as no sales: no forecast.
    assert job.forecast(spark, config, "2019-11-05", {}) is None
    model_runs = {r.model: r for r in lake.read_table(spark, root, tables.GOLD_MODEL_RUNS)
                  .where(F.col("task") == "regional_forecast").collect()}
    assert sorted(model_runs) == sorted(["mint_wls", "bottom_up", "top_down", "base", "seasonal_naive"])
    assert not model_runs["mint_wls"].is_baseline and model_runs["top_down"].is_baseline
    naive = model_runs["seasonal_naive"].metrics
    assert [naive[f"{level}_wape"] for level in ("total", "region", "category", "region_category")] == \
        pytest.approx([28 / 30] * 4)
    again = job.run(spark, {**config, "regional": {**config["regional"], "forecast_days": 0}}, "2019-10-31")
    # replaced, not added
    assert again["demand_rows"] == out["demand_rows"] == len(demand)

    # The report: a heatmap, a map, the regions and their alerts, and what to do.
    from ecomlake.report import build_report

    page, sections = build_report(spark, root)
    section = {s.key: s for s in sections}["regions"]
    assert section.skipped is None and section.images == 2
    assert html.escape("'south' converted above its usual rate in the weeks ending 2019-10-23 .. 2019-10-30: find "
                       "out what ran there and repeat it.") in page
    assert "Forecast error per level in the rolling-origin backtest" in page
    assert html.escape("2019-10-31 .. 2019-11-06: '") in page and "place stock by these regional forecasts" in page

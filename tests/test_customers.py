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
    k = 7 + 4 x (promotion days in the week), the weeks ending on days 22 to 29."""
    from datetime import date, timedelta

    from ecomlake.jobs import regional as job

    config = make_config("monitor.min_history_days=10")
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
    events = spark.createDataFrame(rows, "event_date date, event_type string, price double, user_key string, "
                                         "user_session string, category_code string")
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
    again = job.run(spark, config, "2019-10-31")     # replaced, not added
    assert again["demand_rows"] == out["demand_rows"] == len(demand)

    # The report: a heatmap, a map, the regions and their alerts, and what to do.
    from ecomlake.report import build_report

    page, sections = build_report(spark, root)
    section = {s.key: s for s in sections}["regions"]
    assert section.skipped is None and section.images == 2
    assert html.escape("'south' converted above its usual rate in the weeks ending 2019-10-23 .. 2019-10-30: find "
                       "out what ran there and repeat it.") in page

"""regional: demand by region over time, and days a region departs from its own norm.

  ./spark-submit.sh regional --as-of 2019-12-01

Reads silver/events before --as-of and silver/customers (`ingest --source customers`, then
`clean`). Writes, each replaced whole on every run (a re-run gives the same tables):
  gold/regional_demand  region x day x top category: units, revenue, sessions, buying sessions,
                        conversion (users without a customer record: region 'unknown')
  gold/regional_daily   region x day: the same over every category, and the conversion of the
                        region's last 7 days against its 7-day windows of the 28 days before
                        (median and MAD: z and alert, as `monitor` does) - a regional promotion
                        week or outage shows here
  gold/regional_elasticity  per region and category the price elasticity (conversion on price,
                        log-log) next to the category's over all regions; gold/model_runs task
                        regional_elasticity: each region's response relative to all regions'
  gold/regional_forecasts  (regional.forecast_days > 0, default 7) the next days' units per region,
                        category, region x category and in total, replaced per as_of_date:
                        `forecast` (MinT-reconciled: the regions and categories add up to the
                        total) next to bottom_up, top_down (the total split by historic shares),
                        the incoherent base forecasts and seasonal naive
  gold/model_runs       task regional_forecast: each method's WAPE per level in a rolling-origin
                        backtest (regional.backtest_folds weekly windows before --as-of), and per
                        region on weekdays and weekends (ecomlake.models.hierarchical says how)
When the lake's data was generated with generate.regions, the alerts are measured against the
planted promotion week (log line and ops/job_runs).
"""
from __future__ import annotations

import functools
import json
import logging
import sys
from datetime import date, datetime, timedelta, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, monitoring, ops, regional, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import InputError
from ecomlake.models import direct_forecast, elasticity, hierarchical

log = logging.getLogger(__name__)
JOB = "regional"
WEEK = 7


def run(spark: SparkSession, config: dict, as_of: str) -> dict:
    root, settings = config["lake_root"], config["monitor"]
    as_of = parse_as_of(as_of)
    if not lake.table_exists(spark, tables.SILVER_CUSTOMERS.path(root)):
        raise InputError("silver/customers is missing: run `ingest --source customers --input FILE` and then "
                         "`clean` first (`generate --conf generate.regions=true` writes a customer master)")
    run_id, started = ops.new_run_id(JOB), datetime.now(timezone.utc)
    versions = runs.input_versions(spark, root, [tables.SILVER_EVENTS, tables.SILVER_CUSTOMERS])
    events = lake.read_table(spark, root, tables.SILVER_EVENTS).where(F.col("event_date") < F.lit(as_of).cast("date"))
    located = regional.events_with_region(events, lake.read_table(spark, root, tables.SILVER_CUSTOMERS)).persist(
        StorageLevel.MEMORY_AND_DISK)
    if not located.limit(1).count():
        raise InputError(f"silver/events has no events before {as_of}")
    # Each region's conversion over its last 7 days against the 7-day windows of the 28 days
    # before them (not overlapping: gap 6), as `monitor` compares a day with its trailing days.
    daily = regional.with_trailing_week(regional.regional_daily(located)).withColumns(
        {"kind": F.lit("share"), "value": F.col("conversion_7d"), "n": F.col("sessions_7d")})
    scored = (monitoring.robust_anomalies(daily, ["region"], history_days=settings["history_days"],
                                          min_history=settings["min_history_days"], threshold=settings["z_threshold"],
                                          min_scale_share=settings["min_relative_scale"], gap_days=WEEK - 1)
              .select("region", "event_date", "units", "revenue", "sessions", "buying_sessions", "conversion",
                      "sessions_7d", "conversion_7d", F.col("median").alias("trailing_median_conversion_7d"),
                      "z", "alert"))
    with ops.job_lease(spark, config, JOB, run_id):
        lake.overwrite_table(regional.regional_demand(located), root, tables.GOLD_REGIONAL_DEMAND)
        lake.overwrite_table(scored, root, tables.GOLD_REGIONAL_DAILY)
        lake.overwrite_table(regional.price_response_by_region(located), root, tables.GOLD_REGIONAL_ELASTICITY)
        located.unpersist()
        price_response = relative_price_response(spark, config, as_of, versions)
        forecasts = forecast(spark, config, as_of, versions) if config["regional"]["forecast_days"] else None
    written = lake.read_table(spark, root, tables.GOLD_REGIONAL_DAILY)
    alerts = [(r["region"], r["event_date"].isoformat(), r["z"]) for r in
              written.where("alert").orderBy("event_date", "region").collect()]  # a few days x regions
    measured = against_planted(spark, config, alerts)
    for region, day, z in alerts[:20]:
        log.warning("regional: %s on %s: conversion z %.1f against its trailing median", region, day, z)
    counts = {"demand_rows": lake.read_table(spark, root, tables.GOLD_REGIONAL_DEMAND).count(),
              "daily_rows": written.count(), "regional_alerts": len(alerts),  # findings, not a failed run
              "forecast_rows": forecasts["rows"] if forecasts else 0}
    ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                   args={"as_of": as_of}, input_versions=versions, counts=counts,
                   output_versions={t.id: lake.table_version(spark, root, t)
                                    for t in (tables.GOLD_REGIONAL_DEMAND, tables.GOLD_REGIONAL_DAILY,
                                              tables.GOLD_REGIONAL_ELASTICITY, tables.GOLD_REGIONAL_FORECASTS)
                                    if lake.table_exists(spark, t.path(root))},
                   details={"against_planted": measured, "forecast_backtest": forecasts,
                            "price_response": price_response})
    log.info("regional: %d region x day x category rows, %d region x day rows, %d alert(s)", counts["demand_rows"],
             counts["daily_rows"], len(alerts))
    return {**counts, "against_planted": measured, "forecast_backtest": forecasts, "price_response": price_response}


def relative_price_response(spark: SparkSession, config: dict, as_of: str, versions: dict) -> dict:
    """Each region's price response against all regions' (gold/model_runs, task regional_elasticity),
    and, on generated data, the planted more price-sensitive region's against the others."""
    root = config["lake_root"]
    fits = lake.read_table(spark, root, tables.GOLD_REGIONAL_ELASTICITY)
    pooled = fits.select("category_code", F.col("pooled_elasticity").alias("elasticity")).distinct()
    relative = {r["region"]: {"ratio": r["ratio"], "ratio_std_error": r["ratio_std_error"],
                              "categories": r["categories"]}
                for r in elasticity.relative_to_pooled(fits, pooled, "region").collect()}  # one row per region
    for region, r in sorted(relative.items()):
        log.info("regional price response: %s answers prices %.2f times as strongly as all regions (standard error "
                 "%.2f, %d categories)", region, r["ratio"], r["ratio_std_error"], r["categories"])
    planted = planted_regions(spark, config).get("price_sensitivity")
    measured = None
    if planted and planted["region"] in relative:
        others = [r["ratio"] for name, r in relative.items() if name not in (planted["region"], regional.UNKNOWN_REGION)]
        if others:
            factor = relative[planted["region"]]["ratio"] / (sum(others) / len(others))
            measured = {"region": planted["region"], "planted_factor": planted["elasticity_factor"],
                        "measured_factor": factor}
            log.info("regional price response against the planted one: %s answers prices %.2f times as strongly as "
                     "the other regions (planted %.2f)", planted["region"], factor, planted["elasticity_factor"])
    metrics = {f"{region}_ratio": r["ratio"] for region, r in relative.items()}
    metrics.update({f"{region}_ratio_std_error": r["ratio_std_error"] for region, r in relative.items()})
    if measured:
        metrics["planted_region_factor"] = measured["measured_factor"]
    runs.record(spark, root, [runs.model_run("regional_elasticity", "log_log_by_region", as_of, {}, versions, metrics,
                                             {"against_planted": measured})])
    return {"by_region": relative, "against_planted": measured}


def forecast(spark: SparkSession, config: dict, as_of: str, versions: dict) -> dict | None:
    """The rolling-origin backtest of the hierarchical forecasts (model_runs), then the forecasts
    from as_of (gold/regional_forecasts, one model fitted on every day before it). None, with a
    warning, when the history is too short to train on."""
    root, horizon, folds = config["lake_root"], config["regional"]["forecast_days"], config["regional"]["backtest_folds"]
    seed, max_iter = config["train"]["seed"], config["train"]["forecast_gbt_max_iter"]
    demand = lake.read_table(spark, root, tables.GOLD_REGIONAL_DEMAND)
    last_day = demand.agg(F.max("event_date")).first()[0]
    if last_day is None or last_day < date.fromisoformat(as_of) - timedelta(days=1):
        # A forecast from as_of starts from the day before it: without that day's sales the model
        # would read the missing days as no sales.
        log.warning("regional: no forecasts: silver/events ends on %s, before the day before --as-of %s (run the "
                    "ETL for the missing days, or use --as-of %s)", last_day, as_of,
                    (last_day + timedelta(days=1)).isoformat() if last_day else "a date within the data")
        return None
    daily = hierarchical.hierarchy_daily(demand.select("region", "top_category", "event_date", "units")).persist(
        StorageLevel.MEMORY_AND_DISK)
    actual = daily.select(*hierarchical.KEYS, "event_date", F.col("units").alias("actual"))
    origins = direct_forecast.backtest_origins(as_of, horizon, folds)
    folds_run = []
    for origin in origins:
        predicted = hierarchical.forecast_hierarchy(daily, origin, horizon, seed, max_iter)
        if predicted is None:
            log.info("regional: backtest window from %s skipped: no training rows before it", origin)
            continue
        folds_run.append(predicted.join(actual, [*hierarchical.KEYS, "event_date"]).persist(
            StorageLevel.MEMORY_AND_DISK))
    latest = hierarchical.forecast_hierarchy(daily, as_of, horizon, seed, max_iter)
    if latest is None or not folds_run:
        for frame in folds_run:
            frame.unpersist()
        daily.unpersist()
        log.warning("regional: no forecasts: the sales history before %s is too short to train on (the backtest "
                    "needs %d days before its first window)", as_of, direct_forecast.MIN_HISTORY_DAYS + horizon)
        return None
    pooled = functools.reduce(DataFrame.unionByName, folds_run)
    by_level = hierarchical.wape_by(pooled, ["level"])
    by_region_day = hierarchical.wape_by(pooled.where(F.col("level") == "region")
                                         .withColumn("day_type", hierarchical.day_type()), ["region", "day_type"])
    lake.replace_partition(latest.withColumn("forecast", F.col("mint_wls")).withColumn(
        "as_of_date", F.lit(as_of).cast("date")), root, tables.GOLD_REGIONAL_FORECASTS, "as_of_date", as_of)
    params = {"horizon_days": horizon, "backtest_origins": origins, "gbt_max_iter": max_iter,
              "seed": seed}
    model_runs = []
    for method in hierarchical.METHODS:
        metrics = {f"{row['level']}_wape": row[method] for row in by_level}
        metrics.update({f"{row['region']}_{row['day_type']}_wape": row[method] for row in by_region_day})
        model_runs.append(runs.model_run("regional_forecast", method, as_of, params, versions, metrics,
                                         baseline=method != "mint_wls"))
    runs.record(spark, root, model_runs)
    for row in by_level:
        log.info("regional forecast backtest, %s level (%d rows): WAPE %s", row["level"], row["n"],
                 ", ".join(f"{m} {row[m]:.3f}" for m in hierarchical.METHODS if row[m] is not None))
    for frame in folds_run:
        frame.unpersist()
    daily.unpersist()
    written = lake.read_table(spark, root, tables.GOLD_REGIONAL_FORECASTS).where(
        F.col("as_of_date") == F.lit(as_of).cast("date"))
    return {"rows": written.count(), "folds": len(folds_run), "by_level": by_level, "by_region_day": by_region_day}


def planted_regions(spark: SparkSession, config: dict) -> dict:
    """The generator's planted regional differences ({} when the data was not generated with regions)."""
    text = lake.read_text_file(spark, f"{config['generate']['output']}/_ground_truth/generator.json")
    return (json.loads(text).get("regions") or {}) if text else {}


def against_planted(spark: SparkSession, config: dict, alerts: list[tuple]) -> dict | None:
    """The alerts against the generator's planted promotion week, when the data was generated
    with regions: days of the week flagged in the promoted region, and alerts anywhere else."""
    planted = planted_regions(spark, config).get("promotion_week")
    if not planted:
        return None
    # A 7-day window ending on one of these days overlaps the promotion.
    last = date.fromisoformat(planted["dates"][-1])
    overlapping = {(planted["region"], (last + timedelta(days=i)).isoformat()) for i in range(WEEK)} | {
        (planted["region"], d) for d in planted["dates"]}
    promo = {(planted["region"], d) for d in planted["dates"]}
    found = sorted(d for r, d, _ in alerts if (r, d) in overlapping)
    other = sorted(f"{r} {d}" for r, d, _ in alerts if (r, d) not in overlapping)
    log.info("regional against the planted promotion week (%s, %s .. %s): flagged on %d day(s) whose week overlaps "
             "it%s; %d other alert(s)%s", planted["region"], planted["dates"][0], planted["dates"][-1], len(found),
             f" ({found[0]} .. {found[-1]})" if found else "", len(other),
             f": {', '.join(other[:10])}" if other else "")
    return {"region": planted["region"], "planted_days": len(promo), "days_flagged": len(found),
            "found": bool(found), "first_flagged": found[0] if found else None,
            "other_alerts": len(other), "other_alert_list": other}


def main(argv=None) -> int:
    parser = job_parser(JOB, __doc__)
    parser.add_argument("--as-of", required=True, help="use events before this date")
    return run_job(JOB, parser, lambda spark, config, a: run(spark, config, a.as_of), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

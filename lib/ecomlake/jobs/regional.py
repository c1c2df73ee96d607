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
When the lake's data was generated with generate.regions, the alerts are measured against the
planted promotion week (log line and ops/job_runs).
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime, timedelta, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, monitoring, ops, regional, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import InputError

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
    located.unpersist()
    written = lake.read_table(spark, root, tables.GOLD_REGIONAL_DAILY)
    alerts = [(r["region"], r["event_date"].isoformat(), r["z"]) for r in
              written.where("alert").orderBy("event_date", "region").collect()]  # a few days x regions
    measured = against_planted(spark, config, alerts)
    for region, day, z in alerts[:20]:
        log.warning("regional: %s on %s: conversion z %.1f against its trailing median", region, day, z)
    counts = {"demand_rows": lake.read_table(spark, root, tables.GOLD_REGIONAL_DEMAND).count(),
              "daily_rows": written.count(), "regional_alerts": len(alerts)}  # findings, not a failed run
    ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                   args={"as_of": as_of}, input_versions=versions, counts=counts,
                   output_versions={t.id: lake.table_version(spark, root, t)
                                    for t in (tables.GOLD_REGIONAL_DEMAND, tables.GOLD_REGIONAL_DAILY)},
                   details={"against_planted": measured})
    log.info("regional: %d region x day x category rows, %d region x day rows, %d alert(s)", counts["demand_rows"],
             counts["daily_rows"], len(alerts))
    return {**counts, "against_planted": measured}


def against_planted(spark: SparkSession, config: dict, alerts: list[tuple]) -> dict | None:
    """The alerts against the generator's planted promotion week, when the data was generated
    with regions: days of the week flagged in the promoted region, and alerts anywhere else."""
    text = lake.read_text_file(spark, f"{config['generate']['output']}/_ground_truth/generator.json")
    planted = (json.loads(text).get("regions") or {}).get("promotion_week") if text else None
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

"""sessionize: silver/events -> silver/sessions and gold/daily_funnel.

  ./spark-submit.sh sessionize [--gap-minutes 30]

A user's session ends after more than sessionize.gap_minutes (default 30) without an event.
silver/sessions has one row per session: start, end, duration, event counts by type, distinct
products, revenue, converted flag, first category. gold/daily_funnel has, per day and top-level
category, views -> carts -> purchases (events and sessions) and the conversion rates between
them. Both tables are rebuilt on every run (idempotent).
"""
from __future__ import annotations

import sys

from pyspark import StorageLevel
from pyspark.sql import SparkSession

from ecomlake import lake, sessionize, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.errors import ConfigError


def run(spark: SparkSession, config: dict, gap_minutes: int | None = None) -> dict:
    root = config["lake_root"]
    gap = gap_minutes if gap_minutes is not None else config["sessionize"]["gap_minutes"]
    if gap <= 0:
        raise ConfigError(f"sessionize.gap_minutes must be positive, got {gap}")
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    sessionized = sessionize.assign_sessions(events, gap)
    sessionized.persist(StorageLevel.MEMORY_AND_DISK)  # sessions and funnel share the window pass
    try:
        lake.overwrite_table(sessionize.sessions(sessionized), root, tables.SILVER_SESSIONS)
        lake.overwrite_table(sessionize.daily_funnel(sessionized), root, tables.GOLD_DAILY_FUNNEL)
    finally:
        sessionized.unpersist()
    summary = (lake.read_table(spark, root, tables.SILVER_SESSIONS)
               .selectExpr("count(*) AS sessions", "avg(cast(converted AS int)) AS conversion_rate",
                           "sum(revenue) AS revenue").head().asDict())
    print(f"sessionize: {summary['sessions']:,} sessions (gap {gap} min), "
          f"conversion rate {summary['conversion_rate'] or 0:.4f}, revenue {summary['revenue'] or 0:,.2f}")
    return {"gap_minutes": gap, **summary}


def main(argv=None) -> int:
    parser = job_parser("sessionize", __doc__)
    parser.add_argument("--gap-minutes", type=int, help="inactivity gap (default: config sessionize.gap_minutes)")
    return run_job("sessionize", parser, lambda spark, config, a: run(spark, config, a.gap_minutes), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""sessionize: silver/events -> silver/sessions and gold/daily_funnel.

  ./spark-submit.sh sessionize [--gap-minutes 30] [--full-refresh]

A user's session ends after more than sessionize.gap_minutes (default 30) without an event.
silver/sessions has one row per session: start, end, duration, event counts by type, distinct
products, revenue, converted flag, first category. gold/daily_funnel has, per day and top-level
category, views -> carts -> purchases (events and sessions) and the conversion rates between
them.

Incremental by default: from silver/events' change data feed since the version its last run
consumed, it recomputes only the sessions that the changed events can touch (a session that
crosses midnight into a new file, a late event days later; see ecomlake.sessionize) and merges
them into silver/sessions in one commit, and it replaces only the changed dates of
gold/daily_funnel. `--full-refresh`, a new gap, the first run, or a feed that is no longer
readable rebuild both tables. Either way the tables equal a full rebuild.
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, ops, sessionize, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.errors import ConfigError

log = logging.getLogger(__name__)
JOB = "sessionize"


def plan(spark: SparkSession, root: str, silver_version: int, gap: int, full_refresh: bool):
    """('full', None), ('none', None) or ('incremental', changed silver rows)."""
    # the silver/events version the last run consumed, and the session gap it used
    run = ops.last_run_reading(spark, root, JOB, tables.SILVER_EVENTS)
    last, last_gap = (run["version"], run["counts"].get("gap_minutes")) if run else (None, None)
    sessions_path = tables.SILVER_SESSIONS.path(root)
    if full_refresh or last is None or last > silver_version or last_gap != gap \
            or not lake.table_exists(spark, sessions_path) \
            or lake.partition_columns(spark, sessions_path) != ["session_date"] \
            or not lake.table_exists(spark, tables.GOLD_DAILY_FUNNEL.path(root)):
        return "full", None
    if last == silver_version:
        return "none", None
    try:
        changes = ops.changes_since(spark, tables.SILVER_EVENTS.path(root), last, silver_version)
    except ops.ChangeFeedUnavailable as exc:
        log.warning("sessionize: silver/events' change feed since version %d is not readable (%s): full refresh",
                    last, exc)
        return "full", None
    return "incremental", changes.select("user_key", "event_time", "event_date")


def run(spark: SparkSession, config: dict, gap_minutes: int | None = None, full_refresh: bool = False) -> dict:
    root = config["lake_root"]
    gap = gap_minutes if gap_minutes is not None else config["sessionize"]["gap_minutes"]
    if gap <= 0:
        raise ConfigError(f"sessionize.gap_minutes must be positive, got {gap}")
    started, run_id = datetime.now(timezone.utc), ops.new_run_id(JOB)
    with ops.job_lease(spark, config, JOB, run_id):
        silver_version = lake.table_version(spark, root, tables.SILVER_EVENTS)
        mode, changes = plan(spark, root, silver_version, gap, full_refresh)
        events = (spark.read.format("delta").option("versionAsOf", silver_version)
                  .load(tables.SILVER_EVENTS.path(root)))
        counts = {"gap_minutes": gap}
        if mode == "full":
            sessionized = sessionize.assign_sessions(events, gap)
            sessionized.persist(StorageLevel.MEMORY_AND_DISK)  # sessions and funnel share the window pass
            try:
                lake.overwrite_table(sessionize.sessions(sessionized), root, tables.SILVER_SESSIONS,
                                     partition_by=["session_date"])
                lake.overwrite_table(sessionize.daily_funnel(sessionized), root, tables.GOLD_DAILY_FUNNEL)
            finally:
                sessionized.unpersist()
        elif mode == "incremental":
            counts.update(_incremental(spark, root, events, changes, gap))
        summary = (lake.read_table(spark, root, tables.SILVER_SESSIONS)
                   .selectExpr("count(*) AS sessions", "avg(cast(converted AS int)) AS conversion_rate",
                               "sum(revenue) AS revenue").head().asDict())
        log.info("sessionize (%s): %s sessions (gap %d min), conversion rate %.4f, revenue %s", mode,
                 f"{summary['sessions']:,}", gap, summary["conversion_rate"] or 0, f"{summary['revenue'] or 0:,.2f}")
        ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded", mode=mode,
                       input_versions={tables.SILVER_EVENTS.id: silver_version},
                       output_versions={t.id: lake.table_version(spark, root, t)
                                        for t in (tables.SILVER_SESSIONS, tables.GOLD_DAILY_FUNNEL)},
                       counts={**counts, "sessions": summary["sessions"]})
    return {"gap_minutes": gap, "mode": mode, **summary}


def _incremental(spark: SparkSession, root: str, events, changes, gap: int) -> dict:
    changes = changes.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # Dates are bounded by the calendar, not by the data: fine to bring to the driver.
        changed_dates = sorted(r[0] for r in changes.select("event_date").distinct().collect())
        if not changed_dates:
            return {"changed_dates": 0}
        current = lake.read_table(spark, root, tables.SILVER_SESSIONS)
        regions = sessionize.session_regions(changes, current, gap).persist(StorageLevel.MEMORY_AND_DISK)
        span = regions.agg(F.min("region_start"), F.max("region_end")).head()
        first_day, last_day = span[0].date() - timedelta(days=1), span[1].date() + timedelta(days=1)
        nearby = events.where(F.col("event_date").between(F.lit(first_day), F.lit(last_day)))
        updates = sessionize.session_updates(nearby, regions, current, gap).persist(StorageLevel.MEMORY_AND_DISK)
        session_dates = sorted(r[0] for r in updates.select("session_date").distinct().collect())
        n_updates = updates.groupBy("_op").count().collect()
        from delta.tables import DeltaTable

        columns = {c: f"s.{c}" for c in sessionize.SESSION_COLUMNS}
        (DeltaTable.forPath(spark, tables.SILVER_SESSIONS.path(root)).alias("t")
         .merge(updates.alias("s"), "t.user_key = s.user_key AND t.session_start = s.session_start AND "
                f"{lake.sql_in('t.session_date', session_dates)}")
         .whenMatchedDelete(condition="s._op = 'delete'")
         .whenMatchedUpdate(condition="s._op = 'upsert'", set=columns)
         .whenNotMatchedInsert(condition="s._op = 'upsert'", values=columns)
         .execute())
        # A date's funnel depends only on that date's events and how they group into sessions,
        # which that date's events alone decide: recompute the changed dates from them.
        day_events = events.where(lake.sql_in("event_date", changed_dates))
        funnel = sessionize.daily_funnel(sessionize.assign_sessions(day_events, gap))
        lake.overwrite_table(funnel, root, tables.GOLD_DAILY_FUNNEL,
                             replace_where=lake.sql_in("event_date", changed_dates))
        updates.unpersist()
        regions.unpersist()
    finally:
        changes.unpersist()
    ops_counts = {f"session_{r['_op']}s": r["count"] for r in n_updates}
    return {"changed_dates": len(changed_dates), **ops_counts}


def main(argv=None) -> int:
    parser = job_parser("sessionize", __doc__)
    parser.add_argument("--gap-minutes", type=int, help="inactivity gap (default: config sessionize.gap_minutes)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="rebuild silver/sessions and gold/daily_funnel from all of silver/events")
    return run_job("sessionize", parser,
                   lambda spark, config, a: run(spark, config, a.gap_minutes, a.full_refresh), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

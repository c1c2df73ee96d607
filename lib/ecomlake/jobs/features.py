"""features: point-in-time user/item features, interactions, daily sales and labels as of a date.

  ./spark-submit.sh features --as-of 2019-11-16 [--horizon-days 14]

Reads silver/events; uses only events before --as-of (00:00 UTC) for features and only events in
[as-of, as-of + horizon) for labels. Writes, each partitioned by as_of_date (a re-run replaces
that date's rows, so several cutoffs coexist and re-running changes nothing):
  gold/user_features   RFM, 1/7/30-day activity by event type, sessions, cart abandonment,
                       category affinity, price level, tenure
  gold/item_features   counts, conversion rates, price statistics, popularity trend
  gold/interactions    implicit user-item strength (weights per event type, time decay)
  gold/daily_sales     units and revenue per product and per category per day, lags, calendar
  gold/user_labels     purchased_next (propensity) and churned (past buyers) in the horizon
  gold/sales_labels    units and revenue per series in the horizon
Labels are written only when silver/events covers the whole horizon.
"""
from __future__ import annotations

import logging
import sys
from datetime import date, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import features, lake, tables
from ecomlake.cli import add_as_of_minus_days, exit_with, job_parser, parse_as_of, run_job, shifted_as_of
from ecomlake.errors import ConfigError

log = logging.getLogger(__name__)


def run(spark: SparkSession, config: dict, as_of: str, horizon_days: int | None = None) -> dict:
    as_of = parse_as_of(as_of)
    root = config["lake_root"]
    fc = config["features"]
    horizon = horizon_days if horizon_days is not None else fc["label_horizon_days"]
    if horizon <= 0:
        raise ConfigError(f"features.label_horizon_days must be positive, got {horizon}")
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    span = events.agg(F.min("event_time").alias("first"), F.max("event_time").alias("last")).head()
    if span["first"] is None or span["first"].date().isoformat() >= as_of:
        raise ConfigError(f"silver/events has no events before --as-of {as_of} "
                          f"(events span {span['first']} .. {span['last']})")
    gap = config["sessionize"]["gap_minutes"]
    daily = features.daily_sales(events, as_of)
    outputs = {
        tables.GOLD_USER_FEATURES: features.user_features(events, as_of, gap),
        tables.GOLD_ITEM_FEATURES: features.item_features(events, as_of),
        tables.GOLD_INTERACTIONS: features.interactions(
            events, as_of, dict(fc["interaction_weights"]), fc["interaction_half_life_days"]),
        tables.GOLD_DAILY_SALES: daily,
    }
    horizon_end = date.fromisoformat(as_of) + timedelta(days=horizon)
    labels_complete = span["last"].date() >= horizon_end - timedelta(days=1)
    if labels_complete:
        outputs[tables.GOLD_USER_LABELS] = features.user_labels(events, as_of, horizon)
        outputs[tables.GOLD_SALES_LABELS] = features.sales_labels(daily, events, as_of, horizon)
    counts = {}
    for table, df in outputs.items():
        lake.replace_partition(df, root, table, "as_of_date", as_of)
        counts[table.id] = lake.read_table(spark, root, table).where(f"as_of_date = '{as_of}'").count()
    log.info(f"features as of {as_of}: " + ", ".join(f"{t} {n:,} rows" for t, n in counts.items()))
    if not labels_complete:
        log.info(f"features: labels not written: a {horizon}-day horizon needs events until "
              f"{horizon_end - timedelta(days=1)}, the latest event is {span['last']}")
    return {"as_of": as_of, "horizon_days": horizon, "labels": labels_complete, "rows": counts}


def main(argv=None) -> int:
    parser = job_parser("features", __doc__)
    parser.add_argument("--as-of", required=True, help="cutoff date YYYY-MM-DD (features use events before it)")
    add_as_of_minus_days(parser)
    parser.add_argument("--horizon-days", type=int, help="label horizon (default: features.label_horizon_days)")
    return run_job("features", parser, lambda spark, config, a: run(
        spark, config, shifted_as_of(a.as_of, a.as_of_minus_days), a.horizon_days), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""clean: bronze/events -> silver/events; invalid rows -> quarantine/events (stage 'clean').

  ECOMLAKE_PSEUDONYM_KEY=... ./spark-submit.sh clean [--full-refresh]

Types every column (timestamps in UTC), drops exact duplicates (the first ingested copy stays),
quarantines rows with a missing user or product, an unknown event type, a negative or absurd
price, or an event in the future (later than its ingest time plus a tolerance), each with its
reason, and replaces user_id with user_key, a keyed hash (HMAC-SHA256) whose key comes from the
environment variable named by pseudonymisation.key_env_var. Outside the local environment a
missing key is an error.

Incremental by default: it reads bronze/events' change data feed since the version its last run
consumed (ops/job_runs) and recomputes only the event dates that changed (new files, late events,
a re-delivered file), replacing those date partitions of silver/events and their quarantine rows.
A date is the unit because everything clean decides about a row depends only on rows of the same
event date (two exact duplicates share their event_time), so the result equals a full rebuild.
`--full-refresh` (and the first run, or a feed that is no longer readable) rebuilds everything.
Counts reconcile: bronze rows read = silver rows written + quarantined rows written.

The key's fingerprint (an HMAC of a fixed label, never the key) is kept in silver/events' table
properties: a run with another key is refused, because its user_keys would not join with those
already written. `--full-refresh --rekey` rebuilds silver/events with the new key (then rebuild
what was derived from it: `sessionize --full-refresh`, features, train, score).
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import clean, lake, ops, privacy, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.config import is_development_key, pseudonymisation_key
from ecomlake.errors import ConfigError, EcomlakeError
from ecomlake.quarantine import EVENT_DATE_COLUMN

log = logging.getLogger(__name__)
JOB = "clean"


def plan(spark: SparkSession, root: str, bronze_version: int, full_refresh: bool) -> tuple[str, str | None, list]:
    """('full', None, []), ('none', None, []) or ('incremental', predicate on the bronze rows to
    recompute, the event dates whose silver partitions they replace)."""
    last = ops.last_consumed(spark, root, JOB, tables.BRONZE_EVENTS)
    silver = tables.SILVER_EVENTS.path(root)
    if full_refresh or last is None or last > bronze_version or not lake.table_exists(spark, silver) \
            or lake.partition_columns(spark, silver) != ["event_date"]:
        return "full", None, []
    if last == bronze_version:
        return "none", None, []
    try:
        changes = ops.changes_since(spark, tables.BRONZE_EVENTS.path(root), last, bronze_version)
    except ops.ChangeFeedUnavailable as exc:
        log.warning("clean: bronze/events' change feed since version %d is not readable (%s): full refresh",
                    last, exc)
        return "full", None, []
    # Bounded by the calendar and by the number of files, not by rows.
    dates = [r[0] for r in changes.where(F.col(EVENT_DATE_COLUMN).isNotNull())
             .select(EVENT_DATE_COLUMN).distinct().collect()]
    undated_files = [r[0] for r in changes.where(F.col(EVENT_DATE_COLUMN).isNull())
                     .select("_source_file").distinct().collect()]
    scope = (f"({lake.sql_in(EVENT_DATE_COLUMN, dates)} OR ({EVENT_DATE_COLUMN} IS NULL AND "
             f"{lake.sql_in('_source_file', undated_files)}))")
    return "incremental", scope, dates


def check_key(recorded: str | None, fingerprint: str, rekey: bool) -> None:
    """Refuse to add rows made with another key than the one that built silver/events."""
    if recorded and recorded != fingerprint and not rekey:
        raise ConfigError(
            f"silver/events was built with another pseudonymisation key (fingerprint {recorded}; this run's "
            f"key has {fingerprint}): its user_key values would not join with the ones already written. "
            f"Run with the key that built it, or rebuild with the new one: clean --full-refresh --rekey, "
            f"then sessionize --full-refresh and features, train and score again")


def refresh_customers(spark: SparkSession, root: str, key: bytes, fingerprint: str, full_refresh: bool) -> dict:
    """silver/customers = bronze/customers pseudonymised, rebuilt whole (it is a snapshot) when
    bronze/customers changed since clean last read it, on --full-refresh, or under another key.
    -> {bronze/customers: version read} for the run record (empty without a customer master)."""
    if not lake.table_exists(spark, tables.BRONZE_CUSTOMERS.path(root)):
        return {}
    version = lake.table_version(spark, root, tables.BRONZE_CUSTOMERS)
    silver_path = tables.SILVER_CUSTOMERS.path(root)
    if (not full_refresh and lake.table_exists(spark, silver_path)
            and ops.last_consumed(spark, root, JOB, tables.BRONZE_CUSTOMERS) == version
            and lake.table_properties(spark, silver_path).get(privacy.FINGERPRINT_PROPERTY) == fingerprint):
        return {tables.BRONZE_CUSTOMERS.id: version}
    bronze = spark.read.format("delta").option("versionAsOf", version).load(tables.BRONZE_CUSTOMERS.path(root))
    lake.overwrite_table(clean.silver_customers(bronze, key), root, tables.SILVER_CUSTOMERS)
    lake.set_table_properties(spark, silver_path, {privacy.FINGERPRINT_PROPERTY: fingerprint})
    log.info("clean: silver/customers rebuilt from bronze/customers version %d (%s customers)", version,
             f"{lake.read_table(spark, root, tables.SILVER_CUSTOMERS).count():,}")
    return {tables.BRONZE_CUSTOMERS.id: version}


def run(spark: SparkSession, config: dict, full_refresh: bool = False, rekey: bool = False) -> dict:
    root, options = config["lake_root"], config["clean"]
    key = pseudonymisation_key(config)  # before any work: a missing key fails fast
    if rekey and not full_refresh:
        raise ConfigError("--rekey rebuilds silver/events with the new key: it needs --full-refresh")
    if is_development_key(key):
        log.warning("clean: using the public local development key: user_key values are not secret. "
                    "Real data needs a key of its own in $%s", config["pseudonymisation"]["key_env_var"])
    fingerprint = privacy.key_fingerprint(key)
    silver_path = tables.SILVER_EVENTS.path(root)
    started, run_id = datetime.now(timezone.utc), ops.new_run_id(JOB)
    with ops.job_lease(spark, config, JOB, run_id):
        recorded = lake.table_properties(spark, silver_path).get(privacy.FINGERPRINT_PROPERTY)
        check_key(recorded, fingerprint, rekey)
        if rekey and recorded != fingerprint:
            log.warning("clean: re-keying silver/events (key fingerprint %s -> %s)", recorded, fingerprint)
        customers = refresh_customers(spark, root, key, fingerprint, full_refresh)
        bronze_version = lake.table_version(spark, root, tables.BRONZE_EVENTS)
        mode, scope, dates = plan(spark, root, bronze_version, full_refresh)
        if mode == "none":
            log.info("clean: nothing new in bronze/events since version %d", bronze_version)
            ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded", mode=mode,
                           input_versions={tables.BRONZE_EVENTS.id: bronze_version, **customers})
            return {"mode": mode, "bronze_rows": 0, "silver_rows": 0, "quarantined": {}}
        # One snapshot for the whole run: an ingest committing meanwhile is picked up next time.
        bronze = (spark.read.format("delta").option("versionAsOf", bronze_version)
                  .load(tables.BRONZE_EVENTS.path(root)))
        if scope:
            bronze = bronze.where(scope)
        validated = clean.validate_events(bronze, options["max_price"], options["min_event_time"],
                                          options["future_tolerance_minutes"])
        validated.persist(StorageLevel.MEMORY_AND_DISK)  # two outputs from one pass over bronze
        try:
            counts = {r["_reject_reason"]: r["count"]
                      for r in validated.groupBy("_reject_reason").count().collect()}
            silver_rows, rejected = clean.silver_rows(validated, key), clean.rejected_rows(validated)
            if mode == "full":
                lake.overwrite_table(silver_rows, root, tables.SILVER_EVENTS, partition_by=["event_date"],
                                     change_feed=True)
                lake.replace_rows(spark, rejected, root, tables.QUARANTINE_EVENTS, "stage = 'clean'",
                                  partition_by=["stage"], merge_schema=True)
                # sessionize reads silver's change feed (an incremental write keeps both properties)
                lake.set_table_properties(spark, silver_path, {"delta.enableChangeDataFeed": "true",
                                                               privacy.FINGERPRINT_PROPERTY: fingerprint})
            else:
                lake.replace_rows(spark, silver_rows, root, tables.SILVER_EVENTS, lake.sql_in("event_date", dates),
                                  partition_by=["event_date"], change_feed=True)
                lake.replace_rows(spark, rejected, root, tables.QUARANTINE_EVENTS, f"stage = 'clean' AND {scope}",
                                  partition_by=["stage"], merge_schema=True)
                if recorded is None:  # a lake from before fingerprints (or a crash before the first one)
                    log.warning("clean: silver/events had no key fingerprint; recording this run's (%s)", fingerprint)
                    lake.set_table_properties(spark, silver_path, {privacy.FINGERPRINT_PROPERTY: fingerprint})
        finally:
            validated.unpersist()
        bronze_n = sum(counts.values())
        silver = lake.read_table(spark, root, tables.SILVER_EVENTS)
        written_quarantine = (lake.read_table(spark, root, tables.QUARANTINE_EVENTS)
                              .where(f"stage = 'clean' AND {scope}" if scope else "stage = 'clean'").count())
        if scope:
            silver = silver.where(lake.sql_in("event_date", dates))
        silver_n = silver.count()
        quarantined = {k: v for k, v in counts.items() if k is not None}
        if silver_n + written_quarantine != bronze_n or written_quarantine != sum(quarantined.values()):
            raise EcomlakeError(f"reconciliation failed: {bronze_n} bronze rows read, {silver_n} silver rows and "
                                f"{written_quarantine} quarantined rows written ({sum(quarantined.values())} expected)")
        log.info("clean (%s): %s bronze rows = %s silver rows + %s quarantined (%s)", mode, f"{bronze_n:,}",
                 f"{silver_n:,}", f"{sum(quarantined.values()):,}",
                 ", ".join(f"{k}={v}" for k, v in sorted(quarantined.items())))
        ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded", mode=mode,
                       input_versions={tables.BRONZE_EVENTS.id: bronze_version, **customers},
                       output_versions={t.id: lake.table_version(spark, root, t)
                                        for t in (tables.SILVER_EVENTS, tables.QUARANTINE_EVENTS)},
                       counts={"bronze_rows": bronze_n, "silver_rows": silver_n,
                               "quarantined_rows": sum(quarantined.values())})
    return {"mode": mode, "bronze_rows": bronze_n, "silver_rows": silver_n, "quarantined": quarantined}


def main(argv=None) -> int:
    parser = job_parser("clean", __doc__)
    parser.add_argument("--full-refresh", action="store_true",
                        help="rebuild silver/events from all of bronze/events (default: only changed dates)")
    parser.add_argument("--rekey", action="store_true",
                        help="with --full-refresh: rebuild silver/events with a new pseudonymisation key "
                             "(without it, a key other than the one that built silver/events is refused)")
    return run_job("clean", parser, lambda spark, config, a: run(spark, config, a.full_refresh, a.rekey), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

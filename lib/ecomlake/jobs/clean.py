"""clean: bronze/events -> silver/events; invalid rows -> quarantine/events (stage 'clean').

  ECOMLAKE_PSEUDONYM_KEY=... ./spark-submit.sh clean

Types every column (timestamps in UTC), drops exact duplicates (the first ingested copy stays),
quarantines rows with a missing user or product, an unknown event type, a negative or absurd
price, or an event in the future (later than its ingest time plus a tolerance), each with its
reason, and replaces user_id with user_key, a keyed hash (HMAC-SHA256) whose key comes from the
environment variable named by pseudonymisation.key_env_var. Outside the local environment a
missing key is an error. silver/events is rebuilt from bronze on every run, so running twice
gives the same table; the counts reconcile: bronze rows = silver rows + quarantined rows.
"""
from __future__ import annotations

import sys

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import clean, lake, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.config import pseudonymisation_key
from ecomlake.errors import EcomlakeError


def run(spark: SparkSession, config: dict) -> dict:
    root, options = config["lake_root"], config["clean"]
    key = pseudonymisation_key(config)  # before any work: a missing key fails fast
    bronze = lake.read_table(spark, root, tables.BRONZE_EVENTS)
    validated = clean.validate_events(bronze, options["max_price"], options["min_event_time"],
                                      options["future_tolerance_minutes"])
    validated.persist(StorageLevel.MEMORY_AND_DISK)  # two outputs from one pass over bronze
    try:
        counts = {r["_reject_reason"]: r["count"]
                  for r in validated.groupBy("_reject_reason").count().collect()}
        lake.overwrite_table(clean.silver_rows(validated, key), root, tables.SILVER_EVENTS)
        lake.overwrite_table(clean.rejected_rows(validated), root, tables.QUARANTINE_EVENTS,
                             replace_where="stage = 'clean'", partition_by=["stage"])
    finally:
        validated.unpersist()
    bronze_n = sum(counts.values())
    silver_n = lake.read_table(spark, root, tables.SILVER_EVENTS).count()
    quarantined = {k: v for k, v in counts.items() if k is not None}
    if silver_n + sum(quarantined.values()) != bronze_n:
        raise EcomlakeError(f"reconciliation failed: {bronze_n} bronze rows, {silver_n} silver rows, "
                            f"{sum(quarantined.values())} quarantined")
    print(f"clean: {bronze_n:,} bronze rows = {silver_n:,} silver rows + "
          f"{sum(quarantined.values()):,} quarantined ({', '.join(f'{k}={v}' for k, v in sorted(quarantined.items()))})")
    return {"bronze_rows": bronze_n, "silver_rows": silver_n, "quarantined": quarantined}


def main(argv=None) -> int:
    parser = job_parser("clean", __doc__)
    return run_job("clean", parser, lambda spark, config, a: run(spark, config), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

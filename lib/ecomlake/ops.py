"""ops/job_runs: one row per run of a job — what it consumed and wrote, its counts and status.

This is what makes daily runs incremental and auditable. A job that reads a table incrementally
records the Delta version it consumed up to (`input_versions`); its next run starts from there
(`last_consumed`). The row is appended after the job's last table write, so a run killed before it
is simply redone from the same starting point by the next run: every incremental write replaces
what it recomputes (replaceWhere / MERGE), so doing it twice gives the same tables.
Rows never hold user ids or keys (erasures record counts only).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, tables

log = logging.getLogger(__name__)

SCHEMA = ("run_id string, job string, args string, host string, pid int, started_at timestamp, "
          "ended_at timestamp, duration_seconds double, status string, mode string, "
          "input_versions map<string,bigint>, output_versions map<string,bigint>, "
          "counts map<string,bigint>, details string")
STATUSES = ("succeeded", "quarantined", "failed")


def new_run_id(job: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{job.replace(' ', '_')}-{uuid.uuid4().hex[:8]}"


def record_run(spark: SparkSession, lake_root: str, *, run_id: str, job: str, started_at: datetime,
               status: str, args: dict | None = None, mode: str | None = None,
               input_versions: dict[str, int] | None = None, output_versions: dict[str, int] | None = None,
               counts: dict[str, int] | None = None, details: dict | None = None) -> None:
    """Append one run to ops/job_runs (a blind append: concurrent runs never conflict on it)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    ended = datetime.now(timezone.utc)
    row = (run_id, job, json.dumps(args or {}, sort_keys=True, default=str), socket.gethostname(), os.getpid(),
           started_at.replace(tzinfo=None), ended.replace(tzinfo=None),
           round((ended - started_at).total_seconds(), 3), status, mode,
           {k: int(v) for k, v in (input_versions or {}).items()},
           {k: int(v) for k, v in (output_versions or {}).items()},
           {k: int(v) for k, v in (counts or {}).items() if v is not None},
           json.dumps(details or {}, sort_keys=True, default=str))
    lake.append_table(spark.createDataFrame([row], SCHEMA), lake_root, tables.OPS_JOB_RUNS)


def last_run_reading(spark: SparkSession, lake_root: str, job: str, table: tables.Table) -> dict | None:
    """`job`'s newest successful run that recorded which version of `table` it consumed:
    {"version": that version, "counts": the run's counts}; None when there is none."""
    if not lake.table_exists(spark, tables.OPS_JOB_RUNS.path(lake_root)):
        return None
    row = (lake.read_table(spark, lake_root, tables.OPS_JOB_RUNS)
           .where((F.col("job") == job) & (F.col("status") != "failed")
                  & F.col("input_versions").getItem(table.id).isNotNull())
           .orderBy(F.desc("ended_at"))
           .select(F.col("input_versions").getItem(table.id).alias("version"), "counts")
           .limit(1).collect())
    return {"version": int(row[0]["version"]), "counts": row[0]["counts"] or {}} if row else None


def last_consumed(spark: SparkSession, lake_root: str, job: str, table: tables.Table) -> int | None:
    """The version of `table` that `job`'s newest successful run consumed up to (None: never ran,
    or the runs were recorded before the table was read incrementally)."""
    run = last_run_reading(spark, lake_root, job, table)
    return run["version"] if run else None


def oldest_needed_versions(spark: SparkSession, lake_root: str) -> dict[str, int]:
    """Per table, the oldest Delta version that a later incremental run will start reading from
    (the newest consumed version of each job that reads it). VACUUM must keep these readable."""
    if not lake.table_exists(spark, tables.OPS_JOB_RUNS.path(lake_root)):
        return {}
    latest = (lake.read_table(spark, lake_root, tables.OPS_JOB_RUNS)
              .where(F.col("status") != "failed")
              .select("job", "ended_at", F.explode("input_versions").alias("table", "version")))
    newest_per_job = (latest.groupBy("job", "table").agg(F.max_by("version", "ended_at").alias("version"))
                      .groupBy("table").agg(F.min("version").alias("version")))
    return {r["table"]: int(r["version"]) for r in newest_per_job.collect()}


class ChangeFeedUnavailable(Exception):
    """The change data feed cannot be read from the wanted version (vacuumed, or not enabled then)."""


def changes_since(spark: SparkSession, path: str, after_version: int, up_to_version: int):
    """Rows inserted, deleted or updated in a Delta table in versions (after_version, up_to_version],
    from its change data feed (`_change_type` says which)."""
    try:
        changes = (spark.read.format("delta").option("readChangeFeed", "true")
                   .option("startingVersion", after_version + 1).option("endingVersion", up_to_version)
                   .load(path))
        changes.schema  # resolves the version range now, so a missing feed fails here
        return changes
    except Exception as exc:  # AnalysisException / DeltaAnalysisException from Delta's CDF reader
        raise ChangeFeedUnavailable(str(exc).splitlines()[0]) from None


@contextmanager
def job_lease(spark: SparkSession, config: dict, job: str, run_id: str):
    """Hold the job's lease in the lake while it writes (see ecomlake.leases)."""
    from ecomlake import leases

    with leases.hold(spark, config["lake_root"], job, job=job, run_id=run_id,
                     timeout_seconds=config["ops"]["lease_timeout_seconds"],
                     wait_seconds=config["ops"]["lease_wait_seconds"]):
        yield

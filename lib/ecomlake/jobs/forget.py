"""forget: remove the users listed in a file from every table and stored model in the lake.

  ECOMLAKE_PSEUDONYM_KEY=... ./spark-submit.sh forget --user-ids FILE [--purge-history]

FILE (on any Hadoop file system; a folder or glob works too) holds one raw user id per line;
blank lines and a `user_id` header are ignored. Every Delta table in the lake loses the users'
rows: raw ids in `user_id` (bronze, quarantine), quarantined raw lines that hold the id as a whole
field (`raw_line`), and their pseudonym `user_key` (silver, gold; computed with the same key and
rule as `clean`). Plain Parquet under the lake (model data, ALS user indexes) is rewritten without
them, and every saved ALS model loses their user factors. See ecomlake.erasure.

Without --purge-history the current tables no longer show the users, but older table versions
(time travel, the change data feed, old `_delta_log` commits' column statistics) still hold
them until VACUUM removes the files after maintain.retention_hours and Delta's log cleanup drops
the commits (delta.logRetentionDuration, 30 days by default). --purge-history accepts losing
time travel to erase those too, at once: every table with a user column is vacuumed with a 0 h
retention and its log history before now is deleted (see maintenance.purge_log_history).
Incremental readers of those tables must then do a full refresh: the run record says which
tables lost history before which version (counts `history_purged_before:<table>`).
One ops/job_runs row (job 'forget') records the counts: ids requested, rows deleted per table,
model rows removed. It never holds an id.
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession

from ecomlake import erasure, maintenance, ops
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.config import pseudonymisation_key

log = logging.getLogger(__name__)
JOB = "forget"


def run(spark: SparkSession, config: dict, user_ids: str, purge_history: bool = False) -> dict:
    root = config["lake_root"]
    key = pseudonymisation_key(config)  # before any work: no key, no user_key to find
    erasure.require_ids_file(spark, user_ids)
    started, run_id = datetime.now(timezone.utc), ops.new_run_id(JOB)
    with ops.job_lease(spark, config, JOB, run_id):
        return _run(spark, root, key, user_ids, purge_history, started, run_id)


def _run(spark: SparkSession, root: str, key: bytes, user_ids: str, purge_history: bool, started: datetime,
         run_id: str) -> dict:
    ids = erasure.read_user_ids(spark, user_ids).persist(StorageLevel.MEMORY_AND_DISK)
    keys = erasure.keys_of(ids, key).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        id_rows, key_rows = ids.count(), keys.count()
        log.info("forget: %d distinct user ids requested (%d of them valid ids with a user_key)", id_rows, key_rows)
        delta_tables, datasets = maintenance.walk_lake(spark, root)
        with_users = [t for t in delta_tables
                      if erasure.holds_user_columns(spark.read.format("delta").load(t.path).columns)]
        rows_deleted = {}
        for table in with_users:
            rows_deleted[table.id] = erasure.erase_delta_table(spark, table, ids, id_rows, keys)
            log.info("forget: %s: %d rows deleted", table.id, rows_deleted[table.id])
        model_rows = erasure.erase_als_factors(spark, datasets, keys)  # before the indexes lose their rows
        for dataset in datasets:
            removed = erasure.erase_parquet_dataset(spark, dataset, ids, id_rows, keys)
            if removed:
                model_rows[dataset.id] = removed
        for dataset_id, removed in sorted(model_rows.items()):
            log.info("forget: %s: %d rows removed (Parquet rewritten)", dataset_id, removed)
    finally:
        ids.unpersist()
        keys.unpersist()
    purged = {}
    if purge_history:
        needs = maintenance.reader_needs(spark, root)
        for table in with_users:
            maintenance.vacuum(spark, table.path, 0.0)
            purged[table.id] = maintenance.purge_log_history(spark, table.path)
        log.info("forget: history purged in %d tables (VACUUM RETAIN 0 HOURS, log before the purge "
                 "checkpoint deleted): time travel to earlier versions is gone", len(purged))
        for need in needs:
            if need.table in purged and need.version < purged[need.table]:
                log.warning("forget: %s needs %s version %d, whose history is gone: its next run must do a "
                            "full refresh", need.needed_by, need.table, need.version)
    else:
        log.warning("forget: the current tables no longer hold these users, but older versions of %d tables "
                    "still do (time travel, change data feed, _delta_log statistics) until VACUUM removes their "
                    "files after maintain.retention_hours and Delta's log cleanup drops old commits; run again "
                    "with --purge-history to erase them now (loses time travel)", len(with_users))
    versions = {t.id: maintenance.latest_version(spark, t.path) for t in with_users}
    counts = {"ids_requested": id_rows, "keys_computed": key_rows,
              "rows_deleted": sum(rows_deleted.values()), "model_rows_deleted": sum(model_rows.values()),
              **{f"rows_deleted:{k}": v for k, v in rows_deleted.items()},
              **{f"model_rows_deleted:{k}": v for k, v in model_rows.items()},
              **{f"history_purged_before:{k}": v for k, v in purged.items()}}
    ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                   mode="purge_history" if purge_history else "delete",
                   args={"user_ids": user_ids, "purge_history": purge_history},
                   output_versions=versions, counts=counts,
                   details={"history_purged_before": purged, "tables_with_user_columns": [t.id for t in with_users]})
    log.info("forget: %d rows deleted from %d tables, %d model rows removed", counts["rows_deleted"],
             sum(1 for v in rows_deleted.values() if v), counts["model_rows_deleted"])
    return {"ids_requested": id_rows, "keys_computed": key_rows, "rows_deleted": rows_deleted,
            "model_rows_deleted": model_rows, "history_purged_before": purged}


def main(argv=None) -> int:
    parser = job_parser(JOB, __doc__)
    parser.add_argument("--user-ids", required=True, metavar="FILE",
                        help="text file with one raw user id per line (any Hadoop file system)")
    parser.add_argument("--purge-history", action="store_true",
                        help="also VACUUM with 0 h retention and delete the tables' log history "
                             "(erases old versions: accepts losing time travel)")
    return run_job(JOB, parser, lambda spark, config, a: run(spark, config, a.user_ids, a.purge_history), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

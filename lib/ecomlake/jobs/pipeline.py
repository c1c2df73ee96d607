"""pipeline: generate (when no --input is given) -> ingest -> clean -> sessionize, then a summary.

  ./spark-submit.sh pipeline                       # the embedded default: generated data, ./lakehouse
  ./spark-submit.sh pipeline --events 2000000      # a bigger generated dataset
  ./spark-submit.sh pipeline --input '/data/rees46/2019-*.csv'   # real REES46 files
  ./spark-submit.sh pipeline --input '/data/rees46/2019-*.csv' --catalog /data/products.csv

The product catalogue goes to bronze/products: the generated one always, a real one with --catalog;
with generate.product_images the generated product-image links go to bronze/product_image_links;
with generate.regions the generated customer master goes to bronze/customers (silver/customers by clean);
with generate.searches the generated search log goes to bronze/search_impressions.

Prints rows per table, quarantined rows by reason, sessions, conversion rate and wall time.
Every step is idempotent, so re-running the pipeline leaves the tables as they are.
"""
from __future__ import annotations

import logging
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, logs, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.jobs import clean, generate, ingest, sessionize

log = logging.getLogger(__name__)

SUMMARY_TABLES = (tables.BRONZE_EVENTS, tables.QUARANTINE_EVENTS, tables.SILVER_EVENTS,
                  tables.SILVER_SESSIONS, tables.GOLD_DAILY_FUNNEL)


def run(spark: SparkSession, config: dict, input_path: str | None = None, events: int | None = None,
        seed: int | None = None, catalog_path: str | None = None, full_refresh: bool = False) -> dict:
    started = time.time()
    timings = {}
    image_links = customers = search_files = None
    if input_path is None:
        t = time.time()
        with logs.log_step("generate", log):
            generate.run(spark, config, events=events, seed=seed)
        input_path = f"{config['generate']['output']}/events"
        catalog_path = catalog_path or f"{config['generate']['output']}/catalog/products.csv"
        if config["generate"]["product_images"]:
            image_links = f"{config['generate']['output']}/catalog/product_images.csv"
        if config["generate"]["regions"]:
            customers = f"{config['generate']['output']}/customers/customers.csv"
        if config["generate"]["searches"]:
            search_files = f"{config['generate']['output']}/search"
        timings["generate"] = time.time() - t
    steps = [("ingest", lambda: ingest.run(spark, config, "rees46", input_path))]
    if catalog_path:
        steps.append(("ingest catalogue", lambda: ingest.run(spark, config, "rees46_catalog", catalog_path)))
    if image_links:
        steps.append(("ingest product images", lambda: ingest.run(spark, config, "rees46_product_images", image_links)))
    if customers:
        steps.append(("ingest customers", lambda: ingest.run(spark, config, "customers", customers)))
    if search_files:
        steps.append(("ingest search log", lambda: ingest.run(spark, config, "search_log", search_files)))
    steps += [("clean", lambda: clean.run(spark, config, full_refresh=full_refresh)),
              ("sessionize", lambda: sessionize.run(spark, config, full_refresh=full_refresh))]
    results = {}
    for name, step in steps:
        t = time.time()
        with logs.log_step(name, log):
            results[name] = step()
        timings[name] = time.time() - t
    summary = summarize(spark, config["lake_root"])
    summary["wall_seconds"] = time.time() - started
    summary["step_seconds"] = timings
    summary["quarantined_files"] = results["ingest"].get("quarantined_files", 0)
    print_summary(summary, config["lake_root"])
    return summary


def summarize(spark: SparkSession, root: str) -> dict:
    rows = {t.id: lake.read_table(spark, root, t).count() for t in SUMMARY_TABLES}
    for catalog_table in (tables.BRONZE_PRODUCTS, tables.QUARANTINE_PRODUCTS):  # absent without a catalogue
        if lake.table_exists(spark, catalog_table.path(root)):
            rows[catalog_table.id] = lake.read_table(spark, root, catalog_table).count()
    reasons = {(r["stage"], r["reason"]): r["count"] for r in
               lake.read_table(spark, root, tables.QUARANTINE_EVENTS).groupBy("stage", "reason").count().collect()}
    sessions = (lake.read_table(spark, root, tables.SILVER_SESSIONS)
                .agg(F.count(F.lit(1)).alias("sessions"),
                     F.avg(F.col("converted").cast("int")).alias("conversion_rate")).head())
    return {"rows": rows, "quarantined": reasons, "sessions": sessions["sessions"],
            "conversion_rate": sessions["conversion_rate"]}


def print_summary(summary: dict, root: str) -> None:
    log.info(f"pipeline summary (lake: {root})")
    for table, n in summary["rows"].items():
        log.info(f"  {table:<22} {n:>12,} rows")
    log.info("  quarantined rows by reason:")
    for (stage, reason), n in sorted(summary["quarantined"].items()):
        log.info(f"    {stage:<7} {reason:<26} {n:>10,}")
    log.info(f"  sessions: {summary['sessions']:,}; session conversion rate: {summary['conversion_rate'] or 0:.2%}")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in summary["step_seconds"].items())
    log.info(f"  wall time: {summary['wall_seconds']:.1f} s ({steps})")


def main(argv=None) -> int:
    parser = job_parser("pipeline", __doc__)
    parser.add_argument("--input", help="REES46 files to ingest instead of generating data")
    parser.add_argument("--catalog", help="a product catalogue CSV to ingest into bronze/products "
                                          "(default: the generated one when no --input is given)")
    parser.add_argument("--events", type=int, help="events to generate (default: config generate.events)")
    parser.add_argument("--seed", type=int, help="generator seed (default: config generate.seed)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="clean and sessionize rebuild from all of bronze (default: only what changed)")
    return run_job("pipeline", parser,
                   lambda spark, config, a: run(spark, config, a.input, a.events, a.seed, a.catalog,
                                                a.full_refresh), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

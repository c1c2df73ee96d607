"""The product-search flow on a generated log, in a Spark session of its own (tests/test_search.py
runs it as a subprocess): generate (3,000 searches) -> ingest the catalogue and the search log ->
search --as-of -> search --query. Prints one JSON line with what the test checks.

Its own JVM because the flow's plans are large: late in the shared test session, on top of what
earlier tests left on the heap, it spent minutes in full GCs (measured 2026-12-03 at 2g and 3g).
"""
from __future__ import annotations

import json
import sys

from tests.conftest import TEST_SPARK_OVERRIDES


def main(tmp: str) -> None:
    from pyspark.sql import functions as F

    from ecomlake import config as cfg
    from ecomlake import lake, tables
    from ecomlake.jobs import generate, ingest
    from ecomlake.jobs import search as search_job
    from ecomlake.spark import get_spark

    config = cfg.load("local", overrides=[*TEST_SPARK_OVERRIDES, f"generate.output={tmp}/raw", "generate.searches=3000",
                                          "generate.events=2000", "search.candidates=30", "search.trees=60"],
                      lake=f"{tmp}/lake")
    spark = get_spark(config, "search-e2e")
    spark.sparkContext.setLogLevel("ERROR")
    generate.run(spark, config)
    raw = config["generate"]["output"]
    ingest.run(spark, config, "rees46_catalog", f"{raw}/catalog/products.csv")
    ingested = ingest.run(spark, config, "search_log", f"{raw}/search")
    quarantined = {r["reason"]: r["count"] for r in lake.read_table(spark, config["lake_root"],
                   tables.QUARANTINE_SEARCH_IMPRESSIONS).groupBy("reason").count().collect()}
    result = search_job.run(spark, config, "2019-11-17")
    answered = search_job.answer(spark, config, "Cheap Samsung phone!", user_id=512000141, k=5)
    served = lake.read_table(spark, config["lake_root"], tables.GOLD_MODEL_RUNS).where(
        F.col("model_path").isNotNull()).select("model").collect()
    print("SEARCH_E2E " + json.dumps({"ingested": ingested, "quarantined": quarantined, "result": result,
                                      "answered": answered, "served": [r["model"] for r in served]}, default=str))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])

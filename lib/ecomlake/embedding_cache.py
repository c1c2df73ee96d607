"""MiniLM embeddings of texts, computed once and kept in a silver table: review texts in
silver/review_embeddings, product texts and search queries in silver/product_text_embeddings and
silver/query_embeddings.

Embedding every clothing review takes ~4.5 minutes on 2 cores; a job that needs them reads the
ones already computed for the same key and the same text (keyed by the table's key column, e.g.
review_id, and a SHA-256 of the text) and embeds only the rest, appending them in one commit. Two runs at once may both
append the same review: readers keep one row per key, so a duplicate is harmless, and a run
killed before its append leaves nothing behind.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.models import sentiment

log = logging.getLogger(__name__)


def with_embeddings(spark: SparkSession, lake_root: str, messages: DataFrame, key: str = "message_id",
                    text_column: str = "raw_text", table: tables.Table = tables.SILVER_REVIEW_EMBEDDINGS,
                    table_key: str = "review_id") -> DataFrame:
    """messages + `embedding` (array<float>, 384, L2-normalised), from the cache table (its key
    column `table_key`) where it has the same key and text, computed (and cached) otherwise."""
    keyed = messages.withColumn("_text_sha", F.sha2(F.coalesce(F.col(text_column), F.lit("")), 256))
    if lake.table_exists(spark, table.path(lake_root)):
        done = lake.read_table(spark, lake_root, table).select(F.col(table_key).alias(key),
                                                               F.col("text_sha").alias("_text_sha"))
        missing = keyed.join(done, [key, "_text_sha"], "left_anti")
    else:
        missing = keyed
    new = (sentiment.embed(missing.select(key, "_text_sha", text_column)
                           .repartition(max(2, spark.sparkContext.defaultParallelism * 2)), text_column)
           .select(F.col(key).alias(table_key), F.col("_text_sha").alias("text_sha"), "embedding"))
    n_new = missing.count()
    if n_new:
        log.info(f"embedding {n_new:,} texts not in {table.id} yet (MiniLM)")
        lake.append_table(new, lake_root, table)
    cached = (lake.read_table(spark, lake_root, table).dropDuplicates([table_key, "text_sha"])
              .select(F.col(table_key).alias(key), F.col("text_sha").alias("_text_sha"), "embedding"))
    return keyed.join(cached, [key, "_text_sha"]).drop("_text_sha")

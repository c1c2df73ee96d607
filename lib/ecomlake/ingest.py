"""Raw source lines -> bronze rows and quarantined rows (pure DataFrame transforms)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecomlake import rees46
from ecomlake.quarantine import quarantine_rows

BRONZE_COLUMNS = (*rees46.COLUMNS, "_source_file", "_batch_id", "_ingested_at")


def classify_rees46_lines(lines: DataFrame) -> DataFrame:
    """lines(value, _source_file, _batch_id, _ingested_at) without header lines ->
    the REES46 fields as text plus `_reject_reason` (null when the line is accepted)."""
    split = rees46.split_lines(lines)
    return split.withColumn("_reject_reason", rees46.ingest_reject_reason())


def bronze_rows(classified: DataFrame) -> DataFrame:
    """Accepted lines as bronze rows: the source text verbatim (so a parsing fix can be replayed) + lineage."""
    return classified.where(F.col("_reject_reason").isNull()).select(*BRONZE_COLUMNS)


def rejected_rows(classified: DataFrame) -> DataFrame:
    return quarantine_rows(classified.where(F.col("_reject_reason").isNotNull()),
                           "ingest", F.col("_reject_reason"), F.col("value"))


def drop_headers(lines: DataFrame, header: str) -> DataFrame:
    """Drop lines that are the header (each file starts with one; a BOM or spaces do not matter)."""
    return lines.where(F.trim(F.regexp_replace(F.col("value"), "^\ufeff", "")) != F.lit(header))

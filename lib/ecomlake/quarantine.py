"""One shape for rejected rows, whichever stage rejected them, so analysts query one table."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomlake import rees46

LINEAGE_COLUMNS = ("_source_file", "_batch_id", "_ingested_at")


def quarantine_rows(df: DataFrame, stage: str, reason: Column, raw_line: Column) -> DataFrame:
    """Rows of df as quarantine records: stage, reason, the raw line (when known), source fields as text."""
    return df.select(
        F.lit(stage).alias("stage"),
        reason.alias("reason"),
        raw_line.cast("string").alias("raw_line"),
        *[F.col(c).cast("string").alias(c) for c in rees46.COLUMNS],
        *LINEAGE_COLUMNS,
    )

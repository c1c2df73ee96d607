"""One shape for rejected rows, whichever stage rejected them, so analysts query one table."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomlake import rees46

LINEAGE_COLUMNS = ("_source_file", "_batch_id", "_ingested_at")
# The event date parsed from the raw event_time (null when it does not parse): bronze/events is
# partitioned by it, and clean recomputes whole dates, so a date is the unit of incremental work.
EVENT_DATE_COLUMN = "_event_date"


def event_date_of_raw_time() -> Column:
    return F.to_date(rees46.typed("event_time")).alias(EVENT_DATE_COLUMN)


def quarantine_rows(df: DataFrame, stage: str, reason: Column, raw_line: Column) -> DataFrame:
    """Rows of df as quarantine records: stage, reason, the raw line (when known), source fields as text."""
    return df.select(
        F.lit(stage).alias("stage"),
        reason.alias("reason"),
        raw_line.cast("string").alias("raw_line"),
        *[F.col(c).cast("string").alias(c) for c in rees46.COLUMNS],
        *LINEAGE_COLUMNS,
        event_date_of_raw_time(),
    )

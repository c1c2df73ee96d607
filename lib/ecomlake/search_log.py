"""The search-log CSV format (search/<yyyy-mm-dd>.csv from `generate`, or a shop's own export with
the same header): one line per result shown, so a search of 10 results is 10 lines.

  search_time   when the search ran, "2019-10-01 08:15:02 UTC" (REES46's timestamp format)
  search_id     one id per search (shared by its result lines)
  user_id       who searched (the same ids as the events)
  query         the text typed, lower case; quoted when it holds a comma
  position      the result's position on the page, 1 = top
  product_id    the product shown there
  clicked       1 when the user clicked it, else 0
  purchased     1 when the user bought it from the results, else 0

One home for how a raw field becomes a typed value and why a line is rejected: `ingest --source
search_log` keeps the typed lines in bronze/search_impressions and the others, with their reason,
in quarantine/search_impressions.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomlake import rees46
from ecomlake.quarantine import LINEAGE_COLUMNS

COLUMNS = ("search_time", "search_id", "user_id", "query", "position", "product_id", "clicked", "purchased")
HEADER = ",".join(COLUMNS)
DATE_COLUMN = "search_date"  # bronze/search_impressions is partitioned by it
FLAG_COLUMNS = ("clicked", "purchased")
TYPES = {"search_time": "timestamp", "search_id": "string", "user_id": "bigint", "query": "string",
         "position": "int", "product_id": "bigint", "clicked": "int", "purchased": "int"}


def typed(column: str) -> Column:
    """The typed value of a raw search-log field: null when empty or when it does not parse."""
    if column == "search_time":
        return F.expr(f"try_to_timestamp(nullif(trim(`{column}`), ''), '{rees46.TIMESTAMP_PATTERN}')")
    if TYPES[column] in ("bigint", "int"):
        return F.expr(f"try_cast(nullif(trim(`{column}`), '') as {TYPES[column]})")
    if column == "query":
        return F.nullif(F.lower(F.trim(F.col(column))), F.lit(""))
    return F.nullif(F.trim(F.col(column)), F.lit(""))


def reject_reason() -> Column:
    """Why a split line is rejected (null = accepted), checked in this order: its shape, a field
    that does not parse, a required field that is missing, a position below 1, a flag that is not
    0/1, a purchase without a click."""
    reason = rees46.ingest_reject_reason(COLUMNS, ())
    for column in COLUMNS:
        if column not in ("search_id", "query"):
            present = F.nullif(F.trim(F.col(column)), F.lit("")).isNotNull()
            reason = reason.when(present & typed(column).isNull(), F.lit(f"unparseable_{column}"))
    for column in COLUMNS:
        if column not in FLAG_COLUMNS:
            reason = reason.when(typed(column).isNull(), F.lit(f"missing_{column}"))
    reason = reason.when(typed("position") < 1, F.lit("bad_position"))
    for column in FLAG_COLUMNS:
        reason = reason.when(~F.coalesce(typed(column), F.lit(0)).isin(0, 1), F.lit(f"bad_{column}"))
    return reason.when((F.coalesce(typed("purchased"), F.lit(0)) == 1) & (F.coalesce(typed("clicked"), F.lit(0)) == 0),
                       F.lit("purchase_without_click"))


def classify_lines(lines: DataFrame) -> DataFrame:
    """lines(value, _source_file, _batch_id, _ingested_at) without header lines -> the typed fields
    (a missing flag is 0), `raw_line`, lineage, the search date and `_reject_reason` (null when
    the line is accepted)."""
    split = rees46.split_lines(lines, columns=COLUMNS)
    values = [F.coalesce(typed(c), F.lit(0)) if c in FLAG_COLUMNS else typed(c) for c in COLUMNS]
    return split.select(*[v.alias(c) for v, c in zip(values, COLUMNS)], F.col("value").alias("raw_line"),
                        *LINEAGE_COLUMNS, F.to_date(typed("search_time")).alias(DATE_COLUMN),
                        reject_reason().alias("_reject_reason"))


def bronze_rows(classified: DataFrame) -> DataFrame:
    return classified.where(F.col("_reject_reason").isNull()).select(*COLUMNS, *LINEAGE_COLUMNS, DATE_COLUMN)


def rejected_rows(classified: DataFrame) -> DataFrame:
    """Rejected lines: stage, reason, the raw line, the fields as text (null where they did not
    parse), lineage and the search date (null when the time did not parse)."""
    return classified.where(F.col("_reject_reason").isNotNull()).select(
        F.lit("ingest").alias("stage"), F.col("_reject_reason").alias("reason"), "raw_line",
        *[F.col(c).cast("string").alias(c) for c in COLUMNS], *LINEAGE_COLUMNS, DATE_COLUMN)

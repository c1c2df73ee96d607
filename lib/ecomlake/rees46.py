"""The REES46 "eCommerce behavior data from multi category store" CSV format: columns and parsing.

One home for how a raw field becomes a typed value: `ingest` uses it to reject what cannot be
parsed, `clean` uses it to type what ingest accepted.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

COLUMNS = (
    "event_time", "event_type", "product_id", "category_id", "category_code",
    "brand", "price", "user_id", "user_session",
)
HEADER = ",".join(COLUMNS)
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
TIMESTAMP_PATTERN = "yyyy-MM-dd HH:mm:ss z"  # "2019-10-01 00:00:00 UTC": the zone is in the text
LONG_COLUMNS = ("product_id", "category_id", "user_id")
# Columns whose non-empty text must parse, in the order ingest checks them.
PARSED_COLUMNS = ("event_time", "product_id", "category_id", "price", "user_id")
_CSV_SCHEMA = ", ".join(f"{c} string" for c in COLUMNS)
_COMMAS_OUTSIDE_QUOTES = ',(?=(?:[^"]*"[^"]*")*[^"]*$)'


def typed(column: str) -> Column:
    """The typed value of a raw REES46 field: null when empty or when it does not parse."""
    if column == "event_time":
        return F.expr(f"try_to_timestamp(nullif(trim(`{column}`), ''), '{TIMESTAMP_PATTERN}')")
    if column in LONG_COLUMNS:
        return F.expr(f"try_cast(nullif(trim(`{column}`), '') as bigint)")
    if column == "price":
        return F.expr(f"try_cast(nullif(trim(`{column}`), '') as double)")
    return F.nullif(F.trim(F.col(column)), F.lit(""))


def split_lines(lines: DataFrame, value: str = "value") -> DataFrame:
    """Raw CSV lines -> the REES46 fields as text (null when empty) plus `_column_count`.

    Keeps every other input column. Quoted fields may contain commas.
    """
    has_quote = F.instr(F.col(value), '"') > 0
    column_count = F.when(F.length(F.col(value)) == 0, F.lit(0)).when(
        has_quote, F.size(F.split(F.col(value), _COMMAS_OUTSIDE_QUOTES))
    ).otherwise(F.size(F.split(F.col(value), ",")))
    fields = F.from_csv(F.col(value), _CSV_SCHEMA)
    return lines.select("*", column_count.alias("_column_count"), fields.alias("_fields")).select(
        *[c for c in lines.columns], "_column_count", *[F.col(f"_fields.{c}").alias(c) for c in COLUMNS])


def ingest_reject_reason() -> Column:
    """Why ingest rejects a split line (null = accepted): wrong shape, or a field that does not parse."""
    column_count = F.col("_column_count")
    reason = F.when(column_count == 0, F.lit("empty_line")).when(
        column_count != len(COLUMNS), F.lit("wrong_column_count"))
    for column in PARSED_COLUMNS:
        present = F.nullif(F.trim(F.col(column)), F.lit("")).isNotNull()
        reason = reason.when(present & typed(column).isNull(), F.lit(f"unparseable_{column}"))
    return reason

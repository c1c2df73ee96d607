"""The REES46 "eCommerce behavior data from multi category store" CSV format: columns and parsing,
and the product catalogue CSV that `generate` writes beside the events.

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
LONG_COLUMNS = ("product_id", "category_id", "user_id", "image_id")
PRICE_COLUMNS = ("price", "base_price")
# Columns whose non-empty text must parse, in the order ingest checks them.
PARSED_COLUMNS = ("event_time", "product_id", "category_id", "price", "user_id")

# The catalogue (catalog/products.csv from `generate`). REES46 itself ships none; any catalogue
# export with this header ingests the same way (`ingest --source rees46_catalog`).
CATALOG_COLUMNS = ("product_id", "category_id", "category_code", "brand", "base_price")
CATALOG_HEADER = ",".join(CATALOG_COLUMNS)
CATALOG_PARSED_COLUMNS = ("product_id", "category_id", "base_price")
# The product-image links (catalog/product_images.csv from `generate --conf generate.product_images=true`):
# which image shows each product (image_id as in bronze/product_images).
PRODUCT_IMAGE_COLUMNS = ("product_id", "image_id")
PRODUCT_IMAGE_HEADER = ",".join(PRODUCT_IMAGE_COLUMNS)
# The customer master (customers/customers.csv from `generate --conf generate.regions=true`).
CUSTOMER_COLUMNS = ("user_id", "signup_date", "region", "city", "latitude", "longitude")
CUSTOMER_PARSED_COLUMNS = ("user_id", "signup_date", "latitude", "longitude")
DATE_COLUMNS = ("signup_date",)
COORDINATE_COLUMNS = ("latitude", "longitude")
_COMMAS_OUTSIDE_QUOTES = ',(?=(?:[^"]*"[^"]*")*[^"]*$)'


def typed(column: str) -> Column:
    """The typed value of a raw REES46 field: null when empty or when it does not parse."""
    if column == "event_time":
        return F.expr(f"try_to_timestamp(nullif(trim(`{column}`), ''), '{TIMESTAMP_PATTERN}')")
    if column in LONG_COLUMNS:
        return F.expr(f"try_cast(nullif(trim(`{column}`), '') as bigint)")
    if column in PRICE_COLUMNS or column in COORDINATE_COLUMNS:
        return F.expr(f"try_cast(nullif(trim(`{column}`), '') as double)")
    if column in DATE_COLUMNS:
        return F.expr(f"to_date(try_to_timestamp(nullif(trim(`{column}`), ''), 'yyyy-MM-dd'))")
    return F.nullif(F.trim(F.col(column)), F.lit(""))


def split_lines(lines: DataFrame, value: str = "value", columns: tuple[str, ...] = COLUMNS) -> DataFrame:
    """Raw CSV lines -> the fields (REES46 events unless `columns` says otherwise) as text, null
    when empty, plus `_column_count`.

    Keeps every other input column. Quoted fields may contain commas.
    """
    has_quote = F.instr(F.col(value), '"') > 0
    column_count = F.when(F.length(F.col(value)) == 0, F.lit(0)).when(
        has_quote, F.size(F.split(F.col(value), _COMMAS_OUTSIDE_QUOTES))
    ).otherwise(F.size(F.split(F.col(value), ",")))
    fields = F.from_csv(F.col(value), ", ".join(f"{c} string" for c in columns))
    return lines.select("*", column_count.alias("_column_count"), fields.alias("_fields")).select(
        *[c for c in lines.columns], "_column_count", *[F.col(f"_fields.{c}").alias(c) for c in columns])


def ingest_reject_reason(columns: tuple[str, ...] = COLUMNS,
                         parsed_columns: tuple[str, ...] = PARSED_COLUMNS) -> Column:
    """Why ingest rejects a split line (null = accepted): wrong shape, or a field that does not parse."""
    column_count = F.col("_column_count")
    reason = F.when(column_count == 0, F.lit("empty_line")).when(
        column_count != len(columns), F.lit("wrong_column_count"))
    for column in parsed_columns:
        present = F.nullif(F.trim(F.col(column)), F.lit("")).isNotNull()
        reason = reason.when(present & typed(column).isNull(), F.lit(f"unparseable_{column}"))
    return reason

"""Raw source lines -> bronze rows and quarantined rows (pure DataFrame transforms)."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecomlake import rees46
from ecomlake.quarantine import EVENT_DATE_COLUMN, LINEAGE_COLUMNS, event_date_of_raw_time, quarantine_rows

BRONZE_COLUMNS = (*rees46.COLUMNS, *LINEAGE_COLUMNS, EVENT_DATE_COLUMN)


def invalid_utf8(value: str = "value") -> Column:
    """True when a line's bytes are not valid UTF-8. Spark keeps the raw bytes of a text line;
    turning them into characters replaces each bad byte with U+FFFD, so the two differ."""
    return F.encode(F.col(value), "UTF-8") != F.col(value).cast("binary")


def classify_rees46_lines(lines: DataFrame) -> DataFrame:
    """lines(value, _source_file, _batch_id, _ingested_at) without header lines ->
    the REES46 fields as text plus `_reject_reason` (null when the line is accepted).

    A line that is not valid UTF-8 (a Latin-1 export, a broken byte) is rejected as
    `invalid_utf8` rather than stored with U+FFFD in place of its bytes; its raw line is kept
    decoded as ISO-8859-1, which maps every byte to one character (nothing is lost).
    """
    bad_bytes = invalid_utf8()
    readable = lines.withColumn("_invalid_utf8", bad_bytes).withColumn(
        "value", F.when(F.col("_invalid_utf8"), F.decode(F.col("value").cast("binary"), "ISO-8859-1"))
        .otherwise(F.col("value")))
    split = rees46.split_lines(readable)
    reason = F.when(F.col("_invalid_utf8"), F.lit("invalid_utf8")).otherwise(rees46.ingest_reject_reason())
    return split.withColumn("_reject_reason", reason).drop("_invalid_utf8")


def bronze_rows(classified: DataFrame) -> DataFrame:
    """Accepted lines as bronze rows: the source text verbatim (so a parsing fix can be replayed),
    lineage, and the event date (the partition column)."""
    return (classified.where(F.col("_reject_reason").isNull())
            .select(*rees46.COLUMNS, *LINEAGE_COLUMNS, event_date_of_raw_time()))


def rejected_rows(classified: DataFrame) -> DataFrame:
    return quarantine_rows(classified.where(F.col("_reject_reason").isNotNull()),
                           "ingest", F.col("_reject_reason"), F.col("value"))


def drop_headers(lines: DataFrame, header: str) -> DataFrame:
    """Drop lines that are the header (each file starts with one; a BOM or spaces do not matter)."""
    return lines.where(F.trim(F.regexp_replace(F.col("value"), "^\ufeff", "")) != F.lit(header))


def classify_catalog_lines(lines: DataFrame, columns: tuple[str, ...] = rees46.CATALOG_COLUMNS,
                           parsed_columns: tuple[str, ...] = rees46.CATALOG_PARSED_COLUMNS,
                           key: str = "product_id", required: tuple[str, ...] = ()) -> DataFrame:
    """Snapshot lines(value, _source_file, _batch_id, _ingested_at) without header lines -> typed
    rows (the catalogue's columns unless `columns` says otherwise: the product-image links and the
    customer master use the same snapshot format), `raw_line`, lineage and `_reject_reason` (null
    when accepted).

    A `key` (product_id, user_id) is one row: when several lines carry the same key, the first (by
    source file, then line text, so a re-run picks the same one) is kept and the others are rejected
    as `duplicate_<key>`, never silently dropped. A price must be positive when given, coordinates
    must be on the globe, any other parsed column (the image links' image_id) and every `required`
    text column (the customers' region) must be there.
    """
    split = rees46.split_lines(lines, columns=columns)
    reason = rees46.ingest_reject_reason(columns, parsed_columns).when(F.col(key).isNull(), F.lit(f"missing_{key}"))
    for column in (*parsed_columns, *required):
        if column not in rees46.CATALOG_PARSED_COLUMNS and column != key:
            reason = reason.when(rees46.typed(column).isNull(), F.lit(f"missing_{column}"))
    if "base_price" in columns:
        reason = reason.when(rees46.typed("base_price") <= 0, F.lit("bad_base_price"))
    if "latitude" in columns:
        reason = reason.when(~rees46.typed("latitude").between(-90, 90) | ~rees46.typed("longitude").between(-180, 180),
                             F.lit("bad_coordinates"))
    typed = split.select(*[rees46.typed(c).alias(c) for c in columns], F.col("value").alias("raw_line"),
                         *LINEAGE_COLUMNS, reason.alias("_reject_reason"))
    accepted = F.col("_reject_reason").isNull()
    line_of_key = Window.partitionBy(key, accepted).orderBy("_source_file", "raw_line")
    duplicate = accepted & (F.row_number().over(line_of_key) > 1)
    return typed.withColumn("_reject_reason", F.when(duplicate, F.lit(f"duplicate_{key}"))
                            .otherwise(F.col("_reject_reason")))


def catalog_bronze_rows(classified: DataFrame, columns: tuple[str, ...] = rees46.CATALOG_COLUMNS) -> DataFrame:
    return classified.where(F.col("_reject_reason").isNull()).select(*columns, *LINEAGE_COLUMNS)


def catalog_rejected_rows(classified: DataFrame, columns: tuple[str, ...] = rees46.CATALOG_COLUMNS) -> DataFrame:
    """Rejected catalogue lines: stage, reason, the raw line, the fields that did parse, lineage."""
    return classified.where(F.col("_reject_reason").isNotNull()).select(
        F.lit("ingest").alias("stage"), F.col("_reject_reason").alias("reason"), "raw_line",
        *columns, *LINEAGE_COLUMNS)

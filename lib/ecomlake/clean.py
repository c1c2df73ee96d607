"""bronze/events -> silver/events: typed, validated, deduplicated, pseudonymised (pure transforms)."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecomlake import rees46
from ecomlake.errors import require_columns
from ecomlake.privacy import pseudonymise
from ecomlake.quarantine import quarantine_rows

SILVER_COLUMNS = (
    "event_time", "event_date", "event_type", "product_id", "category_id", "category_code",
    "brand", "price", "user_key", "user_session", "_source_file", "_batch_id", "_ingested_at",
)
# Every reason clean can give, in the order it checks them (a row gets the first that applies).
REASONS = (
    "missing_event_time", "unparseable_event_time", "missing_event_type", "unknown_event_type",
    "missing_user_id", "unparseable_user_id", "missing_product_id", "unparseable_product_id",
    "missing_price", "unparseable_price", "negative_price", "absurd_price",
    "event_in_future", "event_too_old", "duplicate",
)


def validate_events(bronze: DataFrame, max_price: float, min_event_time: str,
                    future_tolerance_minutes: int) -> DataFrame:
    """Bronze rows with typed columns (prefixed `t_`) and `_reject_reason` (null = valid).

    Exact duplicates are rows whose source fields are all equal; the earliest ingested copy stays.
    `event_in_future` compares with the row's own ingest time, so re-running gives the same answer.
    """
    require_columns(bronze, [*rees46.COLUMNS, "_source_file", "_batch_id", "_ingested_at"], "bronze/events")
    typed = bronze.select("*", *[rees46.typed(c).alias(f"t_{c}") for c in rees46.COLUMNS])
    first_copy = Window.partitionBy(*rees46.COLUMNS).orderBy("_ingested_at", "_source_file", "_batch_id")
    typed = typed.withColumn("_copy", F.row_number().over(first_copy))

    def missing(c):
        return F.nullif(F.trim(F.col(c)), F.lit("")).isNull()

    t = {c: F.col(f"t_{c}") for c in rees46.COLUMNS}
    latest = F.col("_ingested_at") + F.expr(f"INTERVAL {int(future_tolerance_minutes)} MINUTES")
    reason = (
        F.when(missing("event_time"), "missing_event_time")
        .when(t["event_time"].isNull(), "unparseable_event_time")
        .when(missing("event_type"), "missing_event_type")
        .when(~F.lower(F.trim(F.col("event_type"))).isin(*rees46.EVENT_TYPES), "unknown_event_type")
        .when(missing("user_id"), "missing_user_id")
        .when(t["user_id"].isNull(), "unparseable_user_id")
        .when(missing("product_id"), "missing_product_id")
        .when(t["product_id"].isNull(), "unparseable_product_id")
        .when(missing("price"), "missing_price")
        .when(t["price"].isNull(), "unparseable_price")
        .when(t["price"] < 0, "negative_price")
        .when(t["price"] > F.lit(float(max_price)), "absurd_price")
        .when(t["event_time"] > latest, "event_in_future")
        .when(t["event_time"] < F.to_timestamp(F.lit(min_event_time)), "event_too_old")
        .when(F.col("_copy") > 1, "duplicate")
    )
    return typed.withColumn("_reject_reason", reason)


def silver_rows(validated: DataFrame, key: bytes) -> DataFrame:
    """Valid rows, typed, with user_id replaced by its pseudonym user_key."""
    rows = validated.where(F.col("_reject_reason").isNull()).select(
        F.col("t_event_time").alias("event_time"),
        F.to_date("t_event_time").alias("event_date"),
        F.lower(F.trim(F.col("event_type"))).alias("event_type"),
        F.col("t_product_id").alias("product_id"),
        F.col("t_category_id").alias("category_id"),
        F.col("t_category_code").alias("category_code"),
        F.col("t_brand").alias("brand"),
        F.col("t_price").alias("price"),
        F.col("t_user_id").alias("user_id"),
        F.col("t_user_session").alias("user_session"),
        "_source_file", "_batch_id", "_ingested_at",
    )
    return pseudonymise(rows, "user_id", "user_key", key).select(*SILVER_COLUMNS)


def rejected_rows(validated: DataFrame) -> DataFrame:
    return quarantine_rows(validated.where(F.col("_reject_reason").isNotNull()),
                           "clean", F.col("_reject_reason"), F.lit(None))


def silver_customers(bronze: DataFrame, key: bytes) -> DataFrame:
    """bronze/customers with user_id replaced by its pseudonym user_key (the same as in silver/events)."""
    require_columns(bronze, [*rees46.CUSTOMER_COLUMNS, "_source_file", "_batch_id", "_ingested_at"], "bronze/customers")
    return pseudonymise(bronze, "user_id", "user_key", key).select(
        "user_key", *[c for c in rees46.CUSTOMER_COLUMNS if c != "user_id"], "_source_file", "_batch_id", "_ingested_at")

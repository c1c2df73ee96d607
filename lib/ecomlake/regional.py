"""Demand by region over time (issue 16 §1): pure DataFrame functions over silver/events and the
customer master (silver/customers). A user without a customer record counts under 'unknown'."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecomlake.errors import require_columns
from ecomlake.models import elasticity
from ecomlake.sessionize import top_category

UNKNOWN_REGION = "unknown"


def events_with_region(events: DataFrame, customers: DataFrame) -> DataFrame:
    """events + region (the user's, from the customer master) + top_category (category_code's
    first word, 'unknown' when uncoded)."""
    require_columns(events, ["event_date", "event_time", "event_type", "product_id", "price", "user_key",
                             "user_session", "category_code"], "silver/events")
    require_columns(customers, ["user_key", "region"], "silver/customers")
    return (events.join(customers.select("user_key", "region"), "user_key", "left")
            .withColumn("region", F.coalesce("region", F.lit(UNKNOWN_REGION)))
            .withColumn("top_category", top_category(F.col("category_code"))))


def _demand(frame: DataFrame, keys: list[str]) -> DataFrame:
    purchase = F.col("event_type") == "purchase"
    return (frame.groupBy(*keys).agg(
        F.sum(purchase.cast("long")).alias("units"),
        F.round(F.sum(F.when(purchase, F.col("price")).otherwise(0.0)), 2).alias("revenue"),
        F.countDistinct("user_session").alias("sessions"),
        F.countDistinct(F.when(purchase, F.col("user_session"))).alias("buying_sessions"))
        .withColumn("conversion", F.round(F.col("buying_sessions") / F.col("sessions"), 6)))


def regional_demand(events: DataFrame) -> DataFrame:
    """region x day x top category: units (purchases), revenue, sessions (that touched the
    category), buying sessions, conversion = buying sessions / sessions."""
    return _demand(events, ["region", "event_date", "top_category"])


def regional_daily(events: DataFrame) -> DataFrame:
    """region x day over every category: the same measures."""
    return _demand(events, ["region", "event_date"])


def with_trailing_week(daily: DataFrame, days: int = 7) -> DataFrame:
    """regional_daily + sessions_7d, buying_sessions_7d and conversion_7d: the region's last `days`
    days up to each day (a week of sessions says more than one day's: a regional promotion week
    shows there)."""
    week = (Window.partitionBy("region").orderBy(F.datediff("event_date", F.lit("1970-01-01")))
            .rangeBetween(-(days - 1), 0))
    return (daily.withColumn("sessions_7d", F.sum("sessions").over(week))
            .withColumn("buying_sessions_7d", F.sum("buying_sessions").over(week))
            .withColumn("conversion_7d", F.round(F.col("buying_sessions_7d") / F.col("sessions_7d"), 6)))


def price_response_by_region(located: DataFrame) -> DataFrame:
    """Per region and category the price elasticity of conversion (elasticity.price_bins and
    elasticities, split by region), next to the category's over every region (pooled_elasticity)."""
    per_region = elasticity.elasticities(elasticity.price_bins(located, by=("region",)), by=("region",))
    pooled = elasticity.elasticities(elasticity.price_bins(located)).select(
        "category_code", F.col("elasticity").alias("pooled_elasticity"))
    return per_region.join(pooled, "category_code", "left")

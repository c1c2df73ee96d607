"""silver/events -> sessions and the daily funnel (pure transforms, window functions only)."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecomlake.errors import require_columns


def _type_order():
    """Events at the same second are ordered like a funnel, so a cart never precedes its view."""
    return (F.when(F.col("event_type") == "view", 0).when(F.col("event_type") == "cart", 1)
            .when(F.col("event_type") == "remove_from_cart", 2).otherwise(3))

SESSION_COLUMNS = (
    "session_id", "user_key", "session_number", "session_start", "session_end", "session_date",
    "duration_seconds", "events", "views", "carts", "removes", "purchases", "distinct_products",
    "revenue", "converted", "first_category",
)


def assign_sessions(events: DataFrame, gap_minutes: int) -> DataFrame:
    """Add `session_number` (1, 2, ... per user in time order): a gap of more than gap_minutes
    since the user's previous event starts a new session. Input order does not matter."""
    require_columns(events, ["user_key", "event_time", "event_type", "product_id"], "silver/events")
    order = Window.partitionBy("user_key").orderBy("event_time", "_type_order", "product_id")
    gap_seconds = F.unix_timestamp("event_time") - F.unix_timestamp(F.lag("event_time").over(order))
    starts = F.when(gap_seconds.isNull() | (gap_seconds > gap_minutes * 60), 1).otherwise(0)
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return (events
            .withColumn("_type_order", _type_order())
            .withColumn("_starts_session", starts)
            .withColumn("session_number", F.sum("_starts_session").over(running).cast("int"))
            .drop("_starts_session"))


def _is(event_type: str):
    return F.when(F.col("event_type") == event_type, 1).otherwise(0)


def sessions(sessionized: DataFrame) -> DataFrame:
    """One row per (user_key, session_number) with its start, end, counts, revenue and conversion."""
    first_event = F.struct("event_time", "_type_order", "product_id")
    return (sessionized
            .groupBy("user_key", "session_number")
            .agg(F.min("event_time").alias("session_start"),
                 F.max("event_time").alias("session_end"),
                 F.count(F.lit(1)).alias("events"),
                 F.sum(_is("view")).alias("views"),
                 F.sum(_is("cart")).alias("carts"),
                 F.sum(_is("remove_from_cart")).alias("removes"),
                 F.sum(_is("purchase")).alias("purchases"),
                 # size(collect_set) is one hash aggregate; countDistinct adds an Expand and a shuffle.
                 F.size(F.collect_set("product_id")).alias("distinct_products"),
                 F.sum(F.when(F.col("event_type") == "purchase", F.col("price")).otherwise(0.0)).alias("revenue"),
                 F.min_by("category_code", first_event).alias("first_category"))
            .withColumn("session_id", F.xxhash64("user_key", "session_start"))
            .withColumn("session_date", F.to_date("session_start"))
            .withColumn("duration_seconds",
                        (F.unix_timestamp("session_end") - F.unix_timestamp("session_start")).cast("long"))
            .withColumn("revenue", F.round("revenue", 2))
            .withColumn("converted", F.col("purchases") > 0)
            .select(*SESSION_COLUMNS))


def top_category(category_code):
    """'electronics.audio.headphone' -> 'electronics'; uncoded -> 'unknown'."""
    return F.coalesce(F.split(category_code, r"\.").getItem(0), F.lit("unknown"))


def daily_funnel(sessionized: DataFrame) -> DataFrame:
    """Per day and top-level category: events and sessions at each funnel step, and the rates
    between steps (sessions that carted / sessions that viewed, and so on)."""
    per_session = (sessionized
                   .withColumn("category", top_category(F.col("category_code")))
                   .groupBy("event_date", "category", "user_key", "session_number")
                   .agg(F.sum(_is("view")).alias("view_events"),
                        F.sum(_is("cart")).alias("cart_events"),
                        F.sum(_is("purchase")).alias("purchase_events"),
                        F.sum(F.when(F.col("event_type") == "purchase", F.col("price")).otherwise(0.0)).alias("revenue")))

    def sessions_with(column):
        return F.sum(F.when(F.col(column) > 0, 1).otherwise(0))

    def rate(numerator, denominator):
        return F.when(F.col(denominator) > 0, F.round(F.col(numerator) / F.col(denominator), 6))

    return (per_session
            .groupBy("event_date", "category")
            .agg(F.sum("view_events").alias("views"),
                 F.sum("cart_events").alias("carts"),
                 F.sum("purchase_events").alias("purchases"),
                 sessions_with("view_events").alias("sessions_with_view"),
                 sessions_with("cart_events").alias("sessions_with_cart"),
                 sessions_with("purchase_events").alias("sessions_with_purchase"),
                 F.round(F.sum("revenue"), 2).alias("revenue"))
            .withColumn("view_to_cart_rate", rate("sessions_with_cart", "sessions_with_view"))
            .withColumn("cart_to_purchase_rate", rate("sessions_with_purchase", "sessions_with_cart"))
            .withColumn("view_to_purchase_rate", rate("sessions_with_purchase", "sessions_with_view")))


# ---- incremental sessionization --------------------------------------------------------------
# New, late or removed events can only change the sessions near them. For each user with changed
# events, the region to recompute is the span of those events joined with every existing session
# that lies within the gap of them (such a session may merge with or split around a changed
# event). Sessions outside the region are more than the gap away from every event inside it, so
# recomputing the region from its events gives exactly what a full rebuild gives; session numbers
# after the region shift by the change in the region's session count.

def session_regions(changed: DataFrame, sessions_df: DataFrame, gap_minutes: int) -> DataFrame:
    """changed(user_key, event_time) + existing sessions -> (user_key, region_start, region_end):
    per user, the time span whose sessions must be recomputed."""
    gap = F.expr(f"INTERVAL {int(gap_minutes)} MINUTES")
    bounds = changed.groupBy("user_key").agg(F.min("event_time").alias("_tmin"), F.max("event_time").alias("_tmax"))
    near = (sessions_df.select("user_key", "session_start", "session_end")
            .join(bounds, "user_key")
            .where((F.col("session_end") >= F.col("_tmin") - gap) & (F.col("session_start") <= F.col("_tmax") + gap))
            .groupBy("user_key")
            .agg(F.min("session_start").alias("_smin"), F.max("session_end").alias("_smax")))
    return (bounds.join(near, "user_key", "left")
            .select("user_key", F.least("_tmin", "_smin").alias("region_start"),
                    F.greatest("_tmax", "_smax").alias("region_end")))


def session_updates(events: DataFrame, regions: DataFrame, sessions_df: DataFrame, gap_minutes: int) -> DataFrame:
    """The rows that bring silver/sessions up to date: SESSION_COLUMNS + `_op` ('upsert' or 'delete').

    events: silver events covering every region (more is fine); regions: from session_regions;
    sessions_df: the current sessions. Upserts are the recomputed sessions of each region (numbered
    after the user's sessions before it) and the user's later sessions whose number shifts;
    deletes are the region's old sessions that no longer start at the same time.
    """
    in_region = (events.join(regions, "user_key")
                 .where(F.col("event_time").between(F.col("region_start"), F.col("region_end")))
                 .drop("region_start", "region_end"))
    fresh = sessions(assign_sessions(in_region, gap_minutes))
    old = sessions_df.join(regions, "user_key")
    inside = F.col("session_start").between(F.col("region_start"), F.col("region_end"))
    old_inside = old.where(inside).select(*SESSION_COLUMNS)
    before = (old.where(F.col("session_start") < F.col("region_start"))
              .groupBy("user_key").agg(F.max("session_number").alias("_before")))
    fresh_n = fresh.groupBy("user_key").agg(F.count(F.lit(1)).alias("_fresh_n"))
    old_n = old_inside.groupBy("user_key").agg(F.count(F.lit(1)).alias("_old_n"))
    renumbered = (fresh.join(before, "user_key", "left")
                  .withColumn("session_number", (F.col("session_number") + F.coalesce("_before", F.lit(0))).cast("int"))
                  .select(*SESSION_COLUMNS))
    shift = F.coalesce("_fresh_n", F.lit(0)) - F.coalesce("_old_n", F.lit(0))
    later = (old.where(F.col("session_start") > F.col("region_end"))
             .join(fresh_n, "user_key", "left").join(old_n, "user_key", "left")
             .where(shift != 0)
             .withColumn("session_number", (F.col("session_number") + shift).cast("int"))
             .select(*SESSION_COLUMNS))
    gone = old_inside.join(fresh.select("user_key", "session_start"), ["user_key", "session_start"], "left_anti")
    return (renumbered.unionByName(later).withColumn("_op", F.lit("upsert"))
            .unionByName(gone.withColumn("_op", F.lit("delete"))))

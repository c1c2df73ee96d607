"""Point-in-time features and labels from silver events (pure DataFrame -> DataFrame transforms).

The cutoff is `as_of` 00:00 UTC. Features use only events strictly before it; labels use only
events in [as_of, as_of + horizon). Sessions behind session features are rebuilt from the events
before the cutoff, so a session that straddles the cutoff cannot leak its later half.
Every output carries `as_of_date`, so several cutoffs can live side by side in one table.
"""
from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecomlake import sessionize
from ecomlake.dates import add_days
from ecomlake.errors import require_columns

EVENT_COLUMNS = ("event_time", "event_date", "event_type", "product_id", "category_code", "price",
                 "user_key", "user_session")
ACTIVITY_WINDOWS_DAYS = (1, 7, 30)
# event_type -> the word used in feature names (views_7d, carts_7d, ...)
EVENT_WORDS = {"view": "views", "cart": "carts", "remove_from_cart": "removes", "purchase": "purchases"}
DEFAULT_INTERACTION_WEIGHTS = {"view": 1.0, "cart": 3.0, "remove_from_cart": 0.0, "purchase": 5.0}
SALES_LAGS_DAYS = (7, 14, 21, 28)


def cutoff(as_of: str) -> Column:
    """as_of (YYYY-MM-DD) at 00:00 in the session time zone (UTC in every ecomlake session)."""
    return F.to_timestamp(F.lit(as_of))


def events_before(events: DataFrame, as_of: str) -> DataFrame:
    require_columns(events, EVENT_COLUMNS, "silver/events")
    return events.where(F.col("event_time") < cutoff(as_of))


def events_in_horizon(events: DataFrame, as_of: str, horizon_days: int) -> DataFrame:
    require_columns(events, EVENT_COLUMNS, "silver/events")
    end = cutoff(as_of) + F.expr(f"INTERVAL {int(horizon_days)} DAYS")
    return events.where((F.col("event_time") >= cutoff(as_of)) & (F.col("event_time") < end))


def horizon_covered(events: DataFrame, as_of: str, horizon_days: int) -> bool:
    """Whether the events reach the last day of [as_of, as_of + horizon_days): labels and metrics
    of that window are whole."""
    last = events.agg(F.max("event_date")).head()[0]
    return last is not None and last >= date.fromisoformat(add_days(as_of, horizon_days - 1))


def _age_days(as_of: str) -> Column:
    """Days between an event and the cutoff (0.5 = twelve hours before it)."""
    return (F.unix_timestamp(cutoff(as_of)) - F.unix_timestamp("event_time")) / 86400.0


def _days_before_cutoff(ts: Column, as_of: str) -> Column:
    return F.round((F.unix_timestamp(cutoff(as_of)) - F.unix_timestamp(ts)) / 86400.0, 4)


def _count_if(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def _cents(column: Column) -> Column:
    """A price as exact cents. Sums and means of doubles depend on the order Spark adds them in,
    which differs between a laptop and a cluster (a mean of 172.42425 rounded to 172.4243 on one,
    172.4242 on the other); sums of decimals do not, so the features are the same everywhere."""
    return column.cast("decimal(12,2)")


def _money_sum(column: Column, scale: int = 2) -> Column:
    return F.round(F.sum(_cents(column)), scale).cast("double")


def _money_mean(column: Column, scale: int = 4) -> Column:
    return F.round(F.avg(_cents(column)), scale).cast("double")


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, F.round(numerator / denominator, 6))


def top_category(category_code: Column) -> Column:
    return sessionize.top_category(category_code)


def user_features(events: DataFrame, as_of: str, gap_minutes: int = 30) -> DataFrame:
    """One row per user seen before the cutoff.

    recency_days, frequency (purchase sessions), monetary (purchase revenue); views/carts/removes/
    purchases in the last 1, 7 and 30 days; sessions, mean session length, cart abandonment rate
    (sessions with a cart and no purchase / sessions with a cart); category affinity (share of the
    user's events per top-level category, the top one and its share); mean price of viewed and
    bought items; days since first seen and since the last purchase (null: never bought).
    """
    hist = events_before(events, as_of).withColumn("_age_days", _age_days(as_of))
    is_type = {t: F.col("event_type") == t for t in EVENT_WORDS}
    activity = [
        _count_if(is_type[t] & (F.col("_age_days") < w)).alias(f"{word}_{w}d")
        for w in ACTIVITY_WINDOWS_DAYS for t, word in EVENT_WORDS.items()
    ]
    per_user = hist.groupBy("user_key").agg(
        F.min("event_time").alias("_first_seen"),
        F.max("event_time").alias("_last_seen"),
        F.max(F.when(is_type["purchase"], F.col("event_time"))).alias("_last_purchase"),
        F.count(F.lit(1)).alias("events"),
        _count_if(is_type["purchase"]).alias("purchases"),
        F.size(F.collect_set(F.when(is_type["purchase"], F.col("user_session")))).alias("frequency"),
        _money_sum(F.when(is_type["purchase"], F.col("price")).otherwise(0.0)).alias("monetary"),
        *activity,
        _money_mean(F.when(is_type["view"], F.col("price"))).alias("avg_viewed_price"),
        _money_mean(F.when(is_type["purchase"], F.col("price"))).alias("avg_purchased_price"),
        F.size(F.collect_set(F.when(is_type["view"], F.col("product_id")))).alias("distinct_products_viewed"),
        F.size(F.collect_set(F.when(F.col("_age_days") < 30, F.col("event_date")))).alias("active_days_30d"),
    )
    per_user = (per_user
                .withColumn("recency_days", _days_before_cutoff(F.col("_last_seen"), as_of))
                .withColumn("days_since_first_seen", _days_before_cutoff(F.col("_first_seen"), as_of))
                .withColumn("days_since_last_purchase", _days_before_cutoff(F.col("_last_purchase"), as_of))
                .drop("_first_seen", "_last_seen", "_last_purchase"))

    user_sessions = sessionize.sessions(sessionize.assign_sessions(hist.drop("_age_days"), gap_minutes))
    session_stats = user_sessions.groupBy("user_key").agg(
        F.count(F.lit(1)).alias("sessions"),
        F.round(F.avg("duration_seconds"), 2).alias("mean_session_seconds"),
        F.round(F.avg("events"), 4).alias("mean_session_events"),
        _ratio(_count_if((F.col("carts") > 0) & (F.col("purchases") == 0)),
               _count_if(F.col("carts") > 0)).alias("cart_abandonment_rate"),
    )
    return (per_user
            .join(session_stats, "user_key", "left")
            .join(category_affinity(hist), "user_key", "left")
            .withColumn("as_of_date", F.to_date(F.lit(as_of))))


def category_affinity(hist: DataFrame) -> DataFrame:
    """user_key, category_affinity (map top-level category -> share of events), top_category,
    top_category_share. Ties go to the alphabetically last category (deterministic)."""
    counts = (hist.withColumn("category", top_category(F.col("category_code")))
              .groupBy("user_key", "category").agg(F.count(F.lit(1)).alias("n")))
    total = Window.partitionBy("user_key")
    shares = counts.withColumn("share", F.round(F.col("n") / F.sum("n").over(total), 6))
    return shares.groupBy("user_key").agg(
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("category", "share")))).alias("category_affinity"),
        F.max_by("category", F.struct("n", "category")).alias("top_category"),
        F.max_by("share", F.struct("n", "category")).alias("top_category_share"),
    )


def item_features(events: DataFrame, as_of: str) -> DataFrame:
    """One row per product seen before the cutoff: counts by event type, conversion rates, price
    statistics, and popularity trend = (views in the last 7 days + 1) / (views in the 7 before + 1)."""
    hist = events_before(events, as_of).withColumn("_age_days", _age_days(as_of))
    is_type = {t: F.col("event_type") == t for t in EVENT_WORDS}
    latest = F.struct("event_time", "event_type")
    last7 = F.col("_age_days") < 7
    prev7 = (F.col("_age_days") >= 7) & (F.col("_age_days") < 14)
    return (hist.groupBy("product_id")
            .agg(F.max_by("category_code", latest).alias("category_code"),
                 *[_count_if(is_type[t]).alias(word) for t, word in EVENT_WORDS.items()],
                 _money_mean(F.col("price")).alias("price_mean"),
                 F.min("price").alias("price_min"),
                 F.max("price").alias("price_max"),
                 F.round(F.stddev_pop("price"), 4).alias("price_std"),
                 F.max_by("price", latest).alias("price_last"),
                 _count_if(is_type["view"] & last7).alias("views_last_7d"),
                 _count_if(is_type["view"] & prev7).alias("views_prev_7d"),
                 _count_if(is_type["purchase"] & last7).alias("purchases_last_7d"),
                 _count_if(is_type["purchase"] & prev7).alias("purchases_prev_7d"),
                 F.min("event_time").alias("_first_seen"))
            .withColumn("view_to_purchase_rate", _ratio(F.col("purchases"), F.col("views")))
            .withColumn("cart_to_purchase_rate", _ratio(F.col("purchases"), F.col("carts")))
            .withColumn("popularity_trend",
                        F.round((F.col("views_last_7d") + 1) / (F.col("views_prev_7d") + 1), 6))
            .withColumn("days_since_first_seen", _days_before_cutoff(F.col("_first_seen"), as_of))
            .drop("_first_seen")
            .withColumn("as_of_date", F.to_date(F.lit(as_of))))


def interactions(events: DataFrame, as_of: str, weights: dict[str, float] | None = None,
                 half_life_days: float = 14.0) -> DataFrame:
    """Implicit user-item strength: sum over the pair's events of weight(event_type) *
    0.5 ** (age_days / half_life_days). Pairs whose strength is 0 (e.g. only removes) are dropped."""
    weights = {**DEFAULT_INTERACTION_WEIGHTS, **(weights or {})}
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}")
    weight = F.lit(0.0)
    for event_type, w in weights.items():
        weight = F.when(F.col("event_type") == event_type, F.lit(float(w))).otherwise(weight)
    hist = events_before(events, as_of)
    decay = F.pow(F.lit(0.5), _age_days(as_of) / F.lit(float(half_life_days)))
    return (hist.groupBy("user_key", "product_id")
            .agg(F.round(F.sum(weight * decay), 6).alias("strength"),
                 F.count(F.lit(1)).alias("events"),
                 (_count_if(F.col("event_type") == "purchase") > 0).alias("purchased"),
                 F.max("event_time").alias("last_event_time"))
            .where(F.col("strength") > 0)
            .withColumn("as_of_date", F.to_date(F.lit(as_of))))


def daily_sales(events: DataFrame, as_of: str) -> DataFrame:
    """Units (purchase events) and revenue per day for every product and every category
    (`level` = 'product' / 'category', `series_key` = product id / category code), with zero days
    filled in, lags of units (7/14/21/28 days), the mean of days t-20..t-14 and calendar features.

    Category series span every day of the history; product series start at their first sale.
    """
    hist = events_before(events, as_of)
    purchases = hist.where(F.col("event_type") == "purchase")
    sold = (purchases
            .select(F.lit("product").alias("level"), F.col("product_id").cast("string").alias("series_key"),
                    "event_date", "price")
            .unionByName(purchases.select(
                F.lit("category").alias("level"),
                F.coalesce(F.col("category_code"), F.lit("unknown")).alias("series_key"),
                "event_date", "price"))
            .groupBy("level", "series_key", "event_date")
            .agg(F.count(F.lit(1)).alias("units"), _money_sum(F.col("price")).alias("revenue")))
    last_day = F.date_sub(F.to_date(F.lit(as_of)), 1)
    first_day = hist.agg(F.min("event_date").alias("history_start"))
    starts = (sold.groupBy("level", "series_key").agg(F.min("event_date").alias("series_start"))
              .crossJoin(first_day)
              .withColumn("start", F.when(F.col("level") == "category", F.col("history_start"))
                          .otherwise(F.col("series_start"))))
    grid = starts.select("level", "series_key",
                         F.explode(F.sequence(F.col("start"), last_day)).alias("event_date"))
    series = Window.partitionBy("level", "series_key").orderBy("event_date")
    daily = (grid.join(sold, ["level", "series_key", "event_date"], "left")
             .fillna({"units": 0, "revenue": 0.0}))
    for lag in SALES_LAGS_DAYS:  # the grid has one row per day, so a row lag is a day lag
        daily = daily.withColumn(f"units_lag_{lag}", F.lag("units", lag).over(series))
    return (daily
            .withColumn("units_mean_lag_14_20", F.round(F.avg("units").over(series.rowsBetween(-20, -14)), 6))
            .withColumn("day_of_week", F.dayofweek("event_date"))  # 1 = Sunday ... 7 = Saturday
            .withColumn("is_weekend", F.dayofweek("event_date").isin(1, 7))
            .withColumn("week_of_year", F.weekofyear("event_date"))
            .withColumn("month", F.month("event_date"))
            .withColumn("day_index", F.expr("unix_date(event_date)"))
            .withColumn("as_of_date", F.to_date(F.lit(as_of))))


def user_labels(events: DataFrame, as_of: str, horizon_days: int) -> DataFrame:
    """For every user seen before the cutoff: purchased_next (a purchase in the horizon) and
    churned (no purchase in the horizon, among users who bought before the cutoff; null otherwise)."""
    past = events_before(events, as_of).groupBy("user_key").agg(
        (_count_if(F.col("event_type") == "purchase") > 0).alias("_past_buyer"))
    future = (events_in_horizon(events, as_of, horizon_days)
              .where(F.col("event_type") == "purchase")
              .select("user_key").distinct().withColumn("purchased_next", F.lit(True)))
    return (past.join(future, "user_key", "left")
            .withColumn("purchased_next", F.coalesce(F.col("purchased_next"), F.lit(False)))
            .withColumn("churned", F.when(F.col("_past_buyer"), ~F.col("purchased_next")))
            .drop("_past_buyer")
            .withColumn("horizon_days", F.lit(int(horizon_days)))
            .withColumn("as_of_date", F.to_date(F.lit(as_of))))


def sales_labels(daily: DataFrame, events: DataFrame, as_of: str, horizon_days: int) -> DataFrame:
    """Units and revenue in the horizon for every series of `daily_sales` (zero when none sold)."""
    future = events_in_horizon(events, as_of, horizon_days).where(F.col("event_type") == "purchase")
    sold = (future.select(F.lit("product").alias("level"), F.col("product_id").cast("string").alias("series_key"),
                          "price")
            .unionByName(future.select(F.lit("category").alias("level"),
                                       F.coalesce(F.col("category_code"), F.lit("unknown")).alias("series_key"),
                                       "price"))
            .groupBy("level", "series_key")
            .agg(F.count(F.lit(1)).alias("units_next"), _money_sum(F.col("price")).alias("revenue_next")))
    return (daily.select("level", "series_key").distinct()
            .join(sold, ["level", "series_key"], "left")
            .fillna({"units_next": 0, "revenue_next": 0.0})
            .withColumn("horizon_days", F.lit(int(horizon_days)))
            .withColumn("as_of_date", F.to_date(F.lit(as_of))))

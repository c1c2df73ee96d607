"""The report's data layer: one function per section reads the lake and returns plain data.

Each returns a dict of small pandas frames and numbers (what the section shows) and its
"suggestions" (texts from `rules`). Only aggregates reach the driver (per day, per category, per
cohort week, per model, the top-N rows); counts and sums over the large tables run in Spark with
the predicates from `rules`. A missing table raises MissingTable, naming the job that writes it.
"""
from __future__ import annotations

import json

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.errors import EcomlakeError
from ecomlake.report import rules


class MissingTable(EcomlakeError):
    pass


def _read(spark: SparkSession, root: str, table: tables.Table) -> DataFrame:
    if not lake.table_exists(spark, table.path(root)):
        raise MissingTable(f"{table.id} is missing: run `{table.producer}` to add this section")
    return lake.read_table(spark, root, table)


def _latest(df: DataFrame, column: str = "as_of_date", as_of: str | None = None) -> tuple[DataFrame, str]:
    value = as_of or df.agg(F.max(column)).first()[0]
    if value is None:
        raise MissingTable("the table has no rows")
    rows = df.where(F.col(column) == F.lit(str(value)))
    if rows.limit(1).count() == 0:
        raise MissingTable(f"no rows for {column} {value}")
    return rows, str(value)


def funnel(spark, root, as_of) -> dict:
    """daily: event_date, views, carts, purchases, ..., conversion; by_category: the top 12 by revenue."""
    funnel_ = _read(spark, root, tables.GOLD_DAILY_FUNNEL)
    daily = (funnel_.groupBy("event_date").agg(*[F.sum(c).alias(c) for c in
                                                ("views", "carts", "purchases", "sessions_with_view", "sessions_with_purchase", "revenue")])
             .orderBy("event_date").toPandas())  # one row per day
    daily["conversion"] = daily["sessions_with_purchase"] / daily["sessions_with_view"].clip(lower=1)
    by_category = (funnel_.groupBy("category").agg(F.sum("sessions_with_view").alias("viewing_sessions"),
                                                   F.sum("sessions_with_cart").alias("carting_sessions"),
                                                   F.sum("sessions_with_purchase").alias("buying_sessions"),
                                                   F.round(F.sum("revenue"), 0).alias("revenue"))
                   .orderBy(F.desc("revenue")).limit(12).toPandas())
    by_category["cart_to_purchase"] = by_category["buying_sessions"] / by_category["carting_sessions"].clip(lower=1)
    return {"daily": daily, "by_category": by_category, "suggestions": rules.funnel_suggestions(daily, by_category)}


def retention(spark, root, as_of) -> dict:
    """retention: cohort x weeks since the first session -> share of the cohort active; sessions,
    mean_duration_seconds, converted: over all sessions."""
    sessions = _read(spark, root, tables.SILVER_SESSIONS)
    weekly = sessions.select("user_key", F.date_trunc("week", "session_start").cast("date").alias("week"))
    cohorts = weekly.groupBy("user_key").agg(F.min("week").alias("cohort"))
    matrix = (weekly.distinct().join(cohorts, "user_key")
              .withColumn("weeks_since", (F.datediff("week", "cohort") / 7).cast("int"))
              .groupBy("cohort", "weeks_since").agg(F.count("*").alias("users"))
              .orderBy("cohort", "weeks_since").toPandas())  # cohorts x weeks: a few dozen cells
    users = matrix.pivot(index="cohort", columns="weeks_since", values="users")  # NaN: week not observed yet
    stats = sessions.agg(F.count("*").alias("sessions"), F.avg("duration_seconds").alias("duration"),
                         F.avg(F.col("converted").cast("double")).alias("converted")).first()
    return {"retention": users.div(users[0], axis=0), "sessions": stats["sessions"],
            "mean_duration_seconds": stats["duration"], "converted": stats["converted"],
            "suggestions": rules.retention_suggestions(users)}


def _customer_value(spark, root) -> dict:
    values = _read(spark, root, tables.GOLD_CUSTOMER_VALUE)
    source = values.agg(F.max("source")).first()[0] if values.where("source = 'cdnow'").limit(1).count() == 0 else "cdnow"
    values = values.where(F.col("source") == source)
    calibration = (_read(spark, root, tables.GOLD_CLV_CALIBRATION).where(F.col("source") == source)
                   .orderBy("bucket_order").toPandas())
    edges = values.approxQuantile("clv", [0.5, 0.9, 0.99], 1e-3)
    total = values.agg(F.sum("clv")).first()[0] or 0.0
    top = values.where(F.col("clv") >= edges[1]).agg(F.sum("clv")).first()[0] or 0.0
    at_risk = values.where(rules.win_back(F.col("clv"), F.col("probability_alive"), edges[1]))
    n_risk = at_risk.count()
    sample = at_risk.orderBy(F.desc("clv")).limit(5).select("customer_id", F.round("clv", 2).alias("clv"),
                                                           F.round("probability_alive", 2).alias("p_alive")).toPandas()
    return {"source": source, "calibration": calibration, "median_clv": edges[0], "top_decile_clv": edges[1],
            "top_decile_share": top / total if total else 0,
            "suggestion": rules.win_back_suggestion(n_risk, sample["customer_id"].tolist())}


def customers(spark, root, as_of) -> dict:
    """segments (None without gold/segments): segment_name, customers, mean_spend, mean_orders and
    segments_as_of; value (None without gold/customer_value): the BG/NBD check and CLV quantiles."""
    out = {"segments": None, "value": None, "suggestions": []}
    if lake.table_exists(spark, tables.GOLD_SEGMENTS.path(root)):
        segments, out["segments_as_of"] = _latest(_read(spark, root, tables.GOLD_SEGMENTS))
        out["segments"] = (segments.groupBy("segment_name").agg(F.count("*").alias("customers"),
                                                                F.round(F.avg("monetary"), 2).alias("mean_spend"),
                                                                F.round(F.avg("frequency"), 2).alias("mean_orders"))
                           .orderBy(F.desc("customers")).toPandas())
    if lake.table_exists(spark, tables.GOLD_CUSTOMER_VALUE.path(root)):
        out["value"] = _customer_value(spark, root)
        out["suggestions"].append(out["value"]["suggestion"])
    if lake.table_exists(spark, tables.GOLD_CHURN_RISK.path(root)):
        churn, day = _latest(_read(spark, root, tables.GOLD_CHURN_RISK))
        out["suggestions"].append(rules.churn_suggestion(churn.where(rules.top_churn_risk(F.col("decile"))).count(), day))
    if out["segments"] is None and out["value"] is None:
        raise MissingTable(f"{tables.GOLD_SEGMENTS.id} and {tables.GOLD_CUSTOMER_VALUE.id} are missing: "
                           f"run `score` or `clv` to add this section")
    return out


def models(spark, root, as_of) -> dict:
    """table: the newest run of every model with its task's main metric."""
    newest = (_read(spark, root, tables.GOLD_MODEL_RUNS)
              .groupBy("task", "model").agg(F.max_by(F.struct("metrics", "is_baseline", "as_of_date"),
                                                     F.col("created_at")).alias("r"))
              .select("task", "model", "r.*").orderBy("task", "is_baseline", "model").toPandas())  # tasks x models
    table = rules.model_table(newest)
    return {"table": table, "suggestions": rules.model_suggestions(table)}


def forecasts(spark, root, as_of) -> dict:
    """history and ahead of the 4 categories that sell most; quality (None without gold/model_runs):
    the forecasters' hold-out WAPE."""
    forecasts_, day = _latest(_read(spark, root, tables.GOLD_FORECASTS), as_of=as_of)
    daily, _ = _latest(_read(spark, root, tables.GOLD_DAILY_SALES), as_of=day)
    categories = (daily.where(F.col("level") == "category").groupBy("series_key").agg(F.sum("units").alias("units"))
                  .orderBy(F.desc("units")).limit(4).toPandas()["series_key"].tolist())
    history = (daily.where((F.col("level") == "category") & F.col("series_key").isin(categories))
               .select("series_key", "event_date", "units").toPandas())
    # Tables scored before the bands existed have no band columns: the chart shows what there is.
    band = [c for c in ("seasonal_naive", "forecast_low", "forecast_high") if c in forecasts_.columns]
    ahead = (forecasts_.where((F.col("level") == "category") & F.col("series_key").isin(categories))
             .select("series_key", "forecast_date", "forecast", *band).toPandas())
    departing = None
    if "departs_recent_level" in forecasts_.columns:
        departing = (forecasts_.where((F.col("level") == "category") & F.col("departs_recent_level"))
                     .groupBy("series_key").agg(F.count(F.lit(1)).alias("days"),
                                                F.first("recent_level").alias("recent_level"),
                                                F.avg("forecast").alias("mean_forecast"))
                     .orderBy(F.desc("days"), "series_key").limit(5).toPandas())   # at most 5 categories
    quality = None
    if lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(root)):
        quality = (_read(spark, root, tables.GOLD_MODEL_RUNS).where(F.col("task") == "forecast")
                   .select("model", "as_of_date", F.col("metrics")["category_wape"].alias("category_wape"),
                           F.col("metrics")["product_wape"].alias("product_wape"))
                   .orderBy("category_wape").toPandas())
    return {"categories": categories, "history": history, "ahead": ahead, "quality": quality,
            "suggestions": rules.forecast_suggestions(history, ahead)
            + (rules.departure_suggestions(departing, ahead["forecast_date"].nunique()) if departing is not None else [])}


def elasticity(spark, root, as_of) -> dict:
    """by_source: source -> its estimates (a row per category or brand), most elastic first."""
    estimates = _read(spark, root, tables.GOLD_PRICE_ELASTICITY).toPandas()  # a row per category / brand
    by_source, suggestions = {}, []
    for source, group in estimates.groupby("source"):
        by_source[source] = group.sort_values("elasticity")
        suggestions += rules.elasticity_suggestions(source, group)
    return {"by_source": by_source, "suggestions": suggestions}


def risk(spark, root, as_of) -> dict:
    """reasons: reason, count; alerts: how many users; top: the ten riskiest; as_of."""
    alerts, day = _latest(_read(spark, root, tables.GOLD_RISK_ALERTS))
    reasons = (alerts.select(F.explode("reasons").alias("reason")).groupBy("reason").count()
               .orderBy(F.desc("count")).toPandas())  # one row per rule
    total = alerts.count()
    top = (alerts.orderBy("alert_rank").limit(10)
           .select("alert_rank", F.col("user_key").cast("string").alias("user"), F.round("risk_score", 3).alias("risk_score"),
                   F.array_join("reasons", "; ").alias("reasons"), F.round("purchase_value", 2).alias("purchase_value"))
           .toPandas())
    held = alerts.where(rules.hold_for_review(F.size("reasons")))
    n_held = held.count()
    value = held.agg(F.sum("purchase_value")).first()[0] or 0.0
    return {"as_of": day, "alerts": total, "reasons": reasons, "top": top,
            "suggestions": [rules.risk_suggestion(n_held, value, total)]}


def reviews(spark, root, as_of) -> dict:
    """by_department: reviews, not_recommended, mean_rating (departments with 20+ reviews, most
    unhappy first); models (None without gold/model_runs): the sentiment models' scores;
    words (None without a tfidf_lr run): the top 10 terms "for" and "against" recommending."""
    reviews_ = _read(spark, root, tables.GOLD_REVIEW_SENTIMENT).where(F.col("model") == "tfidf_lr")
    by_department = (reviews_.groupBy("department").agg(F.count("*").alias("reviews"),
                                                        (1 - F.avg("recommended")).alias("not_recommended"),
                                                        F.avg("rating").alias("mean_rating"))
                     .where(F.col("reviews") >= 20).orderBy(F.desc("not_recommended")).toPandas())
    out = {"by_department": by_department, "models": None, "words": None, "suggestions": []}
    if lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(root)):
        runs = (_read(spark, root, tables.GOLD_MODEL_RUNS).where(F.col("task").isin("review_recommended", "review_rating"))
                .select("task", "model", F.col("metrics")["auc"].alias("auc"), F.col("metrics")["accuracy"].alias("accuracy"),
                        F.col("metrics")["macro_f1"].alias("macro_f1"), "details").orderBy("task", F.desc("auc")).toPandas())
        out["models"] = runs.drop(columns=["details"])
        tfidf = runs[(runs["task"] == "review_recommended") & (runs["model"] == "tfidf_lr")]
        if len(tfidf):
            terms = json.loads(tfidf.iloc[0]["details"]).get("top_terms", {})
            out["words"] = {side: [t for t, _ in terms.get(side, [])[:10]] for side in ("for", "against")}
        against = out["words"]["against"] if out["words"] else []
        out["suggestions"].append(rules.review_suggestion(by_department, against))
    return out


def aspects(spark, root, as_of) -> dict:
    """by_class: per department and class (40+ reviews) and aspect, its share of the reviews and the
    share negative; suggestions: gold/aspect_summary's, class level first, most mentioned first (at
    most 8); queue: reviews per action and queue; models (None without gold/model_runs): the
    triage and aspect methods' macro-F1 against the hand labels."""
    summary = _read(spark, root, tables.GOLD_ASPECT_SUMMARY)
    by_class = (summary.where((F.col("level") == "class") & (F.col("reviews") >= 40))
                .select("department", "class_name", "aspect", "reviews", "mention_share", "negative_share",
                        "small_share", "large_share").orderBy("department", "class_name", "aspect").toPandas())
    suggestions = [r.suggestion for r in summary.where(F.col("suggestion").isNotNull())
                   .orderBy(F.when(F.col("level") == "class", 0).otherwise(1), F.desc("mentions")).limit(8).collect()]
    queue = (_read(spark, root, tables.GOLD_SERVICE_QUEUE).groupBy("action")
             .agg(F.count("*").alias("reviews"), F.sum((F.col("queue") == "human").cast("int")).alias("to_a_person"),
                  F.avg("confidence").alias("mean_confidence")).orderBy(F.desc("reviews")).toPandas())
    models = None
    if lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(root)):
        models = (_read(spark, root, tables.GOLD_MODEL_RUNS).where(F.col("task").isin("review_aspects", "service_triage"))
                  .select("task", "model", F.col("metrics")["macro_f1"].alias("macro_f1"),
                          F.col("metrics")["accuracy"].alias("accuracy"))
                  .orderBy("task", F.desc("macro_f1")).toPandas())
    return {"by_class": by_class, "queue": queue, "models": models, "suggestions": suggestions}


def inventory(spark, root, as_of) -> dict:
    """top: the 10 products with the highest reorder points; as_of; lead_time_days."""
    inventory_, day = _latest(_read(spark, root, tables.GOLD_INVENTORY), as_of=as_of)
    top = (inventory_.orderBy(F.desc("reorder_point")).limit(10)
           .select("product_id", "lead_time_demand", "safety_stock", "reorder_point", "recent_daily_mean").toPandas())
    lead_time_days = inventory_.first()["lead_time_days"]
    restock = inventory_.where(rules.restock_first(F.col("lead_time_demand"), F.col("recent_daily_mean"),
                                                   F.col("lead_time_days"))).count()
    total_safety = inventory_.agg(F.sum("safety_stock")).first()[0] or 0.0
    return {"as_of": day, "lead_time_days": lead_time_days, "top": top,
            "suggestions": rules.inventory_suggestions(restock, total_safety, top)}


def monitoring(spark, root, as_of) -> dict:
    """The newest monitor run (as of `as_of` when given): per_day: monitored_date, check, alerts
    (days of the daily checks); alerts: the first 25 alerts; drift: the 10 largest PSI values of
    model inputs and scores; decay: AUC once the labels arrived against the test AUC."""
    rows, day = _latest(_read(spark, root, tables.GOLD_MONITORING), as_of=as_of)
    daily = rows.where(F.col("check").isin("quality", "rule", "schema"))
    per_day = (daily.groupBy("monitored_date", "check").agg(F.sum(F.col("alert").cast("int")).alias("alerts"))
               .orderBy("monitored_date").toPandas())   # one row per day and check
    alerts = (rows.where("alert").orderBy("monitored_date", "check", "metric").limit(25)
              .select(F.col("monitored_date").cast("string").alias("day"), "check", "metric",
                      F.round("value", 4).alias("value"), F.round("expected", 4).alias("expected"),
                      F.round("score", 2).alias("score")).toPandas())
    drift = (rows.where(F.col("check") == "drift").orderBy(F.desc("value")).limit(10)
             .select(F.col("monitored_date").cast("string").alias("snapshot"), F.col("segment").alias("model"),
                     F.col("column").alias("feature"), F.round("value", 3).alias("psi"), "alert").toPandas())
    decay = (rows.where(F.col("check") == "decay").orderBy("monitored_date")
             .select(F.col("monitored_date").cast("string").alias("scored_on"), F.col("segment").alias("model"),
                     F.round("value", 3).alias("auc_now"), F.round("expected", 3).alias("auc_at_training"),
                     "alert").toPandas())
    total = int(rows.where("alert").count())
    return {"as_of": day, "per_day": per_day, "alerts": alerts, "drift": drift, "decay": decay, "total": total,
            "suggestions": rules.monitoring_suggestions(alerts, drift, decay, total)}


def regions(spark, root, as_of) -> dict:
    """weekly: region x week units and revenue; totals: per region revenue, units, sessions,
    conversion, customers and the mean coordinates of its customers (the map's points); alerts:
    the region-days whose last-7-day conversion left the region's norm (gold/regional_daily)."""
    demand = _read(spark, root, tables.GOLD_REGIONAL_DEMAND)
    weekly = (demand.groupBy("region", F.date_trunc("week", "event_date").cast("date").alias("week"))
              .agg(F.sum("units").alias("units"), F.sum("revenue").alias("revenue"))
              .orderBy("region", "week").toPandas())   # regions x weeks
    places = (_read(spark, root, tables.SILVER_CUSTOMERS).groupBy("region")
              .agg(F.count(F.lit(1)).alias("customers"), F.avg("latitude").alias("latitude"),
                   F.avg("longitude").alias("longitude")))
    totals = (demand.groupBy("region").agg(F.round(F.sum("revenue"), 0).alias("revenue"), F.sum("units").alias("units"),
                                           F.sum("sessions").alias("sessions"),
                                           F.sum("buying_sessions").alias("buying_sessions"))
              .withColumn("conversion", F.round(F.col("buying_sessions") / F.col("sessions"), 4))
              .join(places, "region", "left").orderBy(F.desc("revenue")).toPandas())   # one row per region
    alerts = (_read(spark, root, tables.GOLD_REGIONAL_DAILY).where("alert").orderBy("event_date", "region").limit(20)
              .select("region", F.col("event_date").cast("string").alias("day"), "conversion_7d",
                      F.col("trailing_median_conversion_7d").alias("usual"), F.round("z", 1).alias("z")).toPandas())
    out = {"weekly": weekly, "totals": totals, "alerts": alerts, "next_week": None, "backtest": None,
           "price_response": None}
    if lake.table_exists(spark, tables.GOLD_REGIONAL_FORECASTS.path(root)):
        forecasts, origin = _latest(_read(spark, root, tables.GOLD_REGIONAL_FORECASTS))
        out["next_week"] = (forecasts.where(F.col("level").isin("region", "total"))
                            .groupBy(F.when(F.col("region") == "*", "all regions").otherwise(F.col("region"))
                                     .alias("region")).agg(F.min("event_date").cast("string").alias("from"),
                                                   F.max("event_date").cast("string").alias("to"),
                                                   *(F.round(F.sum(m), 0).alias(m) for m in
                                                     ("forecast", "top_down", "seasonal_naive")))
                            .orderBy(F.desc("forecast")).toPandas())   # one row per region
    if lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(root)):
        model_runs = _read(spark, root, tables.GOLD_MODEL_RUNS)
        backtest = model_runs.where(F.col("task") == "regional_forecast")
        if backtest.limit(1).count():
            latest, _ = _latest(backtest)
            levels = ("total", "region", "category", "region_category")
            out["backtest"] = (latest.select("model", *(F.round(F.col("metrics")[f"{lv}_wape"], 3).alias(lv)
                                                        for lv in levels)).orderBy("model").toPandas())
        response = model_runs.where(F.col("task") == "regional_elasticity")
        if response.limit(1).count():
            latest, _ = _latest(response)
            metrics = latest.first()["metrics"]
            out["price_response"] = pd.DataFrame(
                [{"region": k[: -len("_ratio")], "price_response": round(v, 2),
                  "standard_error": round(metrics.get(f"{k}_std_error", float("nan")), 2)}
                 for k, v in sorted(metrics.items()) if k.endswith("_ratio")])
    out["suggestions"] = rules.regional_suggestions(totals, alerts, out["next_week"], out["price_response"])
    return out

"""Forecasts by region and category that add up (issue 16 §1): a grouped hierarchy reconciled by
MinT with structural weights, compared with splitting the total by historic shares.

The hierarchy is grouped, not nested: total; each region; each top-level category; each region x
category (the bottom). Every node gets a base forecast from the direct gradient-boosted forecaster
(`direct_forecast`, one model for all nodes: each series is scaled by its own recent level).
Base forecasts do not add up. Methods that make them coherent, each giving bottom forecasts that
are then summed to every node:
- mint_wls: MinT reconciliation with structural scaling (Wickramasuriya, Athanasopoulos and
  Hyndman 2019, "WLS_s"): the bottom forecasts b minimise sum_i (yhat_i - (S b)_i)^2 / w_i, w_i the
  number of bottom series under node i, so b = (S' W^-1 S)^-1 S' W^-1 yhat. It uses every node's
  forecast: the region totals carry a region's own seasonality, the bottom series their mix.
  The structural weights need no error covariance (MinT-shrink would estimate one from in-sample
  residuals, which a direct forecaster does not have). Bottom forecasts below 0 are set to 0
  before summing.
- bottom_up: the bottom base forecasts, summed.
- top_down: the total's base forecast split by each bottom series' share of the total's units
  over the HISTORY_DAYS before the origin (Gross and Sohl's proportions of historical averages):
  what a planner does who forecasts one number and splits it.
- seasonal_naive: the same weekday of the last observed week (coherent as it is).
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecomlake.models import direct_forecast

LEVELS = ("total", "region", "category", "region_category")
BOTTOM = "region_category"
ALL = "*"             # the region or category of a node that sums over it
HISTORY_DAYS = 28     # top_down's shares: each bottom series' units over these days before the origin
METHODS = ("mint_wls", "bottom_up", "top_down", "base", "seasonal_naive")
KEYS = ["level", "region", "top_category"]
_NODE_LEVELS = {(False, False): "region_category", (True, False): "category", (False, True): "region",
                (True, True): "total"}   # (region summed over, category summed over) -> level


def _node(level: str, region=None, category=None) -> list:
    return [F.lit(level).alias("level"), (F.col("region") if region is None else F.lit(region)).alias("region"),
            (F.col("top_category") if category is None else F.lit(category)).alias("top_category")]


def sum_to_levels(bottom: DataFrame, values: list[str], by: list[str]) -> DataFrame:
    """Bottom rows (region, top_category, *by, *values) summed to every node of the hierarchy:
    level, region, top_category ('*' where summed over), series_key ('region|category'), *by,
    *values."""
    parts = [bottom.select(*_node("region_category"), *by, *values)]
    for level, region, category in (("region", None, ALL), ("category", ALL, None), ("total", ALL, ALL)):
        keys = [k for k, summed in (("region", region), ("top_category", category)) if summed is None]
        parts.append(bottom.groupBy(*keys, *by).agg(*(F.sum(v).alias(v) for v in values))
                     .select(*_node(level, region, category), *by, *values))
    return (functools.reduce(DataFrame.unionByName, parts)
            .withColumn("series_key", F.concat_ws("|", "region", "top_category")))


def hierarchy_daily(units: DataFrame) -> DataFrame:
    """units: region, top_category, event_date, units (the bottom series' sales, days without sales
    absent) -> level, region, top_category, series_key, event_date, units for every node, one row
    per day from the first to the last day of `units` (0 where nothing sold)."""
    days = units.agg(F.explode(F.sequence(F.min("event_date"), F.max("event_date"))).alias("event_date"))
    grid = units.select("region", "top_category").distinct().crossJoin(days)
    filled = (grid.join(units, ["region", "top_category", "event_date"], "left")
              .withColumn("units", F.coalesce(F.col("units").cast("double"), F.lit(0.0))))
    return sum_to_levels(filled, ["units"], ["event_date"])


def structural_projection(nodes: pd.DataFrame, bottom: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(S, G): S maps the bottom series (rows of `bottom`: region, top_category) to the nodes (rows
    of `nodes`: level, region, top_category); G = (S' W^-1 S)^-1 S' W^-1 with W = diag(S 1)."""
    region_match = (nodes["region"].to_numpy()[:, None] == ALL) | (
        nodes["region"].to_numpy()[:, None] == bottom["region"].to_numpy()[None, :])
    category_match = (nodes["top_category"].to_numpy()[:, None] == ALL) | (
        nodes["top_category"].to_numpy()[:, None] == bottom["top_category"].to_numpy()[None, :])
    summing = (region_match & category_match).astype(float)
    inverse_weights = 1.0 / summing.sum(axis=1)
    weighted = summing.T * inverse_weights            # S' W^-1
    return summing, np.linalg.solve(weighted @ summing, weighted)


def _mint_group(frame: pd.DataFrame) -> pd.DataFrame:
    """One origin and target day: every node's base forecast -> the bottom series' MinT forecasts."""
    bottom = frame[frame["level"] == BOTTOM].sort_values(["region", "top_category"]).reset_index(drop=True)
    _, projection = structural_projection(frame, bottom)
    reconciled = projection @ frame["base"].to_numpy(dtype=float)
    return bottom.assign(mint_wls=np.maximum(reconciled, 0.0))[
        ["origin_date", "event_date", "region", "top_category", "mint_wls"]]


def mint_wls(base: DataFrame) -> DataFrame:
    """base: origin_date, event_date, level, region, top_category, base (every node of each origin
    and day) -> origin_date, event_date, region, top_category, mint_wls (bottom series). A group is
    one origin and day: at most a few hundred nodes, solved on an executor."""
    return (base.select("origin_date", "event_date", "level", "region", "top_category", F.col("base").cast("double"))
            .groupBy("origin_date", "event_date")
            .applyInPandas(_mint_group, "origin_date date, event_date date, region string, top_category string, "
                                        "mint_wls double"))


def historic_shares(daily: DataFrame, origin: str, days: int = HISTORY_DAYS) -> DataFrame:
    """region, top_category, share: each bottom series' part of the total's units over the `days`
    days before origin (equal parts when nothing sold)."""
    window = daily.where((F.col("event_date") < F.lit(origin).cast("date"))
                         & (F.col("event_date") >= F.date_sub(F.lit(origin).cast("date"), days)))
    bottom = window.where(F.col("level") == BOTTOM).groupBy("region", "top_category").agg(F.sum("units").alias("u"))
    totals = bottom.agg(F.sum("u").alias("total"), F.count(F.lit(1)).alias("series"))
    return bottom.crossJoin(totals).select(
        "region", "top_category",
        F.when(F.col("total") > 0, F.col("u") / F.col("total")).otherwise(1.0 / F.col("series")).alias("share"))


def forecast_hierarchy(daily: DataFrame, origin: str, horizon_days: int, seed: int, max_iter: int) -> DataFrame | None:
    """Every node's forecasts for the horizon_days days from origin, by each of METHODS, with one
    gradient-boosted model fitted on the days before origin: level, region, top_category,
    series_key, origin_date, event_date, *METHODS. None when there are no training rows yet."""
    train = direct_forecast.training_rows(daily, origin, horizon_days)
    if not train.limit(1).count():
        return None
    model = direct_forecast.fit(train, seed, max_iter, levels=None)
    predicted = direct_forecast.predict(model, direct_forecast.forecast_rows(daily, origin, horizon_days))
    nodes = daily.select("level", "series_key", "region", "top_category").distinct()
    base = (predicted.join(nodes, ["level", "series_key"])
            .select(*KEYS, "event_date", F.lit(origin).cast("date").alias("origin_date"),
                    F.col("forecast").alias("base"), "seasonal_naive"))
    total = base.where(F.col("level") == "total").select("event_date", F.col("base").alias("total_base"))
    bottom = (base.where(F.col("level") == BOTTOM)
              .join(mint_wls(base), ["origin_date", "event_date", "region", "top_category"])
              .join(historic_shares(daily, origin), ["region", "top_category"])
              .join(total, "event_date")
              .select("region", "top_category", "origin_date", "event_date", "mint_wls",
                      F.col("base").alias("bottom_up"), (F.col("total_base") * F.col("share")).alias("top_down")))
    coherent = sum_to_levels(bottom, ["mint_wls", "bottom_up", "top_down"], ["origin_date", "event_date"])
    return coherent.join(base, [*KEYS, "origin_date", "event_date"]).select(
        *KEYS, "series_key", "origin_date", "event_date", *METHODS)


def wape_by(compared: DataFrame, by: list[str]) -> list[dict]:
    """Rows of forecast_hierarchy with `actual` -> one dict per group of `by`: the group's values,
    actual (units), n (rows) and each method's WAPE (sum |actual - forecast| / sum actual). One row
    per group reaches the driver."""
    errors = [F.sum(F.abs(F.col("actual") - F.col(m))).alias(m) for m in METHODS]
    rows = (compared.groupBy(*by).agg(F.sum("actual").alias("actual"), F.count(F.lit(1)).alias("n"), *errors)
            .orderBy(*by).collect())
    return [{**{k: r[k] for k in by}, "actual": r["actual"], "n": r["n"],
             **{m: (r[m] / r["actual"] if r["actual"] else None) for m in METHODS}} for r in rows]


def day_type(date_column: str = "event_date"):
    """'weekend' on Saturdays and Sundays, else 'weekday'."""
    return F.when(F.dayofweek(date_column).isin(1, 7), "weekend").otherwise("weekday")

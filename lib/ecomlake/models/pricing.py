"""Pricing and demand on store sales, and inventory suggestions from the demand forecasts.

Store sales (Dominick's orange juice: weekly store x brand units, own price, the other brands'
mean price, deal and feature flags): per brand, a log-log regression with store fixed effects
(within-store demeaning), fitted on the weeks before a hold-out:
    log units = e * log price + c * log other brands' price + d * deal + f * feature (+ store)
e is the own-price elasticity, c the cross-price elasticity, exp(d) - 1 and exp(f) - 1 the
promotion lifts. One brand's rows (~10k) go through pandas at a time (applyInPandas).
Inventory: expected demand over the lead time (the forecasts) + z(service level) x the daily
demand's standard deviation x sqrt(lead time) of safety stock = the reorder point.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

REGRESSORS = ["log_price", "log_other_price", "deal", "feature"]
FIT_SCHEMA = ("brand int, brand_name string, elasticity double, elasticity_std_error double, "
              "cross_elasticity double, deal_lift double, feature_lift double, rows long, stores long, "
              "r2_within double, coefficients string")


def store_sales_frame(sales: DataFrame) -> DataFrame:
    return sales.select("store", "brand", "brand_name", "week", "units", "log_units",
                        F.log("price").alias("log_price"), F.log("other_brands_price").alias("log_other_price"),
                        F.col("deal").cast("double").alias("deal"), F.col("feature").cast("double").alias("feature"))


def _fit_brand(pdf: pd.DataFrame) -> pd.DataFrame:
    import json

    cols = ["log_units", *REGRESSORS]
    demeaned = pdf[cols] - pdf.groupby("store")[cols].transform("mean")  # store fixed effects
    X, y = demeaned[REGRESSORS].to_numpy(), demeaned["log_units"].to_numpy()
    n, k = X.shape
    stores = pdf["store"].nunique()
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = max(n - k - stores, 1)
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.pinv(X.T @ X)
    coef = dict(zip(REGRESSORS, beta))
    return pd.DataFrame([{
        "brand": int(pdf["brand"].iloc[0]), "brand_name": pdf["brand_name"].iloc[0],
        "elasticity": float(coef["log_price"]), "elasticity_std_error": float(np.sqrt(cov[0, 0])),
        "cross_elasticity": float(coef["log_other_price"]), "deal_lift": float(np.exp(coef["deal"]) - 1),
        "feature_lift": float(np.exp(coef["feature"]) - 1), "rows": n, "stores": stores,
        "r2_within": float(1 - (resid @ resid) / max(float(y @ y), 1e-12)),
        "coefficients": json.dumps({k: round(float(v), 6) for k, v in coef.items()})}])


def fit_brands(frame: DataFrame) -> DataFrame:
    return frame.groupBy("brand", "brand_name").applyInPandas(_fit_brand, FIT_SCHEMA)


def predict_units(frame: DataFrame, fits: DataFrame, train: DataFrame) -> DataFrame:
    """Hold-out predictions: the store-brand mean of the training period plus the fitted effects of
    the differences from its training means; and the baseline: the store-brand mean alone."""
    means = train.groupBy("store", "brand").agg(*[F.avg(c).alias(f"mean_{c}") for c in ["log_units", *REGRESSORS]])
    coefficient = {c: F.get_json_object("coefficients", f"$.{c}").cast("double") for c in REGRESSORS}
    joined = frame.join(means, ["store", "brand"]).join(fits.select("brand", "coefficients"), "brand")
    log_prediction = F.col("mean_log_units") + sum(coefficient[c] * (F.col(c) - F.col(f"mean_{c}")) for c in REGRESSORS)
    return joined.select("store", "brand", "brand_name", "week", "units",
                         F.exp(log_prediction).alias("forecast"), F.exp("mean_log_units").alias("store_brand_mean"))


def inventory_suggestions(forecasts: DataFrame, history: DataFrame, lead_time_days: int,
                          service_level: float, history_days: int = 28) -> DataFrame:
    """forecasts: series_key, forecast_date, forecast (products, from the as-of date on);
    history: series_key, event_date, units (past days). One row per product."""
    from scipy.stats import norm

    z = float(norm.ppf(service_level))
    first = forecasts.agg(F.min("forecast_date")).first()[0]
    window = Window.partitionBy("series_key").orderBy("forecast_date")
    lead = (forecasts.withColumn("day", F.row_number().over(window)).where(F.col("day") <= lead_time_days)
            .groupBy("series_key").agg(F.sum("forecast").alias("lead_time_demand"),
                                       F.count("*").alias("forecast_days")))
    recent = history.where(F.col("event_date") >= F.date_sub(F.lit(first), history_days))
    variability = recent.groupBy("series_key").agg(
        F.stddev_samp("units").alias("daily_std"), F.avg("units").alias("daily_mean"),
        F.sum("units").alias("recent_units"))
    out = lead.join(variability, "series_key", "left").fillna(0.0, ["daily_std", "daily_mean", "recent_units"])
    safety = F.lit(z) * F.col("daily_std") * F.sqrt(F.lit(float(lead_time_days)))
    return out.select(
        F.col("series_key").alias("product_id"), F.round("lead_time_demand", 2).alias("lead_time_demand"),
        F.round("daily_mean", 3).alias("recent_daily_mean"), F.round("daily_std", 3).alias("recent_daily_std"),
        F.round(safety, 2).alias("safety_stock"),
        F.ceil(F.col("lead_time_demand") + safety).cast("long").alias("reorder_point"),
        F.lit(lead_time_days).alias("lead_time_days"), F.lit(service_level).alias("service_level"))

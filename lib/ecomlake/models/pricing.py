"""Pricing and demand on store sales, and inventory suggestions from the demand forecasts.

Store sales (Dominick's orange juice: weekly store x brand units, own price, the other brands'
mean price, deal and feature flags): per brand, a log-log regression with store fixed effects
(within-store demeaning), fitted on the weeks before a hold-out:
    log units = e * log price + c * log other brands' price + d * deal + f * feature (+ store)
e is the own-price elasticity, c the cross-price elasticity, exp(d) - 1 and exp(f) - 1 the
promotion lifts. One brand's rows (~10k) go through pandas at a time (applyInPandas).
Per store (fit_stores), how much more or less price-sensitive than other stores it is for the
same brands, and how much of that difference between stores their demographics and competition
explain (explain_store_elasticities).
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


def _within_fit(pdf: pd.DataFrame, fixed_effect: list[str]) -> tuple[dict, np.ndarray, int, float]:
    """OLS of log units on REGRESSORS after demeaning within each fixed_effect group: (coefficients,
    their covariance, rows, within R2)."""
    cols = ["log_units", *REGRESSORS]
    demeaned = pdf[cols] - pdf.groupby(fixed_effect)[cols].transform("mean")
    X, y = demeaned[REGRESSORS].to_numpy(), demeaned["log_units"].to_numpy()
    n, k = X.shape
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = max(n - k - pdf.groupby(fixed_effect).ngroups, 1)
    cov = float(resid @ resid) / dof * np.linalg.pinv(X.T @ X)
    return dict(zip(REGRESSORS, beta)), cov, n, float(1 - (resid @ resid) / max(float(y @ y), 1e-12))


def _fit_brand(pdf: pd.DataFrame) -> pd.DataFrame:
    import json

    coef, cov, n, r2 = _within_fit(pdf, ["store"])  # store fixed effects
    return pd.DataFrame([{
        "brand": int(pdf["brand"].iloc[0]), "brand_name": pdf["brand_name"].iloc[0],
        "elasticity": float(coef["log_price"]), "elasticity_std_error": float(np.sqrt(cov[0, 0])),
        "cross_elasticity": float(coef["log_other_price"]), "deal_lift": float(np.exp(coef["deal"]) - 1),
        "feature_lift": float(np.exp(coef["feature"]) - 1), "rows": n, "stores": pdf["store"].nunique(),
        "r2_within": r2, "coefficients": json.dumps({k: round(float(v), 6) for k, v in coef.items()})}])


STORE_BRAND_FIT_SCHEMA = "store int, brand int, elasticity double, elasticity_std_error double, rows long"


def _fit_store_brand(pdf: pd.DataFrame) -> pd.DataFrame:
    """One store and brand's weeks: OLS of log units on REGRESSORS with an intercept."""
    X = np.column_stack([np.ones(len(pdf)), pdf[REGRESSORS].to_numpy()])
    y = pdf["log_units"].to_numpy()
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    cov = float(resid @ resid) / max(len(y) - X.shape[1], 1) * np.linalg.pinv(X.T @ X)
    return pd.DataFrame([{"store": int(pdf["store"].iloc[0]), "brand": int(pdf["brand"].iloc[0]),
                          "elasticity": float(beta[1]), "elasticity_std_error": float(np.sqrt(cov[1, 1])),
                          "rows": len(y)}])


def fit_stores(frame: DataFrame) -> DataFrame:
    """Per store, how much more (negative) or less price-sensitive its shoppers are than other
    stores' for the same brands: each store x brand's own-price elasticity (its ~120 weeks, with
    the other brands' price, deal and feature as controls), minus the brand's median over stores,
    averaged over the store's brands with weights 1 / se^2. Pooling a store's brands in one
    regression instead would mix in its brand mix (brands differ from -1.1 to -4.1).
    -> store, elasticity (the deviation), elasticity_std_error, brands, rows."""
    fits = frame.groupBy("store", "brand").applyInPandas(_fit_store_brand, STORE_BRAND_FIT_SCHEMA)
    typical = fits.groupBy("brand").agg(F.percentile_approx("elasticity", 0.5, 10_000).alias("brand_median"))
    w = 1 / F.pow(F.col("elasticity_std_error"), 2)
    return (fits.join(typical, "brand")
            .groupBy("store").agg((F.sum(w * (F.col("elasticity") - F.col("brand_median"))) / F.sum(w))
                                  .alias("elasticity"), F.sqrt(1 / F.sum(w)).alias("elasticity_std_error"),
                                  F.count(F.lit(1)).alias("brands"), F.sum("rows").alias("rows")))


def explain_store_elasticities(stores: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, dict]:
    """How much of the difference between stores' price elasticities their demographics explain.

    stores: one row per store with elasticity, elasticity_std_error and `features`. A weighted
    least-squares regression of the elasticity on the standardised features (weights 1 / se^2:
    a noisy estimate counts less), in sample and leave-one-store-out. The observed spread of the
    estimates is the true between-store spread plus their sampling noise (mean se^2), so the
    share of the true difference explained is R2 / reliability, reliability = (var - mean se^2) /
    var. Returns the stores with `fitted` and `loo_fitted`, and the metrics (coefficients per
    feature: the change in elasticity for one standard deviation more of it, with its t value)."""
    data = stores.dropna(subset=["elasticity", "elasticity_std_error", *features]).reset_index(drop=True)
    y = data["elasticity"].to_numpy()
    w = 1.0 / np.maximum(data["elasticity_std_error"].to_numpy(), 1e-6) ** 2
    z = data[features].to_numpy(dtype=float)
    z = (z - z.mean(axis=0)) / np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0)
    X = np.column_stack([np.ones(len(y)), z])

    def wls(X_, y_, w_):
        sw = np.sqrt(w_)
        beta, *_ = np.linalg.lstsq(X_ * sw[:, None], y_ * sw, rcond=None)
        return beta

    beta = wls(X, y, w)
    fitted = X @ beta
    loo = np.array([X[i] @ wls(np.delete(X, i, 0), np.delete(y, i), np.delete(w, i)) for i in range(len(y))])
    mean_w = np.average(y, weights=w)
    loo_mean = np.array([np.average(np.delete(y, i), weights=np.delete(w, i)) for i in range(len(y))])

    def r2(prediction):
        return float(1 - np.sum(w * (y - prediction) ** 2) / np.sum(w * (y - mean_w) ** 2))

    resid = y - fitted
    dof = max(len(y) - X.shape[1], 1)
    cov = (np.sum(w * resid ** 2) / dof) * np.linalg.pinv((X * w[:, None]).T @ X)
    observed_var = float(np.var(y, ddof=1))
    noise_var = float(np.mean(data["elasticity_std_error"].to_numpy() ** 2))
    reliability = max(observed_var - noise_var, 0.0) / observed_var if observed_var else 0.0
    metrics = {"stores": len(y), "mean_elasticity": float(mean_w), "sd_between_stores": float(np.sqrt(observed_var)),
               "mean_sampling_se": float(np.sqrt(noise_var)), "reliability": reliability,
               "r2": r2(fitted), "loo_r2": r2(loo), "baseline_loo_r2": r2(loo_mean),
               "share_of_true_difference_explained": r2(fitted) / reliability if reliability else float("nan"),
               "loo_share_of_true_difference_explained": r2(loo) / reliability if reliability else float("nan")}
    coefficients = {f: {"per_sd": float(b), "t": float(b / np.sqrt(cov[i + 1, i + 1]))}
                    for i, (f, b) in enumerate(zip(features, beta[1:]))}
    return data.assign(fitted=fitted, loo_fitted=loo), {**metrics, "coefficients": coefficients}


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

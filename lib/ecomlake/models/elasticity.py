"""Price elasticity per category: a weighted log-log regression of conversion on price.

Cells are (product, week) with views, purchases and mean price. Traffic to a product does not
depend on its price here, so units per view carry the price response: log(purchases / views) =
a + e * log(price). Cells are pooled into bins of log price (width 0.1) per category to avoid
log(0); bins need >= min_views views and >= 1 purchase. Weighted by views, with a 95 % interval
from the t distribution. One group per category goes through pandas (a handful of rows each).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

RESULT_SCHEMA = ("category_code string, elasticity double, ci_low double, ci_high double, "
                 "std_error double, bins long, views long, purchases long")


def price_bins(events: DataFrame, min_views: int = 30, by: tuple[str, ...] = ()) -> DataFrame:
    """(*by, category_code, bin, views, purchases, log_price): `by` splits each category further
    (by region: each region's own price response)."""
    cells = (events.where(F.col("event_type").isin("view", "purchase"))
             .groupBy(*by, F.coalesce(F.col("category_code"), F.lit("unknown")).alias("category_code"),
                      "product_id", F.date_trunc("week", F.col("event_time")).alias("week"))
             .agg(F.sum(F.when(F.col("event_type") == "view", 1).otherwise(0)).alias("views"),
                  F.sum(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).alias("purchases"),
                  F.avg(F.when(F.col("event_type") == "view", F.col("price"))).alias("price"))
             .where((F.col("views") > 0) & (F.col("price") > 0)))
    return (cells.withColumn("bin", F.round(F.log(F.col("price")) * 10))
            .groupBy(*by, "category_code", "bin")
            .agg(F.sum("views").alias("views"), F.sum("purchases").alias("purchases"),
                 (F.sum(F.log(F.col("price")) * F.col("views")) / F.sum("views")).alias("log_price"))
            .where((F.col("views") >= min_views) & (F.col("purchases") > 0)))


def _fit_category(pdf: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    from scipy import stats

    n = len(pdf)
    out = {**{k: pdf[k].iloc[0] for k in by}, "category_code": pdf["category_code"].iloc[0], "elasticity": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "std_error": np.nan, "bins": n, "views": int(pdf["views"].sum()),
           "purchases": int(pdf["purchases"].sum())}
    if n >= 3 and pdf["log_price"].nunique() >= 2:
        x = pdf["log_price"].to_numpy()
        y = np.log(pdf["purchases"].to_numpy() / pdf["views"].to_numpy())
        w = pdf["views"].to_numpy().astype(float)
        X = np.column_stack([np.ones(n), x])
        W = np.diag(w / w.mean())
        xtwx_inv = np.linalg.inv(X.T @ W @ X)
        beta = xtwx_inv @ X.T @ W @ y
        resid = y - X @ beta
        sigma2 = float(resid @ W @ resid) / (n - 2)
        se = float(np.sqrt(sigma2 * xtwx_inv[1, 1]))
        t = stats.t.ppf(0.975, n - 2)
        out.update(elasticity=float(beta[1]), std_error=se, ci_low=float(beta[1] - t * se),
                   ci_high=float(beta[1] + t * se))
    return pd.DataFrame([out])


def elasticities(bins: DataFrame, by: tuple[str, ...] = ()) -> DataFrame:
    """One fit per category (and per value of `by`, string columns): RESULT_SCHEMA after them."""
    schema = ", ".join([*(f"{k} string" for k in by), RESULT_SCHEMA])
    return bins.groupBy(*by, "category_code").applyInPandas(lambda pdf: _fit_category(pdf, by), schema)


def relative_to_pooled(by_group: DataFrame, pooled: DataFrame, group: str) -> DataFrame:
    """Per value of `group`: how strongly it answers prices against every group together. Each
    category's ratio elasticity(group, category) / elasticity(category), averaged over the
    categories with inverse-variance weights (the ratio's variance ~ (std_error / pooled
    elasticity)^2): group, ratio, ratio_std_error, categories. 1.5 = the group's buyers answer a
    price change 1.5 times as strongly."""
    ratio = F.col("elasticity") / F.col("pooled")
    weight = (F.col("pooled") / F.col("std_error")) ** 2
    cells = (by_group.where(~F.isnan("elasticity") & ~F.isnan("std_error") & (F.col("std_error") > 0))
             .join(pooled.where(~F.isnan("elasticity") & (F.col("elasticity") < 0))
                   .select("category_code", F.col("elasticity").alias("pooled")), "category_code")
             .select(group, ratio.alias("ratio"), weight.alias("w")))
    return (cells.groupBy(group)
            .agg((F.sum(F.col("ratio") * F.col("w")) / F.sum("w")).alias("ratio"),
                 (1 / F.sqrt(F.sum("w"))).alias("ratio_std_error"), F.count(F.lit(1)).alias("categories")))

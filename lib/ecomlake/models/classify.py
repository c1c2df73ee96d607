"""Purchase propensity and churn: logistic regression on user features, and the recency baseline.

Features are the numeric columns of gold/user_features (counts and money on a log1p scale),
the share of the user's events in each of the `categories` (fixed at training time and saved
with the run), and `never_purchased`. Class weights balance the classes in training; the
reported probability undoes their shift of the odds (prior correction), so it is calibrated.
"""
from __future__ import annotations

import math

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomlake.errors import require_columns

LOG_SCALE = ("events", "purchases", "frequency", "monetary", "views_1d", "carts_1d", "removes_1d",
             "purchases_1d", "views_7d", "carts_7d", "removes_7d", "purchases_7d", "views_30d",
             "carts_30d", "removes_30d", "purchases_30d", "avg_viewed_price", "avg_purchased_price",
             "distinct_products_viewed", "sessions", "mean_session_seconds", "mean_session_events",
             "recency_days", "days_since_first_seen", "days_since_last_purchase")
LINEAR = ("active_days_30d", "cart_abandonment_rate", "top_category_share")
NO_PURCHASE_DAYS = 365.0  # days_since_last_purchase of a user who never bought


def feature_columns(categories: list[str]) -> list[str]:
    return [*LOG_SCALE, *LINEAR, "never_purchased", *[f"affinity_{c}" for c in categories]]


def prepare(user_features: DataFrame, categories: list[str]) -> DataFrame:
    """user_features -> the model's columns (no nulls): log1p of counts, affinities, flags."""
    require_columns(user_features, ["user_key", *LOG_SCALE, *LINEAR, "category_affinity"], "gold/user_features")
    never = F.col("days_since_last_purchase").isNull()
    cols: list[Column] = [F.col("user_key")]
    for c in LOG_SCALE:
        value = F.col(c)
        if c == "days_since_last_purchase":
            value = F.coalesce(value, F.lit(NO_PURCHASE_DAYS))
        cols.append(F.log1p(F.greatest(F.coalesce(value.cast("double"), F.lit(0.0)), F.lit(0.0))).alias(c))
    cols += [F.coalesce(F.col(c).cast("double"), F.lit(0.0)).alias(c) for c in LINEAR]
    cols.append(never.cast("double").alias("never_purchased"))
    cols += [F.coalesce(F.col("category_affinity")[c], F.lit(0.0)).alias(f"affinity_{c}") for c in categories]
    return user_features.select(*cols)


def top_categories(user_features: DataFrame, n: int = 8) -> list[str]:
    """The n top-level categories that are most users' top category (n rows reach the driver)."""
    rows = (user_features.groupBy("top_category").count()
            .orderBy(F.desc("count"), "top_category").limit(n).collect())
    return [r["top_category"] for r in rows if r["top_category"] is not None]


def holdout(user_key: Column, seed: int, fraction: float = 0.2) -> Column:
    """A deterministic user-level split: True for about `fraction` of users."""
    return F.pmod(F.xxhash64(F.lit(seed), user_key), F.lit(1000)) < int(fraction * 1000)


def fit(train: DataFrame, label: str, categories: list[str], reg_param: float = 0.01):
    """Pipeline(assemble, standardise, class-weighted LR); returns (model, prior log-odds shift)."""
    counts = train.agg(F.sum(F.col(label).cast("int")).alias("pos"), F.count(F.lit(1)).alias("n")).head()
    pos, n = counts["pos"] or 0, counts["n"]
    if pos == 0 or pos == n:
        raise ValueError(f"label {label} has one class only in the training set ({pos} positive of {n})")
    w_pos, w_neg = n / (2.0 * pos), n / (2.0 * (n - pos))
    weighted = train.withColumn("_weight", F.when(F.col(label), w_pos).otherwise(w_neg)) \
                    .withColumn("_label", F.col(label).cast("double"))
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=feature_columns(categories), outputCol="_raw_features"),
        StandardScaler(inputCol="_raw_features", outputCol="_features", withMean=True, withStd=True),
        LogisticRegression(featuresCol="_features", labelCol="_label", weightCol="_weight",
                           regParam=reg_param, elasticNetParam=0.0, maxIter=100),
    ])
    model = pipeline.fit(weighted)
    # Balanced weights multiply the odds by (n - pos) / pos; undo it for calibrated probabilities.
    return model, math.log(pos / (n - pos))


def positive_probability(probability: Column) -> Column:
    """P(class 1) from Spark ML's probability vector."""
    return vector_to_array(probability)[1]


def predict(model, prepared: DataFrame, log_odds_shift: float) -> DataFrame:
    """user_key, probability (calibrated) from a fitted pipeline."""
    raw = model.transform(prepared).select("user_key", positive_probability(F.col("probability")).alias("_p"))
    p = F.least(F.greatest(F.col("_p"), F.lit(1e-12)), F.lit(1 - 1e-12))
    logit = F.log(p / (1 - p)) + F.lit(log_odds_shift)
    return raw.select("user_key", (1 / (1 + F.exp(-logit))).alias("probability"))


def coefficients(model, categories: list[str]) -> dict[str, float]:
    """Standardised coefficients by feature name: what drives the score."""
    lr = model.stages[-1]
    return {name: round(float(w), 4) for name, w in zip(feature_columns(categories), lr.coefficients)}

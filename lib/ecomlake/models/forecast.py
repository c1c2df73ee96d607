"""Sales forecasting: a global linear model over scaled lag/calendar features, and seasonal naive.

Every feature is known at the forecast origin for a horizon of up to 14 days: lags of 14, 21 and
28 days and the mean of days t-20..t-14. Each series is divided by its mean daily units before
the origin, so one linear model serves series of very different sizes; forecasts are scaled back.
Seasonal naive repeats the last observed week (day t takes t-7 in the first week, t-14 in the second).
"""
from __future__ import annotations

from datetime import date, timedelta

from pyspark.ml import Pipeline
from pyspark.ml.feature import OneHotEncoder, VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

MAX_HORIZON_DAYS = 14
LAG_FEATURES = ("units_lag_14", "units_lag_21", "units_lag_28", "units_mean_lag_14_20")


def _calendar(df: DataFrame) -> DataFrame:
    return (df.withColumn("day_of_week", F.dayofweek("event_date"))
            .withColumn("day_index", F.expr("unix_date(event_date)")))


def forecast_frame(daily: DataFrame, origin: str, horizon_days: int) -> DataFrame:
    """Rows for days [origin, origin + horizon) of every series in `daily` (history before the
    origin only), with the lag features, `series_scale` and `seasonal_naive`."""
    if not 1 <= horizon_days <= MAX_HORIZON_DAYS:
        raise ValueError(f"forecast horizon must be 1..{MAX_HORIZON_DAYS} days, got {horizon_days}")
    first = date.fromisoformat(origin)
    last = first + timedelta(days=horizon_days - 1)
    history = daily.where(F.col("event_date") < F.lit(origin).cast("date")).select(
        "level", "series_key", "event_date", "units")
    future = (history.select("level", "series_key").distinct()
              .select("level", "series_key", F.explode(F.sequence(F.lit(first), F.lit(last))).alias("event_date"))
              .withColumn("units", F.lit(None).cast("long")))
    series = Window.partitionBy("level", "series_key").orderBy("event_date")
    frame = history.unionByName(future)
    for lag in (7, 14, 21, 28):
        frame = frame.withColumn(f"units_lag_{lag}", F.lag("units", lag).over(series))
    scale = (history.groupBy("level", "series_key")
             .agg(F.greatest(F.avg("units"), F.lit(0.01)).alias("series_scale")))
    offset = F.datediff("event_date", F.lit(first))
    return (_calendar(frame.withColumn("units_mean_lag_14_20", F.avg("units").over(series.rowsBetween(-20, -14))))
            .where(F.col("event_date") >= F.lit(first))
            .join(scale, ["level", "series_key"])
            .withColumn("seasonal_naive", F.when(offset < 7, F.col("units_lag_7")).otherwise(F.col("units_lag_14")))
            .drop("units"))


def _scaled(df: DataFrame) -> DataFrame:
    out = df
    for c in LAG_FEATURES:
        out = out.withColumn(f"{c}_scaled", F.coalesce(F.col(c), F.lit(0.0)) / F.col("series_scale"))
    return out


def training_rows(daily: DataFrame, origin: str) -> DataFrame:
    """History rows before the origin that have all lags, with the series scale of that history."""
    history = daily.where(F.col("event_date") < F.lit(origin).cast("date"))
    scale = (history.groupBy("level", "series_key")
             .agg(F.greatest(F.avg("units"), F.lit(0.01)).alias("series_scale")))
    return (history.where(F.col("units_lag_28").isNotNull()).join(scale, ["level", "series_key"])
            .withColumn("target_scaled", F.col("units") / F.col("series_scale")))


def fit(train: DataFrame):
    pipeline = Pipeline(stages=[
        OneHotEncoder(inputCol="day_of_week", outputCol="_dow", dropLast=True),
        VectorAssembler(inputCols=[f"{c}_scaled" for c in LAG_FEATURES] + ["_dow"], outputCol="_features"),
        LinearRegression(featuresCol="_features", labelCol="target_scaled", regParam=0.01, elasticNetParam=0.0),
    ])
    return pipeline.fit(_scaled(train).withColumn("day_of_week", F.col("day_of_week").cast("double")))


def predict(model, frame: DataFrame) -> DataFrame:
    """level, series_key, event_date, forecast (units, >= 0), seasonal_naive."""
    scored = model.transform(_scaled(frame).withColumn("day_of_week", F.col("day_of_week").cast("double")))
    return scored.select("level", "series_key", "event_date",
                         F.greatest(F.col("prediction") * F.col("series_scale"), F.lit(0.0)).alias("forecast"),
                         F.coalesce(F.col("seasonal_naive"), F.lit(0)).cast("double").alias("seasonal_naive"))

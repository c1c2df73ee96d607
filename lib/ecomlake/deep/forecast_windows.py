"""Windows for the global deep sales forecaster (pure Spark transforms) and its Keras model.

Every series of gold/daily_sales is one row of daily units (an array, time order). A window at
origin t holds the `history` days before t and the `horizon` days from t on, both divided by the
series' mean daily units before the forecast origin (so one model serves large and small series),
plus t's day of week. Training windows end before the hold-out; the hold-out window of a series
starts at the forecast origin, so its targets are the held-out days.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField

from ecomlake.deep import architecture as base


def x_name(i: int) -> str:
    return f"x_{i:03d}"


def y_name(i: int) -> str:
    return f"y_{i:03d}"


def series_arrays(daily: DataFrame, origin: str) -> DataFrame:
    """level, series_key, first_date, units (array, one per day) and scale (mean daily units before
    the origin, at least 0.01)."""
    ordered = F.array_sort(F.collect_list(F.struct("event_date", "units")))
    return (daily.groupBy("level", "series_key")
            .agg(F.min("event_date").alias("first_date"), ordered.alias("_days"),
                 F.avg(F.when(F.col("event_date") < F.lit(origin).cast("date"), F.col("units"))).alias("_mean"))
            .select("level", "series_key", "first_date",
                    F.transform("_days", lambda d: d["units"].cast("double")).alias("units"),
                    F.greatest(F.coalesce(F.col("_mean"), F.lit(0.0)), F.lit(0.01)).alias("scale")))


def windows(series: DataFrame, origin: str, history: int, horizon: int, training: bool) -> DataFrame:
    """Training windows (all targets before the origin) or the one hold-out window per series
    (targets = the `horizon` days from the origin). Series shorter than `history` days before the
    origin are left out."""
    before = F.datediff(F.lit(origin).cast("date"), F.col("first_date"))  # days of history before the origin
    if training:
        starts = F.sequence(F.lit(history), before - horizon)  # window origins (index into units)
    else:
        starts = F.array(before)
    w = (series.where(before >= history + (horizon if training else 0))
         .select("level", "series_key", "first_date", "units", "scale", F.explode(starts).alias("t")))
    values = [(F.element_at("units", F.col("t") - history + i + 1) / F.col("scale")).cast("float").alias(x_name(i))
              for i in range(history)]
    targets = [(F.element_at("units", F.col("t") + i + 1) / F.col("scale")).cast("float").alias(y_name(i))
               for i in range(horizon)]
    return w.select("level", "series_key", "scale",
                    F.date_add("first_date", F.col("t")).alias("origin_date"),
                    (F.dayofweek(F.date_add("first_date", F.col("t"))) - 1).cast("int").alias("origin_dow"),
                    F.when(F.col("level") == "product", 1).otherwise(0).cast("int").alias("is_product"),
                    *values, *targets)


def build(history: int, horizon: int, units: int = 32, seed: int = 7):
    """LSTM over the scaled history, with the origin's day of week and the level, -> the horizon."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    past = tf.keras.Input(shape=(history, 1), name="past", dtype="float32")
    dow = tf.keras.Input(shape=(1,), name="dow", dtype="int32")
    level = tf.keras.Input(shape=(1,), name="level", dtype="float32")
    encoded = tf.keras.layers.LSTM(units)(past)
    calendar = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(7, 4)(dow))
    x = tf.keras.layers.Concatenate()([encoded, calendar, level])
    x = tf.keras.layers.Dense(64, activation="relu")(x)
    out = tf.keras.layers.Dense(horizon, name="forecast")(x)
    return tf.keras.Model(inputs=[past, dow, level], outputs=out)


class Architecture(base.Architecture):
    """Scaled history (time steps), day of week and level in; the scaled horizon out; scored as
    units (times the series' scale, never below zero)."""
    loss = "mse"
    output_field = StructField("forecast", ArrayType(DoubleType()))

    def build(self, spec: dict):
        return build(spec["history"], spec["horizon"], seed=spec["seed"])

    def metrics(self) -> list:
        return []

    def inputs(self, spec: dict) -> list[base.ModelInput]:
        return [base.ModelInput("past", tuple(x_name(i) for i in range(spec["history"])), channel=True),
                base.ModelInput("dow", ("origin_dow",), "int32"),
                base.ModelInput("level", ("is_product",))]

    def target(self, spec: dict) -> base.ModelInput:
        return base.ModelInput("forecast", tuple(y_name(i) for i in range(spec["horizon"])))

    def output_values(self, predictions, pdf, spec: dict):
        import numpy as np

        units = np.maximum(predictions * pdf[["scale"]].to_numpy(dtype=np.float64), 0.0)
        return [row.tolist() for row in units]


def explode_forecasts(scored: DataFrame, spec: dict) -> DataFrame:
    """level, series_key, forecast_date, forecast, seasonal_naive (the last observed week repeated)
    and, for hold-out windows, actual — one row per series and day of scored windows."""
    history, horizon = spec["history"], spec["horizon"]
    last_week = F.array(*[F.col(x_name(history - 7 + d)) for d in range(7)])
    actual = F.array(*[F.col(y_name(i)) for i in range(horizon)]) if y_name(0) in scored.columns else None
    exploded = scored.select("level", "series_key", "origin_date", "scale", last_week.alias("_week"),
                             *([actual.alias("_actual")] if actual is not None else []),
                             F.posexplode("forecast").alias("day", "forecast"))
    return exploded.select(
        "level", "series_key", F.date_add("origin_date", F.col("day")).alias("forecast_date"), "forecast",
        (F.element_at("_week", (F.col("day") % 7) + 1) * F.col("scale")).cast("double").alias("seasonal_naive"),
        *([(F.element_at("_actual", F.col("day") + 1) * F.col("scale")).cast("double").alias("actual")]
          if actual is not None else []))

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


class Architecture:
    loss = "mse"

    @staticmethod
    def build(spec: dict):
        return build(spec["history"], spec["horizon"], seed=spec["seed"])

    @staticmethod
    def metrics():
        return []

    @staticmethod
    def columns(spec: dict) -> list[str]:
        return ["origin_dow", "is_product", *[x_name(i) for i in range(spec["history"])],
                *[y_name(i) for i in range(spec["horizon"])]]

    @staticmethod
    def to_xy(batch, spec: dict):
        import tensorflow as tf

        past = tf.stack([tf.cast(getattr(batch, x_name(i)), tf.float32) for i in range(spec["history"])], axis=1)
        target = tf.stack([tf.cast(getattr(batch, y_name(i)), tf.float32) for i in range(spec["horizon"])], axis=1)
        inputs = {"past": tf.expand_dims(past, -1),
                  "dow": tf.reshape(tf.cast(batch.origin_dow, tf.int32), (-1, 1)),
                  "level": tf.reshape(tf.cast(batch.is_product, tf.float32), (-1, 1))}
        return inputs, target

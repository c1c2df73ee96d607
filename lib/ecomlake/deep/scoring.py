"""Distributed inference in Spark: a saved Keras model applied with mapInPandas.

Each Python worker loads the model once (cached by path) and scores Arrow batches; the input must
already be encoded (`encode.encode`) with the spec saved beside the model.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, StructField, StructType

from ecomlake.deep.distributed import local_path
from ecomlake.deep.encode import numeric_name

_MODELS: dict = {}


def _model(path: str):
    if path not in _MODELS:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        _MODELS[path] = tf.keras.models.load_model(path, compile=False)
    return _MODELS[path]


def _probabilities(encoded: DataFrame, model_path: str, keep: tuple[str, ...], to_inputs) -> DataFrame:
    """keep columns + probability; to_inputs(pandas batch) -> the model's inputs."""
    path = local_path(model_path)
    schema = StructType([encoded.schema[c] for c in keep] + [StructField("probability", DoubleType())])

    def score(batches):
        model = _model(path)
        for pdf in batches:
            if pdf.empty:
                continue
            out = pdf[list(keep)].copy()
            out["probability"] = model.predict_on_batch(to_inputs(pdf)).reshape(-1).astype("float64")
            yield out

    return encoded.mapInPandas(score, schema)


def keras_probabilities(encoded: DataFrame, model_path: str, spec: dict, keep: tuple[str, ...]) -> DataFrame:
    """keep columns + probability, for every row of an encoded DataFrame (Wide & Deep inputs)."""
    import numpy as np

    numeric_columns = [numeric_name(i) for i in range(len(spec["numeric_columns"]))]
    return _probabilities(encoded, model_path, keep, lambda pdf: {
        "numeric": pdf[numeric_columns].to_numpy(dtype=np.float32),
        "category": pdf[["category"]].to_numpy(dtype=np.int32)})


def keras_sequence_probabilities(encoded: DataFrame, model_path: str, input_columns: list[str],
                                 keep: tuple[str, ...]) -> DataFrame:
    """keep columns + probability from a saved binary Keras model whose one input stacks
    `input_columns` (int ids), e.g. the review text model."""
    import numpy as np

    return _probabilities(encoded, model_path, keep, lambda pdf: pdf[input_columns].to_numpy(dtype=np.int32))


def keras_top_k(encoded: DataFrame, model_path: str, input_columns: list[str], k: int,
                keep: tuple[str, ...]) -> DataFrame:
    """keep columns + `predicted` (array<int>, the k highest-scored classes, best first, never
    class 0 = padding) from a saved Keras model whose one input stacks `input_columns`."""
    from pyspark.sql.types import ArrayType, IntegerType

    path = local_path(model_path)
    schema = StructType([encoded.schema[c] for c in keep] + [StructField("predicted", ArrayType(IntegerType()))])

    def score(batches):
        import numpy as np

        model = _model(path)
        for pdf in batches:
            if pdf.empty:
                continue
            probabilities = model.predict_on_batch(pdf[input_columns].to_numpy(dtype=np.int32))
            probabilities[:, 0] = -1.0  # the padding index is never a recommendation
            top = np.argsort(-probabilities, axis=1)[:, :k]
            out = pdf[list(keep)].copy()
            out["predicted"] = [row.astype("int32").tolist() for row in top]
            yield out

    return encoded.mapInPandas(score, schema)


def keras_forecasts(windows: DataFrame, model_path: str, spec: dict, keep: tuple[str, ...]) -> DataFrame:
    """keep columns + `forecast` (array<double>: the next spec['horizon'] days in units, >= 0) for
    every window of `forecast_windows.windows`."""
    from pyspark.sql.types import ArrayType

    from ecomlake.deep.forecast_windows import x_name

    path = local_path(model_path)
    history = [x_name(i) for i in range(spec["history"])]
    schema = StructType([windows.schema[c] for c in keep] + [StructField("forecast", ArrayType(DoubleType()))])

    def score(batches):
        import numpy as np

        model = _model(path)
        for pdf in batches:
            if pdf.empty:
                continue
            inputs = {"past": pdf[history].to_numpy(dtype=np.float32)[:, :, None],
                      "dow": pdf[["origin_dow"]].to_numpy(dtype=np.int32),
                      "level": pdf[["is_product"]].to_numpy(dtype=np.float32)}
            scaled = model.predict_on_batch(inputs)
            units = np.maximum(scaled * pdf[["scale"]].to_numpy(dtype=np.float64), 0.0)
            out = pdf[list(keep)].copy()
            out["forecast"] = [row.tolist() for row in units]
            yield out

    return windows.mapInPandas(score, schema)


def explode_forecasts(scored: DataFrame, spec: dict) -> DataFrame:
    """level, series_key, forecast_date, forecast, seasonal_naive (the last observed week repeated)
    and, for hold-out windows, actual — one row per series and day."""
    from pyspark.sql import functions as F

    from ecomlake.deep.forecast_windows import x_name, y_name

    history, horizon = spec["history"], spec["horizon"]
    last_week = F.array(*[F.col(x_name(history - 7 + d)) for d in range(7)])
    actual = F.array(*[F.col(y_name(i)) for i in range(horizon)]) if y_name(0) in scored.columns else None
    exploded = scored.select("level", "series_key", "origin_date", "scale", last_week.alias("_week"),
                             *([actual.alias("_actual")] if actual is not None else []),
                             F.posexplode("forecast").alias("day", "forecast"))
    out = exploded.select(
        "level", "series_key", F.date_add("origin_date", F.col("day")).alias("forecast_date"), "forecast",
        (F.element_at("_week", (F.col("day") % 7) + 1) * F.col("scale")).cast("double").alias("seasonal_naive"),
        *([(F.element_at("_actual", F.col("day") + 1) * F.col("scale")).cast("double").alias("actual")]
          if actual is not None else []))
    return out

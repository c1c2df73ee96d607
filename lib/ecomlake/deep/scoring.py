"""Distributed inference in Spark: a saved Keras model applied with mapInPandas.

Each Python worker loads the model once (cached by path) and scores Arrow batches; the input must
already be encoded (`encode.encode`) with the spec saved beside the model.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, StructField, StructType

from ecomlake.deep.encode import numeric_name

_MODELS: dict = {}


def _model(path: str):
    if path not in _MODELS:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        _MODELS[path] = tf.keras.models.load_model(path, compile=False)
    return _MODELS[path]


def keras_probabilities(encoded: DataFrame, model_path: str, spec: dict, keep: tuple[str, ...]) -> DataFrame:
    """keep columns + probability, for every row of an encoded DataFrame."""
    local_path = model_path[len("file://"):] if model_path.startswith("file://") else model_path
    numeric_columns = [numeric_name(i) for i in range(len(spec["numeric_columns"]))]
    schema = StructType([encoded.schema[c] for c in keep] + [StructField("probability", DoubleType())])

    def score(batches):
        import numpy as np

        model = _model(local_path)
        for pdf in batches:
            if pdf.empty:
                continue
            inputs = {"numeric": pdf[numeric_columns].to_numpy(dtype=np.float32),
                      "category": pdf[["category"]].to_numpy(dtype=np.int32)}
            out = pdf[list(keep)].copy()
            out["probability"] = model.predict_on_batch(inputs).reshape(-1).astype("float64")
            yield out

    return encoded.mapInPandas(score, schema)

"""Distributed inference in Spark: a saved Keras model applied with mapInPandas.

Each Python worker loads the model once (cached by path) and scores Arrow batches. The input must
already hold the model's columns, encoded as for training (the spec saved beside the model says
how); the model's `Architecture` turns a batch into its inputs and its predictions into the output
column (probability, predicted items or forecast).
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType

from ecomlake.deep import architecture
from ecomlake.deep.distributed import local_path

_MODELS: dict = {}


def _model(path: str):
    if path not in _MODELS:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        _MODELS[path] = tf.keras.models.load_model(path, compile=False)
    return _MODELS[path]


def predict(encoded: DataFrame, spec: dict, keep: tuple[str, ...]) -> DataFrame:
    """keep columns + the model's output column, one row per input row, for the model
    spec["model_path"] of the architecture spec names."""
    model_architecture = architecture.for_model(spec)
    path = local_path(spec["model_path"])
    output = model_architecture.output_field
    schema = StructType([encoded.schema[c] for c in keep] + [output])

    def score(batches):
        model = _model(path)
        for pdf in batches:
            if pdf.empty:
                continue
            out = pdf[list(keep)].copy()
            predictions = model.predict_on_batch(model_architecture.numpy_inputs(pdf, spec))
            out[output.name] = model_architecture.output_values(predictions, pdf, spec)
            yield out

    return encoded.mapInPandas(score, schema)

"""Distributed inference in Spark: a saved Keras model applied with mapInPandas.

Each Python worker loads the model once (cached by path) and scores Arrow batches. The input must
already hold the model's columns, encoded as for training (the spec saved beside the model says
how); the model's `Architecture` turns a batch into its inputs and its predictions into the output
column (probability, predicted items or forecast).
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

from ecomlake.deep import architecture
from ecomlake.deep.distributed import local_path

_MODELS: dict = {}


def _model(path: str, embedding_layer: str | None = None, custom_objects: dict | None = None):
    """The saved model (cached per Python worker); with embedding_layer, a model with two outputs:
    that layer's activations and the original output."""
    if (path, embedding_layer) not in _MODELS:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        model = tf.keras.models.load_model(path, compile=False, custom_objects=custom_objects)
        if embedding_layer:
            model = tf.keras.Model(model.inputs, [model.get_layer(embedding_layer).output, model.output])
        _MODELS[(path, embedding_layer)] = model
    return _MODELS[(path, embedding_layer)]


def predict(encoded: DataFrame, spec: dict, keep: tuple[str, ...], embedding: str | None = None) -> DataFrame:
    """keep columns + the model's output column, one row per input row, for the model
    spec["model_path"] of the architecture spec names. With `embedding` (a column name), also the
    activations of the architecture's `embedding_layer`, as array<float>."""
    model_architecture = architecture.for_model(spec)
    path = local_path(spec["model_path"])
    output = model_architecture.output_field
    layer = model_architecture.embedding_layer if embedding else None
    if embedding and not layer:
        raise ValueError(f"model {spec.get('model')} has no embedding layer")
    schema = StructType([encoded.schema[c] for c in keep] + [output]
                        + ([StructField(embedding, ArrayType(FloatType()))] if embedding else []))

    def score(batches):
        model = _model(path, layer, model_architecture.custom_objects())
        for pdf in batches:
            if pdf.empty:
                continue
            out = pdf[list(keep)].copy()
            predictions = model.predict_on_batch(model_architecture.numpy_inputs(pdf, spec))
            vectors, predictions = predictions if layer else (None, predictions)
            out[output.name] = model_architecture.output_values(predictions, pdf, spec)
            if layer:  # after the output column, as in the schema
                out[embedding] = list(vectors.astype("float32"))
            yield out

    return encoded.mapInPandas(score, schema)

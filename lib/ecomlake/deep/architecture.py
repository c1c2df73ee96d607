"""One base for every deep model: its inputs and target as Parquet columns, its output column.

A model declares which columns make each Keras input (`ModelInput`), which make the target, and
what its raw predictions become in a scored DataFrame (`output_field`, `output_values`). The
Horovod worker (`distributed.train_worker`, via `to_xy`) and Spark scoring (`scoring.predict`, via
`numpy_inputs`) both read a model through these methods, so a column is named in one place and
training and scoring stack it the same way.

Subclasses live beside their Keras builders (wide_deep, session_gru, text, forecast_windows) and
are found by the model's name (`for_model`); the modules are imported lazily because a worker
needs only its own model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from pyspark.sql.types import DoubleType, StructField


@dataclass(frozen=True)
class ModelInput:
    """One Keras input (or the target): these Parquet columns, stacked in order along axis 1."""
    name: str
    columns: tuple[str, ...]
    dtype: str = "float32"   # "float32", "int32" ("string": bytes the architecture decodes itself)
    channel: bool = False    # add a trailing axis (rows, columns, 1): a recurrent layer's time steps


class Architecture:
    """A Keras model the deep path trains from Parquet shards and scores with mapInPandas.

    Defaults fit a binary classifier: a one-column float target and a `probability` output."""
    loss = "binary_crossentropy"
    output_field = StructField("probability", DoubleType())
    embedding_layer: str | None = None   # a layer whose activations scoring can return (scoring.predict)

    def build(self, spec: dict):
        raise NotImplementedError

    def custom_objects(self) -> dict:
        """The model's own Keras layers by name (what loading a saved model needs)."""
        return {}

    def metrics(self) -> list:
        import tensorflow as tf

        return [tf.keras.metrics.AUC(name="auc")]

    def inputs(self, spec: dict) -> list[ModelInput]:
        raise NotImplementedError

    def learning_rate_steps(self, epochs: int) -> list[tuple[int, float]]:
        """(first epoch, multiplier of the scaled learning rate) pairs for a run of `epochs`; the
        later pair wins. None by default: the rate stays constant after the warm-up."""
        return []

    def target(self, spec: dict) -> ModelInput:
        return ModelInput("label", ("label",))

    def columns(self, spec: dict) -> list[str]:
        """Every column a training shard must hold (Petastorm reads only these)."""
        return [*self.target(spec).columns, *[c for i in self.inputs(spec) for c in i.columns]]

    def to_xy(self, batch, spec: dict):
        """A Petastorm batch (named tuple of column tensors) -> ({input name: tensor}, target)."""
        import tensorflow as tf

        def stacked(spec_input: ModelInput, squeeze: bool = False):
            columns = [tf.cast(getattr(batch, c), spec_input.dtype) for c in spec_input.columns]
            if squeeze and len(columns) == 1:
                return columns[0]
            tensor = tf.stack(columns, axis=1)
            return tf.expand_dims(tensor, -1) if spec_input.channel else tensor

        return ({i.name: stacked(i) for i in self.inputs(spec)}, stacked(self.target(spec), squeeze=True))

    def numpy_inputs(self, pdf, spec: dict) -> dict:
        """A pandas batch of the same columns -> the model's inputs, as `to_xy` builds them."""
        out = {}
        for spec_input in self.inputs(spec):
            array = pdf[list(spec_input.columns)].to_numpy(dtype=spec_input.dtype)
            out[spec_input.name] = array[:, :, None] if spec_input.channel else array
        return out

    def output_values(self, predictions, pdf, spec: dict):
        """The model's raw predictions for a batch -> the values of `output_field`."""
        return predictions.reshape(-1).astype("float64")


# model name -> the module whose `Architecture` class it is
MODULES = {"wide_deep": "ecomlake.deep.wide_deep", "session_gru": "ecomlake.deep.session_gru",
           "lstm_forecaster": "ecomlake.deep.forecast_windows", "review_text": "ecomlake.deep.text",
           "image_cnn": "ecomlake.deep.image_cnn",
           "session_attention": "ecomlake.deep.session_attention",
           "movielens_attention": "ecomlake.deep.session_attention"}


def for_model(spec: dict) -> Architecture:
    """The architecture a training spec names (specs written before the name was saved are Wide & Deep)."""
    name = spec.get("model", "wide_deep")
    if name not in MODULES:
        raise ValueError(f"unknown deep model '{name}'; models: {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name]).Architecture()

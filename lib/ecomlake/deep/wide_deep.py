"""Wide & Deep binary classifier in Keras (TensorFlow 2.15, Keras 2)."""
from __future__ import annotations

from ecomlake.deep import architecture as base


def build(n_numeric: int, vocabulary_size: int, embedding_dim: int = 8, hidden=(64, 32), seed: int = 7):
    """Wide: a linear model over the numeric inputs and the one-hot category. Deep: the category's
    embedding with the numeric inputs through a ReLU MLP. The two logits are summed."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)  # identical initial weights on every worker
    numeric = tf.keras.Input(shape=(n_numeric,), name="numeric", dtype="float32")
    category = tf.keras.Input(shape=(1,), name="category", dtype="int32")
    wide_category = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(vocabulary_size + 1, 1)(category))
    wide = tf.keras.layers.Add()([tf.keras.layers.Dense(1)(numeric), wide_category])
    embedded = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(vocabulary_size + 1, embedding_dim)(category))
    deep = tf.keras.layers.Concatenate()([numeric, embedded])
    for units in hidden:
        deep = tf.keras.layers.Dense(units, activation="relu")(deep)
    deep = tf.keras.layers.Dense(1)(deep)
    probability = tf.keras.layers.Activation("sigmoid", name="probability")(tf.keras.layers.Add()([wide, deep]))
    return tf.keras.Model(inputs=[numeric, category], outputs=probability)


class Architecture(base.Architecture):
    """Wide & Deep on the encoded numeric columns (f_000..) and the category index."""

    def build(self, spec: dict):
        return build(len(spec["numeric_columns"]), len(spec["vocabulary"]),
                     hidden=tuple(spec.get("hidden", (64, 32))), seed=spec["seed"])

    def inputs(self, spec: dict) -> list[base.ModelInput]:
        from ecomlake.deep.encode import numeric_name

        numeric = tuple(numeric_name(i) for i in range(len(spec["numeric_columns"])))
        return [base.ModelInput("numeric", numeric), base.ModelInput("category", ("category",), "int32")]

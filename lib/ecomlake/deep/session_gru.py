"""GRU4Rec-style session model: embedded item prefix -> GRU -> softmax over the item vocabulary."""
from __future__ import annotations

from pyspark.sql.types import ArrayType, IntegerType, StructField

from ecomlake.deep import architecture as base


def build(vocabulary_size: int, max_len: int, embedding_dim: int = 64, units: int = 128, seed: int = 7):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    items = tf.keras.Input(shape=(max_len,), name="items", dtype="int32")
    x = tf.keras.layers.Embedding(vocabulary_size + 1, embedding_dim, mask_zero=True)(items)
    x = tf.keras.layers.GRU(units)(x)
    scores = tf.keras.layers.Dense(vocabulary_size + 1, activation="softmax", name="next_item")(x)
    return tf.keras.Model(inputs=items, outputs=scores)


class Architecture(base.Architecture):
    """The session's last max_len item ids in; a softmax over the vocabulary out; scored as the
    top spec["top_k"] items (never id 0, the padding)."""
    loss = "sparse_categorical_crossentropy"
    output_field = StructField("predicted", ArrayType(IntegerType()))

    def build(self, spec: dict):
        return build(spec["vocabulary_size"], spec["max_len"], seed=spec["seed"])

    def metrics(self) -> list:
        import tensorflow as tf

        return [tf.keras.metrics.SparseTopKCategoricalAccuracy(k=20, name="recall_at_20")]

    def inputs(self, spec: dict) -> list[base.ModelInput]:
        from ecomlake.deep.sequences import item_name

        return [base.ModelInput("items", tuple(item_name(i) for i in range(spec["max_len"])), "int32")]

    def target(self, spec: dict) -> base.ModelInput:
        return base.ModelInput("target", ("target",), "int32")

    def output_values(self, predictions, pdf, spec: dict):
        import numpy as np

        from ecomlake.deep.sequences import NEXT_ITEM_K

        predictions[:, 0] = -1.0  # the padding index is never a recommendation
        top = np.argsort(-predictions, axis=1)[:, :spec.get("top_k", NEXT_ITEM_K)]
        return [row.astype("int32").tolist() for row in top]

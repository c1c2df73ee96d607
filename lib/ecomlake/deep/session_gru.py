"""GRU4Rec-style session model: embedded item prefix -> GRU -> softmax over the item vocabulary."""
from __future__ import annotations


def build(vocabulary_size: int, max_len: int, embedding_dim: int = 64, units: int = 128, seed: int = 7):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    items = tf.keras.Input(shape=(max_len,), name="items", dtype="int32")
    x = tf.keras.layers.Embedding(vocabulary_size + 1, embedding_dim, mask_zero=True)(items)
    x = tf.keras.layers.GRU(units)(x)
    scores = tf.keras.layers.Dense(vocabulary_size + 1, activation="softmax", name="next_item")(x)
    return tf.keras.Model(inputs=items, outputs=scores)


class Architecture:
    loss = "sparse_categorical_crossentropy"

    @staticmethod
    def build(spec: dict):
        return build(spec["vocabulary_size"], spec["max_len"], seed=spec["seed"])

    @staticmethod
    def metrics():
        import tensorflow as tf

        return [tf.keras.metrics.SparseTopKCategoricalAccuracy(k=20, name="recall_at_20")]

    @staticmethod
    def columns(spec: dict) -> list[str]:
        from ecomlake.deep.sequences import item_name

        return ["target", *[item_name(i) for i in range(spec["max_len"])]]

    @staticmethod
    def to_xy(batch, spec: dict):
        import tensorflow as tf

        from ecomlake.deep.sequences import item_name

        items = tf.stack([tf.cast(getattr(batch, item_name(i)), tf.int32) for i in range(spec["max_len"])], axis=1)
        return {"items": items}, tf.cast(batch.target, tf.int32)

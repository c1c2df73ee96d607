"""Self-attention next-item model over the session and the user's history (SASRec-style, one
target per example).

Tokens: the user's last `history_len` items from earlier sessions, then the session's last
`max_len` items, both left-padded with 0, so the newest item of each part always sits at the
same position; a learned position embedding tells history from session. Pre-norm transformer
blocks (multi-head self-attention with the padding masked, then a feed-forward layer) encode the
tokens; the last token's state is the query. Items are scored in the same space they are read
in (tied embeddings: state · item embedding + item bias), plus a learned weight on how often the
item already appears in the session and in the history (log1p of the count), so re-viewing an
item (the most common next step in a shop) is as cheap to learn as a new item is.
With history_len 0 the model reads one sequence (MovieLens: the user's last max_len ratings).
"""
from __future__ import annotations

from pyspark.sql.types import ArrayType, IntegerType, StructField

from ecomlake.deep import architecture as base

_LAYERS: dict = {}


def _layers():
    """The custom Keras layers (built on first use: TensorFlow is imported only by workers)."""
    if _LAYERS:
        return _LAYERS
    import tensorflow as tf

    @tf.keras.utils.register_keras_serializable("ecomlake")
    class ItemSpace(tf.keras.layers.Layer):
        """Item ids -> embeddings (padding 0 masked); [state, session ids(, history ids)] -> a
        softmax over the items (never the padding)."""

        def __init__(self, items: int, dim: int, **kwargs):
            super().__init__(**kwargs)
            self.items, self.dim = items, dim

        def build(self, input_shape):
            self.embeddings = self.add_weight(
                name="embeddings", shape=(self.items, self.dim),
                initializer=tf.keras.initializers.RandomNormal(stddev=self.dim ** -0.5))
            self.item_bias = self.add_weight(name="item_bias", shape=(self.items,), initializer="zeros")
            self.repeat = self.add_weight(name="repeat", shape=(2,), initializer="zeros")
            super().build(input_shape)

        def _counts(self, ids):
            return tf.math.log1p(tf.math.bincount(ids, minlength=self.items, maxlength=self.items, axis=-1,
                                                  dtype=tf.float32))

        def call(self, inputs):
            if not isinstance(inputs, (list, tuple)):
                return tf.nn.embedding_lookup(self.embeddings, inputs)
            state, session, *history = inputs
            logits = tf.matmul(state, self.embeddings, transpose_b=True) + self.item_bias
            logits += self.repeat[0] * self._counts(session)
            if history:
                logits += self.repeat[1] * self._counts(history[0])
            padding = tf.one_hot(0, self.items, on_value=-1e9, off_value=0.0)
            return tf.nn.softmax(logits + padding)

        def compute_mask(self, inputs, mask=None):
            return None if isinstance(inputs, (list, tuple)) else tf.not_equal(inputs, 0)

        def get_config(self):
            return {**super().get_config(), "items": self.items, "dim": self.dim}

    @tf.keras.utils.register_keras_serializable("ecomlake")
    class PositionEmbedding(tf.keras.layers.Layer):
        """Adds a learned vector per position (the mask passes through)."""

        def __init__(self, length: int, dim: int, **kwargs):
            super().__init__(**kwargs)
            self.length, self.dim = length, dim
            self.supports_masking = True

        def build(self, input_shape):
            self.positions = self.add_weight(name="positions", shape=(self.length, self.dim),
                                             initializer=tf.keras.initializers.RandomNormal(stddev=0.02))
            super().build(input_shape)

        def call(self, inputs):
            return inputs + self.positions

        def get_config(self):
            return {**super().get_config(), "length": self.length, "dim": self.dim}

    @tf.keras.utils.register_keras_serializable("ecomlake")
    class LastPosition(tf.keras.layers.Layer):
        """The state at the last position (the newest item: sequences are left-padded)."""

        def call(self, inputs):
            return inputs[:, -1, :]

        def compute_mask(self, inputs, mask=None):
            return None

    _LAYERS.update(ItemSpace=ItemSpace, PositionEmbedding=PositionEmbedding, LastPosition=LastPosition)
    return _LAYERS


def build(vocabulary_size: int, max_len: int, history_len: int = 0, dim: int = 64, heads: int = 2,
          blocks: int = 2, dropout: float = 0.1, seed: int = 7):
    import tensorflow as tf

    layers = _layers()
    tf.keras.utils.set_random_seed(seed)
    session = tf.keras.Input(shape=(max_len,), name="items", dtype="int32")
    inputs = [session]
    if history_len:
        inputs.insert(0, tf.keras.Input(shape=(history_len,), name="history", dtype="int32"))
    tokens = tf.keras.layers.Concatenate(axis=1)(inputs) if history_len else session
    item_space = layers["ItemSpace"](vocabulary_size + 1, dim, name="item_space")
    x = layers["PositionEmbedding"](history_len + max_len, dim)(item_space(tokens))
    x = tf.keras.layers.Dropout(dropout, seed=seed)(x)
    for _ in range(blocks):
        y = tf.keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = tf.keras.layers.MultiHeadAttention(heads, dim // heads, dropout=dropout)(y, y)
        x = tf.keras.layers.Add()([x, y])
        y = tf.keras.layers.LayerNormalization(epsilon=1e-6)(x)
        y = tf.keras.layers.Dense(2 * dim, activation="gelu")(y)
        y = tf.keras.layers.Dropout(dropout, seed=seed)(tf.keras.layers.Dense(dim)(y))
        x = tf.keras.layers.Add()([x, y])
    state = layers["LastPosition"](name="state")(tf.keras.layers.LayerNormalization(epsilon=1e-6)(x))
    scores = item_space([state, session, *inputs[:-1]])
    return tf.keras.Model(inputs=inputs, outputs=tf.keras.layers.Activation("linear", name="next_item")(scores))


class Architecture(base.Architecture):
    """History and session item ids in (spec history_len, max_len); the top spec["top_k"] items
    out, never the padding nor an item of the row's `exclude` array when the row has one (the
    items a MovieLens user has rated)."""
    loss = "sparse_categorical_crossentropy"
    output_field = StructField("predicted", ArrayType(IntegerType()))
    embedding_layer = "state"

    def custom_objects(self) -> dict:
        return dict(_layers())

    def build(self, spec: dict):
        return build(spec["vocabulary_size"], spec["max_len"], spec.get("history_len", 0),
                     dim=spec.get("dim", 64), blocks=spec.get("blocks", 2), seed=spec["seed"])

    def metrics(self) -> list:
        import tensorflow as tf

        return [tf.keras.metrics.SparseTopKCategoricalAccuracy(k=20, name="recall_at_20")]

    def inputs(self, spec: dict) -> list[base.ModelInput]:
        from ecomlake.deep.sequences import history_name, item_name

        session = base.ModelInput("items", tuple(item_name(i) for i in range(spec["max_len"])), "int32")
        if not spec.get("history_len", 0):
            return [session]
        return [base.ModelInput("history", tuple(history_name(i) for i in range(spec["history_len"])), "int32"),
                session]

    def target(self, spec: dict) -> base.ModelInput:
        return base.ModelInput("target", ("target",), "int32")

    def output_values(self, predictions, pdf, spec: dict):
        import numpy as np

        from ecomlake.deep.sequences import NEXT_ITEM_K

        predictions = np.array(predictions, copy=True)
        predictions[:, 0] = -1.0
        if "exclude" in pdf:
            for row, items in enumerate(pdf["exclude"]):
                if items is not None and len(items):
                    predictions[row, np.asarray(items, dtype="int64")] = -1.0
        top = np.argsort(-predictions, axis=1)[:, :spec.get("top_k", NEXT_ITEM_K)]
        return [row.astype("int32").tolist() for row in top]

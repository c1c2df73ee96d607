"""Review text for the deep path: a vocabulary, token-id sequences and a small Keras text model.

Ids: 0 pads, 1 is any word outside the vocabulary, 2.. are the vocabulary's words by descending
training frequency (ties alphabetical), so the encoding is deterministic. A review becomes its
first `max_len` tokens' ids, padded with 0, as columns tok_0..tok_{max_len-1} (Petastorm reads
scalar columns; the worker stacks them).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecomlake.deep import architecture as base
from ecomlake.models.sentiment import TOKEN_PATTERN

PAD, OOV = 0, 1


def token_name(i: int) -> str:
    return f"tok_{i}"


def tokens(text: Column) -> Column:
    """Lower-case words (letters and apostrophes), empty strings dropped; the TF-IDF model's tokens."""
    return F.filter(F.split(F.lower(text), TOKEN_PATTERN), lambda t: F.length(t) > 0)


def vocabulary(train_text: DataFrame, size: int, min_count: int = 2) -> DataFrame:
    """token, id (2..size+1) from the training texts' `text` column."""
    counts = (train_text.select(F.explode(tokens(F.col("text"))).alias("token"))
              .groupBy("token").count().where(F.col("count") >= min_count))
    ranked = counts.withColumn("rank", F.row_number().over(Window.orderBy(F.desc("count"), "token")))
    return ranked.where(F.col("rank") <= size).select("token", (F.col("rank") + 1).cast("int").alias("id"))


def encode(texts: DataFrame, vocab: DataFrame, max_len: int, key: str = "review_id") -> DataFrame:
    """texts (key, text, ...) -> the same rows plus tok_0..tok_{max_len-1}."""
    positions = texts.select(key, F.posexplode(tokens(F.col("text"))).alias("pos", "token")).where(F.col("pos") < max_len)
    ids = (positions.join(F.broadcast(vocab), "token", "left")
           .groupBy(key)
           .agg(F.array_sort(F.collect_list(F.struct("pos", F.coalesce("id", F.lit(OOV)).alias("id")))).alias("pairs")))
    padded = F.transform(F.sequence(F.lit(0), F.lit(max_len - 1)),
                         lambda i: F.coalesce(F.element_at(F.col("pairs"), i + 1)["id"], F.lit(PAD)))
    joined = texts.join(ids, key, "left").withColumn("ids", padded)
    return joined.select(*texts.columns, *[F.col("ids")[i].cast("int").alias(token_name(i)) for i in range(max_len)])


def build(vocabulary_size: int, max_len: int, embedding_dim: int = 64, hidden: int = 32, seed: int = 7):
    """Embedding -> masked mean over the words -> dense -> P(recommended). A fastText-like model:
    small enough to train in a minute on CPU, and word order beyond bigrams matters little here."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    ids = tf.keras.Input(shape=(max_len,), name="tokens", dtype="int32")
    x = tf.keras.layers.Embedding(vocabulary_size + 2, embedding_dim, mask_zero=True)(ids)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    x = tf.keras.layers.Dropout(0.2, seed=seed)(x)
    x = tf.keras.layers.Dense(hidden, activation="relu")(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid", name="recommended")(x)
    return tf.keras.Model(inputs=ids, outputs=out)


class Architecture(base.Architecture):
    """The review's token ids in, P(recommended) out."""

    def build(self, spec: dict):
        return build(spec["vocabulary_size"], spec["max_len"], seed=spec["seed"])

    def inputs(self, spec: dict) -> list[base.ModelInput]:
        return [base.ModelInput("tokens", tuple(token_name(i) for i in range(spec["max_len"])), "int32")]

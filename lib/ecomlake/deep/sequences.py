"""Session sequences for next-item models (pure Spark transforms).

Items are indexed 1..V by a vocabulary of the V most viewed products before the cutoff (0 pads
a sequence; products outside the vocabulary are dropped from sequences). A session is what
`sessionize` calls a session; its item sequence is its viewed/carted products in time order with
immediate repeats collapsed (GRU4Rec's convention). Every position p >= 1 of a sequence gives one
example: the (up to) max_len items before p, left-padded with 0, and the item at p as target.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecomlake import sessionize
from ecomlake.models.recommend import dense_index

# How many next items a session model recommends (its metrics are @ this k; score writes as many).
NEXT_ITEM_K = 20


def item_name(i: int) -> str:
    return f"item_{i:03d}"


def item_vocabulary(events: DataFrame, max_items: int) -> DataFrame:
    """product_id -> item (1..V) for the max_items most viewed products (ties: lower id)."""
    top = (events.where(F.col("event_type") == "view").groupBy("product_id").count()
           .orderBy(F.desc("count"), "product_id").limit(max_items))
    return dense_index(top, "product_id", "item").withColumn("item", F.col("item") + 1)


def session_sequences(events: DataFrame, vocabulary: DataFrame, gap_minutes: int, min_items: int = 2) -> DataFrame:
    """user_key, session_start, items (array<int>, time order, repeats collapsed), sessions with >= min_items."""
    steps = (sessionize.assign_sessions(events.where(F.col("event_type").isin("view", "cart")), gap_minutes)
             .join(F.broadcast(vocabulary), "product_id"))
    order = Window.partitionBy("user_key", "session_number").orderBy("event_time", "_type_order", "product_id")
    steps = (steps.withColumn("_previous", F.lag("item").over(order))
             .where(F.col("_previous").isNull() | (F.col("_previous") != F.col("item"))))
    return (steps.groupBy("user_key", "session_number")
            .agg(F.min("event_time").alias("session_start"),
                 F.array_sort(F.collect_list(F.struct("event_time", "_type_order", "product_id", "item"))).alias("_steps"))
            .select("user_key", "session_start", F.transform("_steps", lambda s: s["item"]).alias("items"))
            .where(F.size("items") >= min_items))


def next_item_examples(sequences: DataFrame, max_len: int) -> DataFrame:
    """user_key, session_start, position, item_000..item_{max_len-1} (left-padded prefix), target."""
    exploded = sequences.select("user_key", "session_start", "items",
                                F.posexplode("items").alias("position", "target")).where(F.col("position") >= 1)
    start = F.greatest(F.lit(0), F.col("position") - max_len)
    prefix = F.slice("items", start + 1, F.col("position") - start)
    padded = F.concat(F.array_repeat(F.lit(0), F.lit(max_len) - F.size(prefix)), prefix)
    return exploded.select("user_key", "session_start", "position",
                           *[padded.getItem(i).cast("int").alias(item_name(i)) for i in range(max_len)],
                           F.col("target").cast("int").alias("target"))


def latest_session_prefixes(sequences: DataFrame, max_len: int) -> DataFrame:
    """Each user's newest session: user_key, session_start, item_000.. (its last max_len items,
    left-padded): the input that asks the model for the item that comes next."""
    newest = sequences.groupBy("user_key").agg(F.max_by(F.struct("session_start", "items"), "session_start").alias("s"))
    items = F.col("s.items")
    start = F.greatest(F.lit(1), F.size(items) - max_len + 1)
    prefix = F.slice(items, start, F.lit(max_len))
    padded = F.concat(F.array_repeat(F.lit(0), F.lit(max_len) - F.size(prefix)), prefix)
    return newest.select("user_key", F.col("s.session_start").alias("session_start"),
                         *[padded.getItem(i).cast("int").alias(item_name(i)) for i in range(max_len)])


def popular_items(examples: DataFrame, k: int) -> list[int]:
    """The k most frequent targets (k numbers reach the driver)."""
    return [r["target"] for r in examples.groupBy("target").count()
            .orderBy(F.desc("count"), "target").limit(k).collect()]


def transition_neighbours(examples: DataFrame, max_len: int, k: int) -> DataFrame:
    """last item -> array of the k items that most often came right after it (co-occurrence baseline)."""
    last = F.col(item_name(max_len - 1))
    pairs = examples.groupBy(last.alias("last_item"), "target").count()
    order = Window.partitionBy("last_item").orderBy(F.desc("count"), "target")
    return (pairs.withColumn("_r", F.row_number().over(order)).where(F.col("_r") <= k)
            .groupBy("last_item")
            .agg(F.transform(F.array_sort(F.collect_list(F.struct("_r", "target"))), lambda s: s["target"])
                 .alias("neighbours")))

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


def history_name(i: int) -> str:
    return f"hist_{i:03d}"


def _last(items, length: int):
    """The last `length` elements of an array column (all of them when it is shorter)."""
    return F.slice(items, F.greatest(F.lit(1), F.size(items) - length + 1), length)


def left_padded(items, length: int, name) -> list:
    """The last `length` items of an array column as `length` int columns, left-padded with 0."""
    tail = _last(items, length)
    padded = F.concat(F.array_repeat(F.lit(0), F.lit(length) - F.size(tail)), tail)
    return [padded.getItem(i).cast("int").alias(name(i)) for i in range(length)]


def with_user_history(sequences: DataFrame, history_len: int) -> DataFrame:
    """Adds `history`: the user's last history_len items of the sessions before this one (time
    order). A session holds at least one item, so the history_len sessions before are enough."""
    earlier = Window.partitionBy("user_key").orderBy("session_start").rowsBetween(-history_len, -1)
    return sequences.withColumn("history", _last(F.flatten(F.collect_list("items").over(earlier)), history_len))


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


def history_at_end(sequences: DataFrame, history_len: int) -> DataFrame:
    """user_key, history: each user's last history_len items over all their sessions (time order):
    what a model that is not updated after a cutoff knows of the user."""
    newest_first = Window.partitionBy("user_key").orderBy(F.desc("session_start"))
    recent = (sequences.withColumn("_r", F.row_number().over(newest_first)).where(F.col("_r") <= history_len)
              .groupBy("user_key")
              .agg(F.flatten(F.transform(F.array_sort(F.collect_list(F.struct("session_start", "items"))),
                                         lambda s: s["items"])).alias("_all")))
    return recent.select("user_key", _last(F.col("_all"), history_len).alias("history"))


def next_item_examples(sequences: DataFrame, max_len: int, history_len: int = 0) -> DataFrame:
    """user_key, session_start, position, item_000..item_{max_len-1} (left-padded prefix), target;
    with history_len, also hist_000..hist_{history_len-1} from the `history` column
    (`with_user_history`), left-padded."""
    history = ["history"] if history_len else []
    exploded = sequences.select("user_key", "session_start", "items", *history,
                                F.posexplode("items").alias("position", "target")).where(F.col("position") >= 1)
    prefix = F.slice("items", F.lit(1), F.col("position"))
    return exploded.select("user_key", "session_start", "position",
                           *(left_padded(F.col("history"), history_len, history_name) if history_len else []),
                           *left_padded(prefix, max_len, item_name),
                           F.col("target").cast("int").alias("target"))


def latest_session_prefixes(sequences: DataFrame, max_len: int, history_len: int = 0) -> DataFrame:
    """Each user's newest session: user_key, session_start, item_000.. (its last max_len items,
    left-padded): the input that asks the model for the item that comes next; with history_len,
    also hist_000.. from the `history` column (`with_user_history`)."""
    history = [F.col("history")] if history_len else []
    newest = sequences.groupBy("user_key").agg(
        F.max_by(F.struct("session_start", "items", *history), "session_start").alias("s"))
    return newest.select("user_key", F.col("s.session_start").alias("session_start"),
                         *(left_padded(F.col("s.history"), history_len, history_name) if history_len else []),
                         *left_padded(F.col("s.items"), max_len, item_name))


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

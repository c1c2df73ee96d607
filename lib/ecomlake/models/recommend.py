"""Recommendations from implicit user-item strength: ALS, EASE, most-popular and item co-occurrence.

All of them take `interactions` (user_key, product_id, strength) and return top-k rows
(user_key, product_id, rank, score) for the users asked for, so one evaluation serves all.
By default none of them filters items the user already interacted with (repeat views and
repurchases are part of what the next period holds in a shop); `exclude` (user_key, product_id)
removes such items, as the MovieLens protocol requires.
"""
from __future__ import annotations

import itertools
import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ecomlake import evaluation, features
from ecomlake.models import ease

log = logging.getLogger(__name__)

CO_OCCURRENCE_HISTORY = 50   # a user's strongest items that count for co-occurrence (bounds the self-join)
CO_OCCURRENCE_NEIGHBOURS = 50  # neighbours kept per item


def dense_index(values: DataFrame, column: str, index_column: str) -> DataFrame:
    """column -> 0..n-1 in sorted order, via zipWithIndex (no single-partition window, nothing collected)."""
    distinct = values.select(column).distinct().orderBy(column)
    spark = values.sparkSession
    indexed = distinct.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1])))
    field = distinct.schema[column].dataType.simpleString()
    return spark.createDataFrame(indexed, f"{column} {field}, {index_column} int")


def truth_items(events: DataFrame, as_of: str, horizon_days: int) -> DataFrame:
    """What each user interacted with (view, cart or purchase) in [as_of, as_of + horizon)."""
    return (features.events_in_horizon(events, as_of, horizon_days)
            .where(F.col("event_type").isin("view", "cart", "purchase"))
            .select("user_key", "product_id").distinct())


def _top_k(scored: DataFrame, k: int, exclude: DataFrame | None = None) -> DataFrame:
    if exclude is not None:
        scored = scored.join(exclude.select("user_key", "product_id"), ["user_key", "product_id"], "left_anti")
    order = Window.partitionBy("user_key").orderBy(F.desc("score"), "product_id")
    return (scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)
            .select("user_key", "product_id", "rank", "score"))


def _candidates(k: int, exclude: DataFrame | None) -> int:
    """How many candidates to score so that k remain after removing a user's excluded items."""
    if exclude is None:
        return k
    most = exclude.groupBy("user_key").count().agg(F.max("count")).head()[0] or 0
    return k + int(most)


def popularity(interactions: DataFrame, users: DataFrame, k: int, exclude: DataFrame | None = None) -> DataFrame:
    """The k items with the most users interacting (ties: lower product id), for every user."""
    top = (interactions.groupBy("product_id")
           .agg(F.countDistinct("user_key").alias("n_users"))
           .orderBy(F.desc("n_users"), "product_id").limit(_candidates(k, exclude))
           .withColumn("score", F.col("n_users").cast("double")))
    return _top_k(users.select("user_key").distinct().crossJoin(F.broadcast(top.select("product_id", "score"))),
                  k, exclude)


def co_occurrence(interactions: DataFrame, users: DataFrame, k: int, exclude: DataFrame | None = None) -> DataFrame:
    """Item-to-item: C[i, j] = users who interacted with both i and j (a user's 50 strongest items
    count; 50 neighbours kept per item). score(u, j) = sum over u's items i of strength(u, i) * C[i, j]."""
    # Ties (e.g. all strengths 1.0) are broken by a hash, not by id, so no id range is favoured.
    history_order = Window.partitionBy("user_key").orderBy(F.desc("strength"), F.xxhash64("user_key", "product_id"))
    history = (interactions.withColumn("_r", F.row_number().over(history_order))
               .where(F.col("_r") <= CO_OCCURRENCE_HISTORY).select("user_key", "product_id", "strength"))
    pairs = (history.alias("a").join(history.alias("b"), "user_key")
             .groupBy(F.col("a.product_id").alias("item"), F.col("b.product_id").alias("neighbour"))
             .agg(F.count(F.lit(1)).alias("together")))
    neighbour_order = Window.partitionBy("item").orderBy(F.desc("together"), "neighbour")
    neighbours = (pairs.withColumn("_r", F.row_number().over(neighbour_order))
                  .where(F.col("_r") <= CO_OCCURRENCE_NEIGHBOURS).drop("_r"))
    scored = (history.join(users.select("user_key").distinct(), "user_key")
              .join(neighbours, history["product_id"] == neighbours["item"])
              .groupBy("user_key", F.col("neighbour").alias("product_id"))
              .agg(F.sum(F.col("strength") * F.col("together")).alias("score")))
    return _top_k(scored, k, exclude)


CATEGORY_POPULARITY_CATEGORIES = 3  # a user's strongest categories that category_popularity draws from


def item_categories(events: DataFrame) -> DataFrame:
    """product_id -> category_id, price: each product's latest category and its median price in
    `events` (the caller passes events before its cutoff)."""
    return (events.where(F.col("category_id").isNotNull()).groupBy("product_id")
            .agg(F.max_by("category_id", "event_time").alias("category_id"),
                 F.percentile_approx("price", 0.5).alias("price")))


def category_popularity(interactions: DataFrame, categories: DataFrame, users: DataFrame, k: int,
                        exclude: DataFrame | None = None) -> DataFrame:
    """Popularity in the user's own categories: the user's CATEGORY_POPULARITY_CATEGORIES strongest
    categories (by their share of the user's strength) and, in each, the items with the most users;
    score = the category's share x the item's users. categories: product_id, category_id."""
    attributed = interactions.join(categories.select("product_id", "category_id"), "product_id")
    per_user = Window.partitionBy("user_key")
    strongest = Window.partitionBy("user_key").orderBy(F.desc("_s"), "category_id")
    user_categories = (attributed.join(users.select("user_key").distinct(), "user_key")
                       .groupBy("user_key", "category_id").agg(F.sum("strength").alias("_s"))
                       .withColumn("share", F.col("_s") / F.sum("_s").over(per_user))
                       .withColumn("_r", F.row_number().over(strongest))
                       .where(F.col("_r") <= CATEGORY_POPULARITY_CATEGORIES))
    most_users = Window.partitionBy("category_id").orderBy(F.desc("n_users"), "product_id")
    top_items = (attributed.groupBy("category_id", "product_id").agg(F.countDistinct("user_key").alias("n_users"))
                 .withColumn("_r", F.row_number().over(most_users))
                 .where(F.col("_r") <= _candidates(k, exclude)))
    scored = user_categories.join(top_items, "category_id").select(
        "user_key", "product_id", (F.col("share") * F.col("n_users")).alias("score"))
    return _top_k(scored, k, exclude)


NEXT_ITEM_STEPS = 3  # a user's last items whose successors are scored (weights 1, 1/2, 1/3)


def leave_last_out(interactions: DataFrame, time_column: str) -> DataFrame:
    """Adds `_from_end`: 1 for each user's last interaction (by time; equal times by product id),
    2 for the one before, ... The sequential benchmark's split: 1 is the test item, 2 the
    validation item, the rest the training sequence."""
    order = Window.partitionBy("user_key").orderBy(F.desc(time_column), F.desc("product_id"))
    return interactions.withColumn("_from_end", F.row_number().over(order))


def next_after_last(sequences: DataFrame, time_column: str, users: DataFrame, k: int,
                    exclude: DataFrame | None = None) -> DataFrame:
    """Sequence-aware item-to-item: T[i, j] = how often j directly follows i in the users'
    sequences (ordered by time, equal times by product id); score(u, j) = sum over u's last
    NEXT_ITEM_STEPS items i_h (h = 1 for the last) of T[i_h, j] / h."""
    forward = Window.partitionBy("user_key").orderBy(time_column, "product_id")
    transitions = (sequences.withColumn("_next", F.lead("product_id").over(forward))
                   .where(F.col("_next").isNotNull())
                   .groupBy(F.col("product_id").alias("item"), F.col("_next").alias("next_item"))
                   .agg(F.count(F.lit(1)).alias("follows")))
    backward = Window.partitionBy("user_key").orderBy(F.desc(time_column), F.desc("product_id"))
    last = (sequences.join(users.select("user_key").distinct(), "user_key")
            .withColumn("_h", F.row_number().over(backward)).where(F.col("_h") <= NEXT_ITEM_STEPS))
    scored = (last.join(transitions, last["product_id"] == transitions["item"])
              .groupBy("user_key", F.col("next_item").alias("product_id"))
              .agg(F.sum(F.col("follows") / F.col("_h")).alias("score")))
    return _top_k(scored, k, exclude)


def fit_als(interactions: DataFrame, user_index: DataFrame, item_index: DataFrame, rank: int,
            reg_param: float, alpha: float, max_iter: int, seed: int, **spark_options):
    """ALS (implicit feedback) on integer indexes of users and items. spark_options go to Spark's
    ALS as they are (numUserBlocks, numItemBlocks, intermediateStorageLevel, checkpointInterval...)."""
    from pyspark.ml.recommendation import ALS

    data = (interactions.join(user_index, "user_key").join(item_index, "product_id")
            .select("user_index", "item_index", "strength"))
    als = ALS(rank=rank, regParam=reg_param, alpha=alpha, maxIter=max_iter, seed=seed,
              implicitPrefs=True, userCol="user_index", itemCol="item_index", ratingCol="strength",
              coldStartStrategy="drop", nonnegative=False, **spark_options)
    return als.fit(data)


def als_recommend(model, user_index: DataFrame, item_index: DataFrame, users: DataFrame, k: int,
                  exclude: DataFrame | None = None) -> DataFrame:
    """Top-k items for the given users (users unknown to the model get none)."""
    wanted = users.select("user_key").distinct().join(user_index, "user_key")
    recs = model.recommendForUserSubset(wanted.select("user_index"), _candidates(k, exclude))
    scored = (recs.select("user_index", F.explode("recommendations").alias("rec"))
              .join(user_index, "user_index")
              .join(item_index, F.col("rec.item_index") == item_index["item_index"])
              .select("user_key", "product_id", F.col("rec.rating").cast("double").alias("score")))
    return _top_k(scored, k, exclude)


def index_frames(spark: SparkSession, interactions: DataFrame):
    return dense_index(interactions, "user_key", "user_index"), dense_index(interactions, "product_id", "item_index")


def stratified_split(interactions: DataFrame, ratio: float, seed: int) -> DataFrame:
    """Adds `_is_train`: per user, a seeded random `ratio` of their items (at least one) is train,
    the rest test (the Microsoft Recommenders benchmark's per-user stratified split)."""
    per_user = Window.partitionBy("user_key")
    order = per_user.orderBy(F.xxhash64(F.lit(seed), "user_key", "product_id"), "product_id")
    keep = F.greatest(F.lit(1), F.round(F.count(F.lit(1)).over(per_user) * ratio))
    return interactions.withColumn("_is_train", F.row_number().over(order) <= keep)


def tune_als(fit_on: DataFrame, truth: DataFrame, k: int, ranks: list, reg_params: list, alphas: list,
             max_iter: int, seed: int, exclude: bool = False, **spark_options) -> tuple[dict, list[dict]]:
    """Grid search over ranks x reg_params x alphas by validation NDCG@k: fit on `fit_on`
    (interactions), score the users of `truth` (user_key, product_id). Returns the best point and
    the whole grid with each point's NDCG. exclude: leave out items seen in fit_on (MovieLens).
    spark_options: Spark ALS settings for every fit (fit_als)."""
    fit_on = fit_on.select("user_key", "product_id", "strength").persist(StorageLevel.MEMORY_AND_DISK)
    truth = truth.persist(StorageLevel.MEMORY_AND_DISK)
    users, items = index_frames(fit_on.sparkSession, fit_on)
    catalogue = fit_on.select("product_id").distinct().count()
    seen = fit_on if exclude else None
    grid = []
    for rank, reg, alpha in itertools.product(ranks, reg_params, alphas):
        model = fit_als(fit_on, users, items, int(rank), float(reg), float(alpha), max_iter, seed, **spark_options)
        recs = als_recommend(model, users, items, truth, k, seen)
        ndcg = evaluation.ranking_metrics(recs, truth, k, catalogue, "user_key", "product_id")[f"ndcg@{k}"]
        grid.append({"rank": int(rank), "reg_param": float(reg), "alpha": float(alpha), f"ndcg@{k}": ndcg})
        log.info(f"  tuning ALS rank={rank} regParam={reg} alpha={alpha}: validation ndcg@{k}={ndcg:.4f}")
    fit_on.unpersist()
    truth.unpersist()
    return max(grid, key=lambda g: g[f"ndcg@{k}"]), grid


def ease_recommend(model: ease.EaseModel, history: DataFrame, users: DataFrame, k: int,
                   exclude: DataFrame | None = None) -> DataFrame:
    """EASE's top k for `users` from their `history` (user_key, product_id, strength)."""
    return _top_k(ease.recommend(model, history, users, _candidates(k, exclude)), k, exclude)


def tune_ease(fit_on: DataFrame, truth: DataFrame, k: int, lambdas: list, max_items: int,
              exclude: bool = False) -> tuple[dict, list[dict]]:
    """lambda by validation NDCG@k, as tune_als does for ALS: fit on `fit_on`, score the users of
    `truth`. Returns the best point and the whole grid."""
    fit_on = fit_on.select("user_key", "product_id", "strength").persist(StorageLevel.MEMORY_AND_DISK)
    truth = truth.persist(StorageLevel.MEMORY_AND_DISK)
    items, _, by_lambda = ease.fit(fit_on, lambdas, max_items)
    catalogue = fit_on.select("product_id").distinct().count()
    grid = []
    for lambda_, weights in by_lambda.items():
        recs = ease_recommend(ease.EaseModel(items, weights, lambda_), fit_on, truth, k, fit_on if exclude else None)
        ndcg = evaluation.ranking_metrics(recs, truth, k, catalogue, "user_key", "product_id")[f"ndcg@{k}"]
        grid.append({"lambda": lambda_, f"ndcg@{k}": ndcg})
        log.info(f"  tuning EASE lambda={lambda_}: validation ndcg@{k}={ndcg:.4f}")
    items.unpersist()
    fit_on.unpersist()
    truth.unpersist()
    return max(grid, key=lambda g: g[f"ndcg@{k}"]), grid

"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): an item-item
linear model with a closed form, a candidate generator beside ALS and co-occurrence.

    G = X^T X             the item Gram matrix (X: users x items strengths), summed in Spark
    P = (G + lambda I)^-1
    B = -P / diag(P)      column j divided by P[j, j]; diag(B) = 0 (an item may not predict itself)
    score(u, j) = sum over u's items i of x[u, i] * B[i, j]

The Gram matrix and B are items x items, dense, on the driver (and B broadcast to the executors):
8 n^2 bytes each for n items, and the inverse costs n^3. So EASE keeps the `max_items` items with
the most users (ties: lower product id): 10,000 by default (800 MB per matrix, about a minute to
invert on one core). Above it the rarer items are neither inputs nor candidates, and the fit logs
how many were left out; the other generators still cover them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ecomlake.errors import InputError

log = logging.getLogger(__name__)

MAX_ITEMS = 10_000
SCORE_USERS = 1024  # users scored at once: a 1024 x n float32 block (40 MB at 10,000 items)


@dataclass
class EaseModel:
    items: DataFrame      # product_id, item_index 0..n-1
    weights: np.ndarray   # B, n x n float32
    lambda_: float


def model_items(interactions: DataFrame, max_items: int = MAX_ITEMS) -> DataFrame:
    """The items EASE models: the max_items with the most users (ties: lower product id), indexed
    0..n-1 in that order. A top-k (limit after the sort), then a window over those n rows only."""
    top = (interactions.groupBy("product_id").agg(F.countDistinct("user_key").alias("_users"))
           .orderBy(F.desc("_users"), "product_id").limit(max_items))
    order = Window.orderBy(F.desc("_users"), "product_id")  # at most max_items rows in one partition
    return top.select("product_id", (F.row_number().over(order) - 1).cast("int").alias("item_index"))


def _user_rows(interactions: DataFrame, items: DataFrame) -> DataFrame:
    """user_key, idx (item indexes, ascending), x (their summed strengths): one row per user."""
    summed = (interactions.join(items, "product_id").groupBy("user_key", "item_index")
              .agg(F.sum("strength").alias("strength")))
    ordered = F.sort_array(F.collect_list(F.struct("item_index", "strength")))
    return (summed.groupBy("user_key").agg(ordered.alias("_x"))
            .select("user_key", F.col("_x.item_index").alias("idx"), F.col("_x.strength").alias("x")))


def gram(interactions: DataFrame, items: DataFrame, n_items: int) -> np.ndarray:
    """G = X^T X over the modelled items, by Spark MLlib's RowMatrix.computeGramianMatrix (one
    sparse row per user, summed by a tree aggregate); n_items x n_items on the driver."""
    from pyspark.mllib.linalg import Vectors
    from pyspark.mllib.linalg.distributed import RowMatrix

    vectors = _user_rows(interactions, items).rdd.map(lambda r: Vectors.sparse(n_items, r.idx, r.x))
    return RowMatrix(vectors, numCols=n_items).computeGramianMatrix().toArray()


def weights(gram_matrix: np.ndarray, lambda_: float) -> np.ndarray:
    """B from G: the closed-form solution with a zero diagonal."""
    p = np.linalg.inv(gram_matrix + lambda_ * np.eye(gram_matrix.shape[0]))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def fit(interactions: DataFrame, lambdas: list[float], max_items: int = MAX_ITEMS) -> tuple[DataFrame, np.ndarray,
                                                                                            dict[float, np.ndarray]]:
    """The modelled items, G, and B for each lambda (one Gram matrix serves every lambda)."""
    items = model_items(interactions, max_items).persist()
    n = items.count()
    if n == 0:
        items.unpersist()
        raise InputError("EASE has no interactions to learn from: the training part is empty")
    total = interactions.select("product_id").distinct().count()
    if total > n:
        log.warning("EASE models the %d items with the most users; %d rarer items are left out "
                    "(train.ease_max_items)", n, total - n)
    g = gram(interactions, items, n)
    return items, g, {float(lam): weights(g, float(lam)) for lam in lambdas}


def recommend(model: EaseModel, interactions: DataFrame, users: DataFrame, candidates: int) -> DataFrame:
    """The `candidates` best-scored items for each user of `users` with modelled interactions
    (user_key, product_id, score), seen items included: the caller ranks and filters (_top_k).
    Scores are computed per batch of users as sparse rows times the broadcast B (vectorised)."""
    import pandas as pd

    spark = interactions.sparkSession
    b = spark.sparkContext.broadcast(model.weights)
    n = model.weights.shape[0]
    keep = min(candidates, n)
    history = _user_rows(interactions.join(users.select("user_key").distinct(), "user_key"), model.items)

    def score(batches):
        for batch in batches:
            for start in range(0, len(batch), SCORE_USERS):  # bounds the dense users x items block
                part = batch.iloc[start:start + SCORE_USERS]
                x = np.zeros((len(part), n), dtype=np.float32)
                for row, (idx, values) in enumerate(zip(part["idx"], part["x"])):
                    x[row, np.asarray(idx, dtype=np.int64)] = np.asarray(values, dtype=np.float32)
                scores = x @ b.value
                top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
                yield pd.DataFrame({
                    "user_key": np.repeat(part["user_key"].to_numpy(), keep),
                    "item_index": top.ravel().astype(np.int32),
                    "score": np.take_along_axis(scores, top, axis=1).ravel().astype(np.float64)})

    user_type = history.schema["user_key"].dataType.simpleString()
    scored = history.mapInPandas(score, f"user_key {user_type}, item_index int, score double")
    return scored.join(F.broadcast(model.items), "item_index").select("user_key", "product_id", "score")

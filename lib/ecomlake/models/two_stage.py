"""Stage one of the two-stage recommender on shop data: the candidate generators and the
features the ranker (models/ranker.py) orders them by. Shared by `train recommend` (which trains
and measures the ranker) and `score --task two_stage` (which applies it at a later date)."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecomlake.models import ease, item_graph, ranker, recommend

SHOP_FEATURES = ["user_items", "item_users", "item_strength", "own_strength", "category_share", "price_ratio",
                 "complement_lift", "next_view_lift"]
GRAPH_MIN_COUNT = 2        # item-graph edges seen fewer times than this are noise, not features
RECENT_VIEW_DAYS = 7       # the user's views whose viewed-next edges count (next_view_lift)


@dataclass
class Generators:
    """The generators' settings: ALS's tuned point, EASE's lambda (None: no EASE), Spark ALS options."""
    als_rank: int
    als_reg_param: float
    als_alpha: float
    als_max_iter: int
    seed: int
    ease_lambda: float | None = None
    ease_max_items: int = ease.MAX_ITEMS
    als_options: dict | None = None


def shop_lists(inter: DataFrame, categories: DataFrame, users: DataFrame, depth: int,
               settings: Generators) -> tuple[dict, object, DataFrame, DataFrame]:
    """Each generator's top `depth` for `users` from `inter` (user_key, product_id, strength):
    ALS, popularity, co-occurrence, category popularity and (with a lambda) EASE. Returns the lists,
    the fitted ALS and its user and item indexes (persisted: the caller unpersists them)."""
    user_index, item_index = recommend.index_frames(inter.sparkSession, inter)
    user_index.persist(StorageLevel.MEMORY_AND_DISK)
    item_index.persist(StorageLevel.MEMORY_AND_DISK)
    als = recommend.fit_als(inter, user_index, item_index, settings.als_rank, settings.als_reg_param,
                            settings.als_alpha, settings.als_max_iter, settings.seed, **(settings.als_options or {}))
    lists = {
        "als": recommend.als_recommend(als, user_index, item_index, users, depth),
        "popularity": recommend.popularity(inter, users, depth),
        "co_occurrence": recommend.co_occurrence(inter, users, depth),
        "category_popularity": recommend.category_popularity(inter, categories, users, depth),
    }
    if settings.ease_lambda is not None:
        items, _, by_lambda = ease.fit(inter, [settings.ease_lambda], settings.ease_max_items)
        model = ease.EaseModel(items, by_lambda[settings.ease_lambda], settings.ease_lambda)
        lists["ease"] = recommend.ease_recommend(model, inter, users, depth)
    return lists, als, user_index, item_index


def feature_columns(generators: list[str]) -> list[str]:
    return ranker.generator_columns(sorted(generators)) + SHOP_FEATURES


def graph_features(candidate_rows: DataFrame, history: DataFrame, window_days: int) -> DataFrame:
    """Adds what the item graph of `history` (events before the cutoff) says about each candidate:
    complement_lift, the largest bought-after lift from a product the user bought to it (users who
    bought that product met this one within window_days more often than chance), and
    next_view_lift, the largest viewed-next lift to it from a product the user viewed in the last
    RECENT_VIEW_DAYS days of the history. 0 where no edge of at least GRAPH_MIN_COUNT leads there."""
    def strongest(edges: DataFrame, sources: DataFrame, name: str) -> DataFrame:
        edges = edges.where(F.col("count") >= GRAPH_MIN_COUNT).select("src", F.col("dst").alias("product_id"), "lift")
        return (sources.join(edges, "src").groupBy("user_key", "product_id").agg(F.max("lift").alias(name)))

    bought = history.where(F.col("event_type") == "purchase").select("user_key", F.col("product_id").alias("src"))
    last = history.agg(F.max("event_time")).head()[0]
    recent = history.where((F.col("event_type") == "view")
                           & (F.col("event_time") > F.lit(last) - F.expr(f"INTERVAL {RECENT_VIEW_DAYS} DAYS")))
    viewed = recent.select("user_key", F.col("product_id").alias("src"))
    complements = strongest(item_graph.bought_after(history, window_days), bought.distinct(), "complement_lift")
    next_views = strongest(item_graph.viewed_next(history), viewed.distinct(), "next_view_lift")
    return (candidate_rows.join(complements, ["user_key", "product_id"], "left")
            .join(next_views, ["user_key", "product_id"], "left")
            .fillna(0.0, ["complement_lift", "next_view_lift"]))


def shop_candidates(lists: dict, inter: DataFrame, categories: DataFrame, history: DataFrame, depth: int,
                    window_days: int) -> DataFrame:
    """The union of the lists with every column of feature_columns(lists). history: the events
    before the cutoff (for the item-graph features)."""
    rows = ranker.interaction_features(ranker.candidates(lists, depth), inter)
    return graph_features(ranker.category_features(rows, inter, categories), history, window_days)

"""Stage one of the two-stage recommender on shop data: the candidate generators and the
features the ranker (models/ranker.py) orders them by. Shared by `train recommend` (which trains
and measures the ranker) and `score --task two_stage` (which applies it at a later date)."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from ecomlake.models import ease, ranker, recommend

SHOP_FEATURES = ["user_items", "item_users", "item_strength", "own_strength", "category_share", "price_ratio"]


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


def shop_candidates(lists: dict, inter: DataFrame, categories: DataFrame, depth: int) -> DataFrame:
    """The union of the lists with every column of feature_columns(lists)."""
    rows = ranker.interaction_features(ranker.candidates(lists, depth), inter)
    return ranker.category_features(rows, inter, categories)

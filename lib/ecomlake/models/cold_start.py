"""Cold-start products: recommending items nobody has touched yet from what they are (picture,
words, price), and "visually similar" items.

A product's content (gold/product_content):
  text_embedding   MiniLM embedding of its category words and brand ("apparel shoes nike")
  image_embedding  the image CNN's embedding of its picture (gold/item_image_embeddings), L2-normalised
  log_price_ratio  log(base price / median base price of its category)
A user's profile, from the interactions before the cutoff (strength = features.interactions'):
the strength-weighted mean text embedding and, per category, mean image embedding (Spark ML
Summarizer), their shares per category and their mean log price ratio.

Features of a (user, item) pair, computed in numpy per Arrow batch of users against the broadcast
item matrix (bounded by the catalogue, not the events):
  category_affinity    the user's share of strength in the item's category
  text_similarity      cosine(profile text, item text)
  image_similarity     cosine(the user's picture profile in the item's category, item image); 0
                       when either has none
  price_closeness      -|profile log price ratio - item log price ratio|
  category_popularity  log of the item's category share of all interactions
The content ranker is a Spark ML logistic regression on these features, trained before the
cutoff (a week of new-to-the-user items against sampled ones: warm items teach it how content
relates to taste) and applied to the new items after it. Rows compared (MODELS): popularity (the
category's, the only popularity a new item has), category affinity, text alone, image alone, the
ranker without the image, and the ranker with everything.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd  # module level: Spark resolves the pandas UDF's type hints in this namespace
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecomlake.errors import ConfigError, require_columns

FEATURES = ("category_affinity", "text_similarity", "image_similarity", "price_closeness", "category_popularity")
WITHOUT_IMAGE = tuple(f for f in FEATURES if f != "image_similarity")
# Ranking rows: name -> the single feature it ranks by, or None for a trained ranker.
MODELS = {"popularity": "category_popularity", "category_affinity": "category_affinity",
          "text_only": "text_similarity", "image_only": "image_similarity",
          "content_without_image": None, "content": None}
RANKERS = {"content_without_image": WITHOUT_IMAGE, "content": FEATURES}
# Users x items cells scored at once in a Python worker (about 4 MB per float32 feature): an Arrow
# batch of users is cut into slices of this size, so memory stays flat whatever the catalogue.
CELLS_PER_SLICE = 1_000_000


def product_text(category_code: Column, brand: Column) -> Column:
    """The words a shopper sees for a generated product: its category path and brand."""
    words = F.regexp_replace(F.coalesce(category_code, F.lit("uncategorised")), "[._]", " ")
    return F.trim(F.concat_ws(" ", words, F.coalesce(brand, F.lit(""))))


def _normalised(vector: Column) -> Column:
    norm = F.sqrt(F.aggregate(vector, F.lit(0.0), lambda acc, x: acc + x * x))
    return F.when(norm > 0, F.transform(vector, lambda x: x / norm))


def product_content(products: DataFrame, text_embeddings: DataFrame, image_links: DataFrame | None,
                    image_embeddings: DataFrame | None) -> DataFrame:
    """bronze/products, (text, embedding) of every product text, bronze/product_image_links and
    gold/item_image_embeddings rows of one model (image_id, label_name, embedding) -> product_id,
    category_code, brand, base_price, text, text_embedding, image_id, image_label,
    image_embedding (null without a picture), log_price_ratio."""
    require_columns(products, ["product_id", "category_code", "brand", "base_price"], "bronze/products")
    category = F.coalesce("category_code", F.lit("uncategorised"))
    median = F.percentile_approx(F.log("base_price"), 0.5).over(Window.partitionBy(category))
    content = (products.select("product_id", "category_code", "brand", "base_price",
                               product_text(F.col("category_code"), F.col("brand")).alias("text"))
               .join(text_embeddings.select("text", F.col("embedding").alias("text_embedding")), "text", "left")
               .withColumn("log_price_ratio", F.log("base_price") - median))
    if image_links is None or image_embeddings is None:
        return content.select("*", F.lit(None).cast("long").alias("image_id"), F.lit(None).cast("string").alias("image_label"),
                              F.lit(None).cast("array<float>").alias("image_embedding"))
    images = image_embeddings.select("image_id", F.col("label_name").alias("image_label"),
                                     _normalised(F.col("embedding")).alias("image_embedding"))
    return content.join(image_links.select("product_id", "image_id").join(images, "image_id"), "product_id", "left")


def user_profiles(interactions: DataFrame, content: DataFrame) -> DataFrame:
    """interactions (user_key, product_id, strength) x product content -> user_key, text_profile,
    image_profiles (map category -> mean picture embedding of what the user touched in it; null
    when the user touched no product with a picture), category_shares (map category -> share of the
    user's strength), price_profile."""
    category = F.coalesce("category_code", F.lit("uncategorised"))
    rows = (interactions.select("user_key", "product_id", "strength")
            .join(content.select("product_id", category.alias("category"), "log_price_ratio",
                                 array_to_vector("text_embedding").alias("text_vector"),
                                 F.when(F.col("image_embedding").isNotNull(), array_to_vector("image_embedding"))
                                 .alias("image_vector")), "product_id"))
    text = rows.groupBy("user_key").agg(
        vector_to_array(Summarizer.mean(F.col("text_vector"), F.col("strength"))).alias("text_profile"),
        (F.sum(F.col("strength") * F.col("log_price_ratio"))
         / F.sum(F.when(F.col("log_price_ratio").isNotNull(), F.col("strength")))).alias("price_profile"))
    # Taste in pictures is per category (the sandals a user likes say nothing about their shirts).
    image = (rows.where(F.col("image_vector").isNotNull()).groupBy("user_key", "category")
             .agg(vector_to_array(Summarizer.mean(F.col("image_vector"), F.col("strength"))).alias("image_profile"))
             .groupBy("user_key")
             .agg(F.map_from_entries(F.collect_list(F.struct("category", "image_profile"))).alias("image_profiles")))
    per_category = rows.groupBy("user_key", "category").agg(F.sum("strength").alias("strength"))
    shares = (per_category
              .withColumn("share", F.col("strength") / F.sum("strength").over(Window.partitionBy("user_key")))
              .groupBy("user_key")
              .agg(F.map_from_entries(F.collect_list(F.struct("category", "share"))).alias("category_shares")))
    return text.join(image, "user_key", "left").join(shares, "user_key")


def category_popularity(interactions: DataFrame, content: DataFrame) -> dict[str, float]:
    """log(share of all interaction strength) per category (one row per category reaches the
    driver); ItemMatrix.collect gives a category nobody touched the log of half the smallest share."""
    category = F.coalesce("category_code", F.lit("uncategorised"))
    rows = (interactions.join(content.select("product_id", category.alias("category")), "product_id")
            .groupBy("category").agg(F.sum("strength").alias("strength")).collect())
    total = sum(r["strength"] for r in rows) or 1.0
    return {r["category"]: float(np.log(r["strength"] / total)) for r in rows if r["strength"] > 0}


@dataclass
class ItemMatrix:
    """The candidate items' content as numpy arrays (broadcast to every Python worker)."""
    product_ids: np.ndarray
    categories: list
    text: np.ndarray          # items x text dims, unit rows
    image: np.ndarray         # items x image dims, unit rows (zeros without a picture)
    log_price_ratio: np.ndarray
    popularity: np.ndarray    # log category share per item

    @classmethod
    def collect(cls, content: DataFrame, popularity: dict[str, float], max_items: int) -> "ItemMatrix":
        n = content.count()
        if n > max_items:
            raise ConfigError(f"{n:,} candidate products exceed cold_start.max_items ({max_items:,}): their content "
                              "is broadcast to every worker; raise it if the executors' Python memory allows "
                              "(about 2 KB per product)")
        rows = content.orderBy("product_id").collect()  # bounded by max_items (checked above)
        text_dim = next((len(r["text_embedding"]) for r in rows if r["text_embedding"] is not None), 1)
        image_dim = next((len(r["image_embedding"]) for r in rows if r["image_embedding"] is not None), 1)
        floor = min(popularity.values(), default=0.0) - np.log(2.0)
        cats = [r["category_code"] or "uncategorised" for r in rows]
        return cls(
            product_ids=np.array([r["product_id"] for r in rows], dtype=np.int64),
            categories=cats,
            text=_unit_rows(np.array([r["text_embedding"] or [0.0] * text_dim for r in rows], dtype=np.float32)),
            image=_unit_rows(np.array([r["image_embedding"] or [0.0] * image_dim for r in rows], dtype=np.float32)),
            log_price_ratio=np.array([r["log_price_ratio"] or 0.0 for r in rows], dtype=np.float32),
            popularity=np.array([popularity.get(c, floor) for c in cats], dtype=np.float32))


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def _entries(mapping) -> list:
    """A map column's value in a pandas batch (a dict, a list of pairs or None) -> (key, value) pairs."""
    if mapping is None:
        return []
    return list(mapping.items()) if isinstance(mapping, dict) else list(mapping)


def _slices(batch: pd.DataFrame, n_items: int):
    """The batch in slices of users small enough that users x items stays under CELLS_PER_SLICE."""
    step = max(1, CELLS_PER_SLICE // max(1, n_items))
    for start in range(0, len(batch), step):
        yield batch.iloc[start:start + step].reset_index(drop=True)


def pair_features(batch: pd.DataFrame, items: ItemMatrix) -> dict[str, np.ndarray]:
    """A batch of user profiles -> each feature as a users x items matrix."""
    def stacked(column, dim):
        return _unit_rows(np.array([v if v is not None else np.zeros(dim) for v in batch[column]], dtype=np.float32))

    shape = (len(batch), len(items.categories))
    affinity, image = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    index = {}
    for j, c in enumerate(items.categories):
        index.setdefault(c, []).append(j)
    index = {c: np.array(js) for c, js in index.items()}
    for i, (shares, pictures) in enumerate(zip(batch["category_shares"], batch["image_profiles"])):
        for category, share in _entries(shares):
            if category in index:
                affinity[i, index[category]] = share
        for category, profile in _entries(pictures):
            # A category's candidates may have no picture (the matrix is then 1 wide): similarity 0.
            if category in index and len(profile) == items.image.shape[1]:
                image[i, index[category]] = items.image[index[category]] @ _unit_rows(
                    np.asarray(profile, dtype=np.float32)[None, :])[0]
    price = batch["price_profile"].fillna(0.0).to_numpy(dtype=np.float32)
    return {
        "category_affinity": affinity,
        "text_similarity": stacked("text_profile", items.text.shape[1]) @ items.text.T,
        "image_similarity": image,
        "price_closeness": -np.abs(price[:, None] - items.log_price_ratio[None, :]),
        "category_popularity": np.broadcast_to(items.popularity, (len(batch), len(items.categories))),
    }


def training_pairs(profiles: DataFrame, positives: DataFrame, history: DataFrame, items: ItemMatrix,
                   negatives: int, seed: int) -> DataFrame:
    """Profiles x each user's positive items (user_key, product_id) -> user_key, product_id, label
    and FEATURES: every positive and `negatives` items drawn at random (per user, from the seed)
    among the items that are neither positive nor in the user's history (user_key, product_id:
    what built the profile; serving never offers those either). Half the draws come from the
    positives' own categories: those teach what tells items of one category apart (the picture),
    which draws from the whole catalogue, mostly other categories, hardly do."""
    wanted = (positives.groupBy("user_key").agg(F.collect_set("product_id").alias("positives"))
              .join(history.groupBy("user_key").agg(F.collect_set("product_id").alias("history")), "user_key", "left"))
    position = {int(p): j for j, p in enumerate(items.product_ids)}
    n_items = len(items.product_ids)
    categories = np.array(items.categories, dtype=object)

    def pairs(batches):
        for batch in batches:
            for part in _slices(batch, n_items):
                feats = pair_features(part, items)
                out = []
                for i, (user, wanted_ids, seen) in enumerate(zip(part["user_key"], part["positives"], part["history"])):
                    pos = sorted({position[int(p)] for p in wanted_ids if int(p) in position})
                    if not pos:
                        continue
                    skip = pos + [position[int(p)] for p in (seen if seen is not None else []) if int(p) in position]
                    pool = np.setdiff1d(np.arange(n_items), skip)
                    rng = np.random.default_rng([seed, zlib.crc32(str(user).encode())])
                    near = pool[np.isin(categories[pool], categories[pos])]
                    neg = rng.choice(near, size=min(negatives // 2, len(near)), replace=False) if len(near) else []
                    rest = np.setdiff1d(pool, neg)
                    neg = np.concatenate([neg, rng.choice(rest, size=min(negatives - len(neg), len(rest)),
                                                          replace=False) if len(rest) else []]).astype(int)
                    for j, label in [(j, 1.0) for j in pos] + [(int(j), 0.0) for j in neg]:
                        out.append((user, int(items.product_ids[j]), label,
                                    *[float(feats[f][i, j]) for f in FEATURES]))
                yield pd.DataFrame(out, columns=["user_key", "product_id", "label", *FEATURES])

    schema = (f"user_key {_user_key_type(profiles)}, product_id long, label double, "
              + ", ".join(f"{f} double" for f in FEATURES))
    return profiles.join(wanted, "user_key").mapInPandas(pairs, schema)


def ranked(profiles: DataFrame, items: ItemMatrix, weights: dict[str, dict[str, float]], k: int) -> DataFrame:
    """Every profile's top k candidate items under each model of MODELS -> user_key, model,
    product_id, rank (1 = best), score. weights: ranker -> feature -> coefficient. Equal scores:
    the lower product id first (items are in product id order; the sort is stable)."""

    def scores_of(feats):
        out = {}
        for model, feature in MODELS.items():
            if feature is not None:
                out[model] = feats[feature]
            else:
                out[model] = sum(w * feats[f] for f, w in weights[model].items())
        return out

    def top(batches):
        for batch in batches:
            for part in _slices(batch, len(items.product_ids)):
                users, models, products, ranks, values = [], [], [], [], []
                for model, scores in scores_of(pair_features(part, items)).items():
                    scores = np.asarray(scores, dtype=np.float32)
                    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
                    for i, user in enumerate(part["user_key"]):
                        for r, j in enumerate(best[i]):
                            users.append(user)
                            models.append(model)
                            products.append(int(items.product_ids[j]))
                            ranks.append(r + 1)
                            values.append(float(scores[i, j]))
                yield pd.DataFrame({"user_key": users, "model": models, "product_id": products, "rank": ranks,
                                    "score": values})

    return profiles.mapInPandas(top, f"user_key {_user_key_type(profiles)}, model string, product_id long, "
                                     "rank int, score double")


def _user_key_type(profiles: DataFrame) -> str:
    """The user key's Spark type (silver's pseudonyms are bigint), for the pandas functions' output."""
    return profiles.schema["user_key"].dataType.simpleString()


def visually_similar(content: DataFrame, k: int, max_items: int) -> DataFrame:
    """Products with a picture -> product_id, rank, similar_product_id, similarity: the k most
    similar other pictures by cosine (exact: the imaged products are broadcast, bounded by max_items)."""
    imaged = content.where(F.col("image_embedding").isNotNull()).select("product_id", "image_embedding")
    n = imaged.count()
    if n > max_items:
        raise ConfigError(f"{n:,} products with a picture exceed cold_start.max_items ({max_items:,}): their "
                          "embeddings are broadcast to every worker")
    rows = imaged.orderBy("product_id").collect()  # bounded by max_items (checked above)
    ids = np.array([r["product_id"] for r in rows], dtype=np.int64)
    matrix = _unit_rows(np.array([r["image_embedding"] for r in rows], dtype=np.float32)) if rows else None

    def nearest(batches):
        for batch in batches:
            for part in _slices(batch, len(ids)):
                own = _unit_rows(np.array(part["image_embedding"].tolist(), dtype=np.float32))
                sims = own @ matrix.T
                sims[np.equal.outer(part["product_id"].to_numpy(), ids)] = -np.inf
                best = np.argsort(-sims, axis=1, kind="stable")[:, :k]
                out = [(int(p), r + 1, int(ids[j]), float(sims[i, j])) for i, p in enumerate(part["product_id"])
                       for r, j in enumerate(best[i]) if np.isfinite(sims[i, j])]
                yield pd.DataFrame(out, columns=["product_id", "rank", "similar_product_id", "similarity"])

    return imaged.mapInPandas(nearest, "product_id long, rank int, similar_product_id long, similarity double")


def same_class_metrics(similar: DataFrame, content: DataFrame, k: int) -> dict[str, float]:
    """Of each product's k most similar, the share whose picture has the same label (precision@k),
    and the same hits over min(k, other products of that label) (recall@k); averaged over products."""
    labels = content.where(F.col("image_label").isNotNull()).select("product_id", "image_label")
    class_size = labels.groupBy("image_label").agg((F.count(F.lit(1)) - 1).alias("others"))
    hits = (similar.where(F.col("rank") <= k).join(labels, "product_id")
            .join(labels.select(F.col("product_id").alias("similar_product_id"),
                                F.col("image_label").alias("similar_label")), "similar_product_id")
            .groupBy("product_id", "image_label")
            .agg(F.sum((F.col("image_label") == F.col("similar_label")).cast("double")).alias("hits")))
    row = (hits.join(class_size, "image_label")
           .agg(F.avg(F.col("hits") / k).alias("precision"),
                F.avg(F.when(F.col("others") > 0, F.col("hits") / F.least(F.col("others"), F.lit(k)))).alias("recall"),
                F.count(F.lit(1)).alias("products")).first())
    return {f"same_class_precision@{k}": float(row["precision"] or 0.0),
            f"same_class_recall@{k}": float(row["recall"] or 0.0), "products": int(row["products"])}

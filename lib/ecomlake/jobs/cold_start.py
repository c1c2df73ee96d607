"""cold_start: recommendations for new products (no interactions before the cutoff) from their
content, and "visually similar" products.

  ./spark-submit.sh cold_start --as-of 2019-11-17 [--horizon-days 14]

Reads silver/events, bronze/products and, when there, bronze/product_image_links
(`ingest --source rees46_product_images`) with gold/item_image_embeddings (`train_deep image_cnn`).
Content per product (lib/ecomlake/models/cold_start.py): the MiniLM embedding of its category words
and brand, the image CNN's embedding of its picture, its price against its category's. A logistic
regression learns how a user's content profile and an item's content predict an interaction from
the cold_start.train_days before the cutoff (items new to each user against sampled ones), then
ranks the products nobody touched before the cutoff for every user with a history. It is
measured on what users did with those new products in the --horizon-days after the cutoff,
next to popularity (the category's), the user's category shares, text alone, image alone and the
ranker without the image. Writes:
  gold/product_content           per product: text, text and image embeddings, log price ratio
  gold/new_item_recommendations  per as_of_date (replaced): each user's top cold_start.k new
                                 products by the content ranker, with score and rank
  gold/visually_similar_items    per product with a picture: the cold_start.similar_k products whose
                                 pictures are nearest (cosine of the CNN embeddings)
  gold/model_runs                task cold_start (one row per model: nDCG@k, recall@k, ... over all new
                                 products, and pictured_* over the new products with a picture alone),
                                 task visual_similarity (same-class precision and recall of the neighbours)
"""
from __future__ import annotations

import logging
import sys

from pyspark import StorageLevel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import evaluation, features, lake, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.dates import add_days
from ecomlake.errors import ConfigError, InputError
from ecomlake.models import cold_start, recommend, sentiment

log = logging.getLogger(__name__)


def fit_rankers(pairs, max_iter: int) -> dict[str, dict[str, float]]:
    """One logistic regression per ranker of cold_start.RANKERS -> feature -> coefficient."""
    weights = {}
    for name, columns in cold_start.RANKERS.items():
        assembled = VectorAssembler(inputCols=list(columns), outputCol="features").transform(pairs)
        model = LogisticRegression(featuresCol="features", labelCol="label", maxIter=max_iter).fit(assembled)
        weights[name] = dict(zip(columns, (float(w) for w in model.coefficients)))
    return weights


def run(spark: SparkSession, config: dict, as_of: str, horizon_days: int | None = None) -> dict:
    root, settings = config["lake_root"], config["cold_start"]
    as_of = parse_as_of(as_of)
    horizon = horizon_days or settings["horizon_days"]
    if horizon < 1:
        raise ConfigError(f"--horizon-days must be at least 1, got {horizon}")
    k, seed = settings["k"], config["train"]["seed"]
    interaction = config["features"]
    weights_by_event, half_life = interaction["interaction_weights"], interaction["interaction_half_life_days"]
    # Pictures need both the links and the image CNN's embeddings; without the links, none.
    with_images = lake.table_exists(spark, tables.BRONZE_PRODUCT_IMAGE_LINKS.path(root))
    read = [tables.SILVER_EVENTS, tables.BRONZE_PRODUCTS]
    if with_images:
        if not lake.table_exists(spark, tables.GOLD_ITEM_IMAGE_EMBEDDINGS.path(root)):
            raise InputError(f"{tables.BRONZE_PRODUCT_IMAGE_LINKS.id} links products to pictures, but "
                             f"{tables.GOLD_ITEM_IMAGE_EMBEDDINGS.id} does not exist: run `ingest --source fashion_mnist` "
                             "and `train_deep image_cnn` first")
        read += [tables.BRONZE_PRODUCT_IMAGE_LINKS, tables.GOLD_ITEM_IMAGE_EMBEDDINGS]
    else:
        log.warning(f"cold_start: no {tables.BRONZE_PRODUCT_IMAGE_LINKS.id} (`ingest --source rees46_product_images`):"
                    " products have no pictures; the image features are 0")
    versions = runs.input_versions(spark, root, read)
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    if not features.horizon_covered(events, as_of, horizon):
        raise InputError(f"silver/events ends before {as_of} + {horizon} days: the new products cannot be measured "
                         "on a whole horizon (pass an earlier --as-of or a shorter --horizon-days)")
    products = lake.read_table(spark, root, tables.BRONZE_PRODUCTS)
    links = images = None
    if with_images:
        links = lake.read_table(spark, root, tables.BRONZE_PRODUCT_IMAGE_LINKS)
        images = (lake.read_table(spark, root, tables.GOLD_ITEM_IMAGE_EMBEDDINGS)
                  .where(F.col("model") == settings["image_model"]))
    texts = sentiment.embed(products.select(cold_start.product_text(F.col("category_code"), F.col("brand"))
                                            .alias("text")).distinct(), "text")
    content = cold_start.product_content(products, texts, links, images).persist(StorageLevel.MEMORY_AND_DISK)
    pictured_products = content.where(F.col("image_embedding").isNotNull()).count() if with_images else 0
    if with_images and not pictured_products:
        log.warning(f"cold_start: no linked picture has a {settings['image_model']} embedding in "
                    f"{tables.GOLD_ITEM_IMAGE_EMBEDDINGS.id} (cold_start.image_model): the image features are 0")
        with_images = False

    # The ranker learns before the cutoff: profiles up to train_cut, the items each user met for
    # the first time in [train_cut, as_of) against items drawn from the catalogue of that time.
    train_cut = add_days(as_of, -settings["train_days"])
    before_train = features.interactions(events, train_cut, weights_by_event, half_life)
    before_cut = features.interactions(events, as_of, weights_by_event, half_life).persist(StorageLevel.MEMORY_AND_DISK)
    positives = (recommend.truth_items(events, train_cut, settings["train_days"])
                 .join(before_train.select("user_key", "product_id"), ["user_key", "product_id"], "left_anti"))
    known = content.join(before_cut.select("product_id").distinct(), "product_id")
    train_items = cold_start.ItemMatrix.collect(known, cold_start.category_popularity(before_train, content),
                                                settings["max_items"])
    pairs = cold_start.training_pairs(cold_start.user_profiles(before_train, content), positives,
                                      before_train.select("user_key", "product_id"), train_items,
                                      settings["negatives"], seed).persist(StorageLevel.MEMORY_AND_DISK)
    counts = pairs.agg(F.count(F.lit(1)).alias("pairs"), F.sum("label").alias("positives")).first()
    if not counts["positives"] or counts["positives"] == counts["pairs"]:
        raise InputError(f"silver/events: no user met a new product in the {settings['train_days']} days before "
                         f"{as_of} (or every sampled pair is one): nothing to train the content ranker on")
    weights = fit_rankers(pairs, settings["max_iter"])
    pairs.unpersist()

    # New products: in the catalogue, untouched before the cutoff.
    new_content = content.join(events.where(F.col("event_time") < features.cutoff(as_of))
                               .select("product_id").distinct(), "product_id", "left_anti")
    popularity = cold_start.category_popularity(before_cut, content)
    new_items = cold_start.ItemMatrix.collect(new_content, popularity, settings["max_items"])
    if len(new_items.product_ids) == 0:
        raise InputError(f"bronze/products holds no product without interactions before {as_of}: no new product "
                         "to recommend")
    profiles = cold_start.user_profiles(before_cut, content).persist(StorageLevel.MEMORY_AND_DISK)
    recs = cold_start.ranked(profiles, new_items, weights, k).persist(StorageLevel.MEMORY_AND_DISK)
    new_ids = new_content.select("product_id")
    truth = recommend.truth_items(events, as_of, horizon).join(new_ids, "product_id")
    metrics = evaluation.ranking_metrics_per(recs, truth, k, len(new_items.product_ids), "model",
                                             user="user_key", item="product_id")
    metrics = {model: metrics.get(model, evaluation.empty_ranking_metrics(k))
               for model in cold_start.MODELS}
    # Where pictures exist (apparel): the same models ranking only the new products with a picture,
    # measured on what users did with those; prefixed `pictured_`.
    pictured = new_content.where(F.col("image_embedding").isNotNull())
    if with_images and pictured.limit(1).count():
        pictured_items = cold_start.ItemMatrix.collect(pictured, popularity, settings["max_items"])
        pictured_truth = truth.join(pictured.select("product_id"), "product_id")
        per_model = evaluation.ranking_metrics_per(cold_start.ranked(profiles, pictured_items, weights, k),
                                                   pictured_truth, k, len(pictured_items.product_ids), "model",
                                                   user="user_key", item="product_id")
        for model, m in per_model.items():
            metrics[model] |= {f"pictured_{name}": value for name, value in m.items()}

    params = {"as_of": as_of, "horizon_days": horizon, "train_days": settings["train_days"],
              "negatives": settings["negatives"], "max_iter": settings["max_iter"], "seed": seed, "k": k,
              "image_model": settings["image_model"], "with_images": with_images,
              "interaction_weights": weights_by_event, "interaction_half_life_days": half_life,
              "text_embedding": "all-MiniLM-L6-v2"}
    run_id = runs.make_run_id("cold_start", "content", as_of, params)
    details = {"new_items": len(new_items.product_ids), "train_items": len(train_items.product_ids),
               "train_pairs": int(counts["pairs"]), "train_positives": int(counts["positives"]),
               "weights": weights}
    records = [runs.model_run("cold_start", model, as_of, params, versions, m, details,
                              baseline=model != "content") for model, m in metrics.items()]
    for model, m in metrics.items():
        log.info(f"cold_start {model:<22} nDCG@{k} {m[f'ndcg@{k}']:.4f}  recall@{k} {m[f'recall@{k}']:.4f}  "
                 f"({int(m['users_evaluated']):,} users)"
                 + (f"; pictured products only: nDCG@{k} {m[f'pictured_ndcg@{k}']:.4f} "
                    f"({int(m['pictured_users_evaluated']):,} users)" if f"pictured_ndcg@{k}" in m else ""))

    lake.overwrite_table(content.withColumn("run_id", F.lit(run_id)), root, tables.GOLD_PRODUCT_CONTENT)
    best = (recs.where(F.col("model") == "content").drop("model")
            .withColumn("as_of_date", F.to_date(F.lit(as_of))).withColumn("run_id", F.lit(run_id)))
    lake.replace_partition(best, root, tables.GOLD_NEW_ITEM_RECOMMENDATIONS, "as_of_date", as_of)
    similar = cold_start.visually_similar(content, settings["similar_k"], settings["max_items"])
    visual_params = {"image_model": settings["image_model"], "k": settings["similar_k"]}
    visual_model = f"{settings['image_model']}_cosine"
    visual_run_id = runs.make_run_id("visual_similarity", visual_model, None, visual_params)
    # Without pictures the table is emptied, not left with an earlier run's neighbours.
    lake.overwrite_table(similar.withColumn("run_id", F.lit(visual_run_id)), root, tables.GOLD_VISUALLY_SIMILAR_ITEMS)
    if with_images:
        visual = cold_start.same_class_metrics(
            lake.read_table(spark, root, tables.GOLD_VISUALLY_SIMILAR_ITEMS), content, settings["similar_k"])
        records.append(runs.model_run("visual_similarity", visual_model, None, visual_params, versions, visual,
                                      run_id=visual_run_id))
        log.info(f"cold_start visually similar: {visual}")
    runs.record(spark, root, records)
    recs.unpersist()
    profiles.unpersist()
    before_cut.unpersist()
    content.unpersist()
    return {"run_id": run_id, "metrics": metrics, "details": details,
            "visual": records[-1]["metrics"] if with_images else None}


def main(argv=None) -> int:
    parser = job_parser("cold_start", __doc__)
    parser.add_argument("--as-of", required=True, help="cutoff date: products untouched before it are new")
    parser.add_argument("--horizon-days", type=int, help="days after the cutoff to evaluate on (default: config)")
    return run_job("cold_start", parser, lambda spark, config, a: run(spark, config, a.as_of, a.horizon_days), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

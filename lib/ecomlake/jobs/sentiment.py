"""sentiment: review sentiment on the clothing reviews: TF-IDF LR and MiniLM-embedding LR.

  ./spark-submit.sh sentiment [--no-embeddings]

Reads bronze/clothing_reviews (`ingest --source clothing_reviews`). One fixed split: a hash of
review_id puts sentiment.test_fraction of the reviews in the test set. Trains, on the training
reviews, and measures on the test reviews:
  tfidf_lr              words + bigrams, TF-IDF, logistic regression: recommended flag (AUC, PR-AUC,
                        accuracy, macro-F1) and 5-star rating (multinomial: accuracy, macro-F1)
  minilm_lr             all-MiniLM-L6-v2 sentence embeddings (384 numbers per review, computed in a
                        pandas UDF) -> logistic regression, on every training review (or the first
                        sentiment.embedding_train_rows in hash order, when that is above 0;
                        ~40 reviews/s per core in TensorFlow: benchmarks/minilm.py)
  stacked_lr            TF-IDF terms and the MiniLM embedding side by side -> one logistic regression
                        (the same training reviews as minilm_lr)
  tfidf_lr_same_rows    TF-IDF LR on minilm_lr's rows, when they are a subset: the fair comparison
  majority              always the most frequent class: the trivial baseline
The deep text model is `train_deep review_text` (same split). Writes, replacing each model's rows:
  silver/review_embeddings  the MiniLM embeddings, computed once per review text (`intents` reuses them)
  gold/review_sentiment   per review and model: split, actual and predicted recommended flag and
                          probability, predicted rating (tfidf_lr), department and class
  gold/model_runs         tasks review_recommended and review_rating, with the terms that push
                          hardest for and against recommending and the most confident mistakes
"""
from __future__ import annotations

import logging
import sys

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import embedding_cache, evaluation, lake, runs, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.errors import InputError
from ecomlake.models import sentiment

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["review_id", "item_id", "department", "class_name", "split", "recommended", "rating",
                  "probability_recommended", "predicted_recommended", "predicted_rating", "model", "run_id"]


def confident_mistakes(test_rows: DataFrame, n: int = 3) -> dict:
    """The n most confident wrong predictions each way (bounded: n rows), text cut to 240 chars."""
    def pick(condition, order):
        return [{"review_id": r.review_id, "probability_recommended": round(r.probability_recommended, 3),
                 "rating": r.rating, "text": r.text[:240]}
                for r in test_rows.where(condition).orderBy(order).limit(n).collect()]

    return {"recommended_but_scored_low": pick(F.col("recommended") == 1, F.asc("probability_recommended")),
            "not_recommended_but_scored_high": pick(F.col("recommended") == 0, F.desc("probability_recommended"))}


def run(spark: SparkSession, config: dict, embeddings: bool = True) -> dict:
    root = config["lake_root"]
    settings, seed = config["sentiment"], config["train"]["seed"]
    versions = runs.input_versions(spark, root, [tables.BRONZE_CLOTHING_REVIEWS])
    reviews = sentiment.prepare(lake.read_table(spark, root, tables.BRONZE_CLOTHING_REVIEWS), seed,
                                settings["test_fraction"]).persist(StorageLevel.MEMORY_AND_DISK)
    train, test = reviews.where(~F.col("is_test")), reviews.where(F.col("is_test"))
    n_train, n_test = train.count(), test.count()
    if n_train < 50 or n_test < 20 or train.select("recommended").distinct().count() < 2:
        raise InputError(f"bronze/clothing_reviews has too few reviews to learn from ({n_train} train, {n_test} test)")
    params = {"test_fraction": settings["test_fraction"], "vocabulary_size": settings["vocabulary_size"], "seed": seed}
    records, written = [], {}

    def record(task, model, metrics, details, is_baseline=False, extra_params=None):
        records.append(runs.model_run(task, model, None, {**params, **(extra_params or {})}, versions, metrics,
                                      details, baseline=is_baseline))
        run_id = records[-1]["run_id"]
        log.info(f"sentiment {task:<19} {model:<19} " + ", ".join(
            f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k in
            ("auc", "pr_auc", "accuracy", "macro_f1", "majority_accuracy", "majority_macro_f1")))
        return run_id

    # TF-IDF logistic regression: recommended flag, and the rating.
    flag_model = sentiment.tfidf_pipeline("recommended", settings["vocabulary_size"]).fit(train)
    rating_model = sentiment.tfidf_pipeline("rating_index", settings["vocabulary_size"], multiclass=True).fit(train)
    scored = sentiment.recommended_scores(flag_model, reviews, reviews.columns)
    rated = rating_model.transform(reviews).select("review_id", sentiment.expected_rating(F.col("prediction"))
                                                   .alias("predicted_rating"))
    scored = scored.join(rated, "review_id").persist(StorageLevel.MEMORY_AND_DISK)
    test_scored = scored.where(F.col("is_test"))
    flag_metrics = sentiment.recommended_metrics(test_scored)
    rating_metrics = evaluation.classification_metrics(test_scored.withColumn("rating_d", F.col("rating").cast("double"))
                                                       .withColumn("pred_d", F.col("predicted_rating").cast("double")),
                                                       "rating_d", "pred_d")
    terms = sentiment.top_terms(flag_model)
    run_id = record("review_recommended", "tfidf_lr", flag_metrics,
                    {"top_terms": terms, "confident_mistakes": confident_mistakes(test_scored),
                     "vocabulary": len(flag_model.stages[4].vocabulary), "train_rows": n_train, "test_rows": n_test})
    record("review_rating", "tfidf_lr", rating_metrics, {"train_rows": n_train, "test_rows": n_test})
    written["tfidf_lr"] = sentiment.output_rows(scored, "tfidf_lr", run_id)
    majority = {k: flag_metrics[k] for k in ("majority_accuracy", "majority_macro_f1")}
    record("review_recommended", "majority", {"auc": 0.5, "accuracy": majority["majority_accuracy"],
                                              "macro_f1": majority["majority_macro_f1"]}, {}, is_baseline=True)
    record("review_rating", "majority", {"accuracy": rating_metrics["majority_accuracy"],
                                         "macro_f1": rating_metrics["majority_macro_f1"]}, {}, is_baseline=True)

    if embeddings:
        # MiniLM on every training review, or a fixed subset (the hash order), and every test review.
        limit = settings["embedding_train_rows"]
        subset = train.orderBy(F.xxhash64(F.lit(seed), "review_id")).limit(limit) if limit > 0 else train
        embedded = sentiment.embedding_features(embedding_cache.with_embeddings(
            spark, root, subset.unionByName(test), key="review_id", text_column="text")
        ).persist(StorageLevel.MEMORY_AND_DISK)
        embedded_train = embedded.where(~F.col("is_test"))
        n_subset = embedded_train.count()
        classifier = sentiment.embedding_classifier("recommended").fit(embedded_train)
        minilm = sentiment.recommended_scores(classifier, embedded.where(F.col("is_test")), reviews.columns)
        extra = {"train_rows": limit or n_subset}
        run_id = record("review_recommended", "minilm_lr", sentiment.recommended_metrics(minilm),
                        {"model": "all-MiniLM-L6-v2", "dimension": sentiment.EMBEDDING_DIMENSION,
                         "train_rows": n_subset, "confident_mistakes": confident_mistakes(minilm)},
                        extra_params=extra)
        written["minilm_lr"] = sentiment.output_rows(minilm, "minilm_lr", run_id)
        stacked_model = sentiment.stacked_pipeline("recommended", settings["vocabulary_size"]).fit(embedded_train)
        stacked = sentiment.recommended_scores(stacked_model, embedded.where(F.col("is_test")), reviews.columns)
        run_id = record("review_recommended", "stacked_lr", sentiment.recommended_metrics(stacked),
                        {"features": "binary TF-IDF (L2-normalised) + MiniLM embedding x "
                                     f"{sentiment.STACK_EMBEDDING_WEIGHT} (unit variance)",
                         "train_rows": n_subset, "confident_mistakes": confident_mistakes(stacked)},
                        extra_params={**extra, "reg_param": sentiment.STACK_REG_PARAM,
                                      "embedding_weight": sentiment.STACK_EMBEDDING_WEIGHT})
        written["stacked_lr"] = sentiment.output_rows(stacked, "stacked_lr", run_id)
        if n_subset < n_train:
            same_rows = sentiment.tfidf_pipeline("recommended", settings["vocabulary_size"]).fit(
                embedded_train.select(*reviews.columns))
            small = sentiment.recommended_scores(same_rows, test, reviews.columns)
            record("review_recommended", "tfidf_lr_same_rows", sentiment.recommended_metrics(small),
                   {"train_rows": n_subset}, is_baseline=True, extra_params=extra)

    for model, rows in written.items():
        lake.replace_partition(rows, root, tables.GOLD_REVIEW_SENTIMENT, "model", model)
    if embeddings:
        embedded.unpersist()  # after the writes: the embedding models' rows are computed from it
    runs.record(spark, root, records)
    log.info("  terms for recommending:     " + ", ".join(t for t, _ in terms["for"][:10]))
    log.info("  terms against recommending: " + ", ".join(t for t, _ in terms["against"][:10]))
    by_department = sentiment.department_summary(test_scored).collect()  # one row per department
    for r in by_department:
        log.info(f"  {r.department:<10} {r.reviews:>6,} test reviews, {r.not_recommended_share:.1%} not recommended")
    scored.unpersist()
    reviews.unpersist()
    return {"records": records, "train_rows": n_train, "test_rows": n_test}


def main(argv=None) -> int:
    parser = job_parser("sentiment", __doc__)
    parser.add_argument("--no-embeddings", action="store_true", help="skip the MiniLM embedding model")
    return run_job("sentiment", parser, lambda spark, config, a: run(spark, config, not a.no_embeddings), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

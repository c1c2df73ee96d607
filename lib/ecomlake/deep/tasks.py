"""The deep models as the runner (ecomlake.deep.runner) trains them: what each trains on, and how
each is evaluated against its baselines on held-out rows.

- wide_deep (task propensity): gold/user_features + gold/user_labels, the same features, label and
  20 % user hold-out as `train propensity`; numeric columns standardised with training-set
  statistics, top category through a vocabulary (encode.build_spec). Metrics next to the oracle
  AUC of the generator's planted odds.
- session_gru (task next_item): sessions before the cutoff over the most viewed products,
  evaluated on sessions in the label horizon after it against most-popular, item transitions and
  the user's ALS top-k (the latest `train recommend` run).
- lstm_forecaster (task forecast): windows of every product and category series of
  gold/daily_sales, evaluated on the same held-out days as `train forecast` next to seasonal
  naive on the same rows.
- review_text (task review_recommended): the review's words, the same hash split as the
  `sentiment` job; every review is scored into gold/review_sentiment (model review_text).
- image_cnn (task product_image_class): bronze/product_images (Fashion-MNIST), trained on the
  official training split, evaluated on its test split next to a logistic regression on the
  pixels; every image's embedding goes to gold/item_image_embeddings.
"""
from __future__ import annotations

import logging
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import config as cfg
from ecomlake import datasets, evaluation, features, lake, runs, tables
from ecomlake import generate as gen
from ecomlake.dates import add_days
from ecomlake.deep import encode, forecast_windows, scoring, sequences, text
from ecomlake.deep.runner import DeepTask, Prepared, write_shards
from ecomlake.errors import ConfigError, EcomlakeError, InputError
from ecomlake.models import classify, images, recommend, sentiment

log = logging.getLogger(__name__)

REVIEW_MAX_LEN = 96  # tokens per review kept by review_text (the median review has ~60)
FORECAST_HISTORY_DAYS = 28
MODELS = ("wide_deep", "session_gru", "session_attention", "lstm_forecaster", "review_text", "image_cnn",
          "movielens_attention")


class WideDeepPropensity(DeepTask):
    model, task = "wide_deep", "propensity"
    inputs = (tables.GOLD_USER_FEATURES, tables.GOLD_USER_LABELS)

    def params(self, config, as_of):
        return {"test_fraction": 0.2}

    def prepare(self, spark, config, as_of, params, model_dir, num_files, cache):
        hint = f"features --as-of {as_of} (with events covering the label horizon)"
        root, seed = config["lake_root"], params["seed"]
        uf = lake.read_partition(spark, root, tables.GOLD_USER_FEATURES, "as_of_date", as_of, hint)
        labels = lake.read_partition(spark, root, tables.GOLD_USER_LABELS, "as_of_date", as_of, hint)
        categories = classify.top_categories(uf)
        data = cache.persist(classify.prepare(uf, categories)
                             .join(uf.select("user_key", encode.CATEGORY_COLUMN), "user_key")
                             .join(labels.select("user_key", F.col("purchased_next").cast("float").alias("label")),
                                   "user_key")
                             .withColumn("_test", classify.holdout(F.col("user_key"), seed))
                             .withColumn("row_id", F.xxhash64(F.lit(seed), "user_key")))
        train = data.where(~F.col("_test"))
        spec = encode.build_spec(train, classify.feature_columns(categories), classify.top_categories(uf, n=50))
        spec["categories"] = categories
        keep = ("row_id", "user_key", "label")
        train_rows = write_shards(encode.encode(train, spec, keep), f"{model_dir}/data/train", num_files)
        encode.encode(data.where(F.col("_test")), spec, keep).write.mode("overwrite").parquet(f"{model_dir}/data/test")
        data.unpersist()
        test = cache.persist(spark.read.parquet(f"{model_dir}/data/test"))
        horizon = labels.select("horizon_days").head()[0]
        return Prepared(train_rows, spec, {"test_rows": test.count()}, {"test": test, "horizon_days": horizon})

    def evaluate(self, spark, config, prepared, trained, cache):
        scored = cache.persist(scoring.predict(prepared.frames["test"], trained.spec, keep=("user_key", "label")))
        metrics = evaluation.binary_metrics(scored, "label", "probability")
        auc = gen.oracle_auc(spark, config["generate"]["output"], cfg.pseudonymisation_key(config), scored,
                             trained.as_of, prepared.frames["horizon_days"])
        if auc is not None:
            metrics["oracle_auc"] = auc
        return [trained.record(metrics, calibration=evaluation.calibration_table(scored, "label", "probability"))]


class SessionGruNextItem(DeepTask):
    model, task = "session_gru", "next_item"
    inputs = (tables.SILVER_EVENTS,)
    rows_name = "training session examples"
    rows_key = "train_examples"
    history_len = 0  # items of the user's earlier sessions the model reads (session_attention)

    def __init__(self, max_items: int = 5000, max_len: int = 10):
        self.max_items, self.max_len = max_items, max_len

    def params(self, config, as_of):
        params = {"max_items": self.max_items, "max_len": self.max_len,
                  "horizon_days": config["features"]["label_horizon_days"]}
        return {**params, "history_len": self.history_len} if self.history_len else params

    def _sequences(self, events, vocabulary, gap):
        # With a history, one-item sessions count too: they give no example but are history.
        return sequences.session_sequences(events, vocabulary, gap, min_items=1 if self.history_len else 2)

    def prepare(self, spark, config, as_of, params, model_dir, num_files, cache):
        events = lake.read_table(spark, config["lake_root"], tables.SILVER_EVENTS)
        gap = config["sessionize"]["gap_minutes"]
        history = features.events_before(events, as_of)
        vocabulary = cache.persist(sequences.item_vocabulary(history, self.max_items))
        before = self._sequences(history, vocabulary, gap)
        after = self._sequences(features.events_in_horizon(events, as_of, params["horizon_days"]), vocabulary, gap)
        frames = {}
        if self.history_len:
            both = cache.persist(sequences.with_user_history(
                before.withColumn("_after", F.lit(False)).unionByName(after.withColumn("_after", F.lit(True))),
                self.history_len))
            before, after = both.where(~F.col("_after")), both.where(F.col("_after"))
            # The same test sessions with the history frozen at the cutoff: what ALS knows of the user.
            at_cutoff = sequences.history_at_end(before, self.history_len)
            frozen = after.drop("history").join(at_cutoff, "user_key", "left").withColumn(
                "history", F.coalesce("history", F.array().cast("array<int>")))
            frames["test_history_at_cutoff"] = sequences.next_item_examples(frozen, self.max_len, self.history_len)
        train = sequences.next_item_examples(before, self.max_len, self.history_len)
        test = sequences.next_item_examples(after, self.max_len, self.history_len)
        train_rows = write_shards(train.withColumn("row_id", F.xxhash64("user_key", "session_start", "position")),
                                  f"{model_dir}/data/train", num_files)
        test.write.mode("overwrite").parquet(f"{model_dir}/data/test")
        test = cache.persist(spark.read.parquet(f"{model_dir}/data/test"))
        if test.limit(1).count() == 0:
            raise InputError(f"no session examples in the {params['horizon_days']} days after {as_of} to evaluate on")
        vocabulary.write.mode("overwrite").parquet(f"{model_dir}/vocabulary")
        vocabulary_size = vocabulary.count()
        return Prepared(train_rows, {"vocabulary_size": vocabulary_size, "top_k": sequences.NEXT_ITEM_K},
                        {"vocabulary_size": vocabulary_size},
                        {"vocabulary": vocabulary, "test": test, "train": spark.read.parquet(f"{model_dir}/data/train"),
                         **frames})

    def evaluate(self, spark, config, prepared, trained, cache):
        k, last_item = sequences.NEXT_ITEM_K, sequences.item_name(self.max_len - 1)
        test, train = prepared.frames["test"], prepared.frames["train"]
        candidates = {
            "most_popular": test.withColumn("predicted", F.array(*[F.lit(i) for i in sequences.popular_items(train, k)])),
            "item_transitions": test.join(sequences.transition_neighbours(train, self.max_len, k)
                                          .withColumnRenamed("neighbours", "predicted"),
                                          F.col(last_item) == F.col("last_item"), "left"),
        }
        als = _als_items(spark, config["lake_root"], test, prepared.frames["vocabulary"], k)
        if als is not None:
            candidates["als"] = als
        keep = ("user_key", "target", last_item)
        metrics = evaluation.next_item_metrics(scoring.predict(test, trained.spec, keep=keep), k)
        if "test_history_at_cutoff" in prepared.frames:
            frozen = evaluation.next_item_metrics(
                scoring.predict(prepared.frames["test_history_at_cutoff"], trained.spec, keep=keep), k)
            metrics.update({f"{name}_history_at_cutoff": value for name, value in frozen.items() if name != "examples"})
        return [trained.record(metrics),
                *[trained.baseline(name, evaluation.next_item_metrics(predicted, k))
                  for name, predicted in candidates.items()]]


class SessionAttentionNextItem(SessionGruNextItem):
    """The session and the user's last history_len items from earlier sessions, read by
    self-attention (ecomlake.deep.session_attention); the same test sessions and baselines as
    session_gru, and the same metrics once more with the history frozen at the cutoff."""
    model = "session_attention"
    history_len = 50


def _als_items(spark: SparkSession, root: str, test: DataFrame, vocabulary: DataFrame, k: int) -> DataFrame | None:
    """Each test user's ALS top-k (latest `train recommend` run) as vocabulary items; None without a run."""
    from pyspark.ml.recommendation import ALSModel

    try:
        run = runs.find(spark, root, "recommend")
    except EcomlakeError:
        log.info("train_deep next_item: no `train recommend` run: the ALS comparison is skipped")
        return None
    path = run["model_path"]
    users, items = spark.read.parquet(f"{path}/user_index"), spark.read.parquet(f"{path}/item_index")
    recs = recommend.als_recommend(ALSModel.load(f"{path}/als"), users, items, test.select("user_key"), k)
    per_user = (recs.join(vocabulary, "product_id")
                .groupBy("user_key")
                .agg(F.transform(F.array_sort(F.collect_list(F.struct("rank", "item"))), lambda s: s["item"])
                     .alias("predicted")))
    return test.join(per_user, "user_key", "left")


class MovieLensAttention(DeepTask):
    """MovieLens-100k as a next-item task, on the split of `train movielens_sequential`: each
    user's ratings in time order (equal times by movie id), the last held out; the model trains on
    every position of the rest (its last max_len ratings before each) and ranks every movie the
    user has not rated. HR@10, nDCG@10 and coverage@10, as that job records for its baselines."""
    model, task = "movielens_attention", "next_item_movielens"
    inputs = (tables.BRONZE_MOVIELENS_RATINGS,)
    needs_as_of = False
    rows_name = "training positions"
    rows_key = "train_examples"
    k = 10

    def __init__(self, max_len: int = 50):
        self.max_len = max_len

    def params(self, config, as_of):
        return {"protocol": "leave-last-out by time, all unrated items ranked", "k": self.k, "max_len": self.max_len}

    def prepare(self, spark, config, as_of, params, model_dir, num_files, cache):
        ratings = datasets.movielens_interactions(
            lake.read_table(spark, config["lake_root"], tables.BRONZE_MOVIELENS_RATINGS))
        split = cache.persist(recommend.leave_last_out(ratings, "rated_at"))
        seen = split.where(F.col("_from_end") >= 2)
        vocabulary = cache.persist(recommend.dense_index(seen, "product_id", "item").withColumn("item", F.col("item") + 1))
        in_order = F.array_sort(F.collect_list(F.struct("rated_at", "product_id", "item")))
        user_sequences = cache.persist(
            seen.join(vocabulary, "product_id").groupBy("user_key")
            .agg(F.transform(in_order, lambda s: s["item"]).alias("items"))
            .withColumn("session_start", F.lit(0)))
        train = sequences.next_item_examples(user_sequences, self.max_len)
        train_rows = write_shards(train.withColumn("row_id", F.xxhash64("user_key", "position")),
                                  f"{model_dir}/data/train", num_files)
        held_out = (split.where(F.col("_from_end") == 1).select("user_key", "product_id")
                    .join(vocabulary, "product_id", "left"))
        test = cache.persist(user_sequences.join(held_out, "user_key").select(
            "user_key", *sequences.left_padded(F.col("items"), self.max_len, sequences.item_name),
            F.coalesce("item", F.lit(-1)).alias("target"), F.col("items").alias("exclude")))
        vocabulary_size = vocabulary.count()
        return Prepared(train_rows, {"vocabulary_size": vocabulary_size, "top_k": self.k},
                        {"vocabulary_size": vocabulary_size}, {"test": test, "vocabulary_size": vocabulary_size})

    def evaluate(self, spark, config, prepared, trained, cache):
        scored = cache.persist(scoring.predict(prepared.frames["test"], trained.spec, keep=("user_key", "target")))
        measured = evaluation.next_item_metrics(scored, self.k)
        shown = scored.select(F.explode("predicted")).distinct().count()
        return [trained.record({f"hr@{self.k}": measured[f"recall@{self.k}"], f"ndcg@{self.k}": measured[f"ndcg@{self.k}"],
                                f"coverage@{self.k}": shown / prepared.frames["vocabulary_size"],
                                "users_evaluated": measured["examples"]})]


class LstmForecast(DeepTask):
    model, task = "lstm_forecaster", "forecast"
    inputs = (tables.GOLD_DAILY_SALES,)
    rows_name = "training windows"
    rows_key = "train_windows"

    def __init__(self, history_days: int = FORECAST_HISTORY_DAYS):
        if history_days < 7:
            raise ConfigError(f"--history-days must be at least 7 (seasonal naive needs a week), got {history_days}")
        self.history = history_days

    def params(self, config, as_of):
        horizon = config["train"]["forecast_holdout_days"]
        origin = add_days(as_of, -horizon)
        return {"history": self.history, "horizon": horizon, "origin": origin}

    def too_few_hint(self, params):
        return (f"a window needs {self.history} + {params['horizon']} days before {params['origin']}; "
                f"lower --history-days or --batch-size, or use a later --as-of")

    def prepare(self, spark, config, as_of, params, model_dir, num_files, cache):
        daily = lake.read_partition(spark, config["lake_root"], tables.GOLD_DAILY_SALES, "as_of_date", as_of,
                                    f"features --as-of {as_of}")
        series = cache.persist(forecast_windows.series_arrays(daily, params["origin"]))
        train = forecast_windows.windows(series, params["origin"], self.history, params["horizon"], training=True)
        train_rows = write_shards(train.withColumn("row_id", F.xxhash64("level", "series_key", "origin_date")),
                                  f"{model_dir}/data/train", num_files)
        return Prepared(train_rows, {}, {}, {"series": series})

    def evaluate(self, spark, config, prepared, trained, cache):
        spec = trained.spec
        holdout = forecast_windows.windows(prepared.frames["series"], spec["origin"], spec["history"],
                                           spec["horizon"], training=False)
        keep = ("level", "series_key", "origin_date", "scale", *holdout.columns[5:])
        predicted = cache.persist(forecast_windows.explode_forecasts(scoring.predict(holdout, spec, keep), spec))
        metrics = {"forecast": {}, "seasonal_naive": {}}
        for level in ("category", "product"):
            rows = predicted.where(F.col("level") == level)
            for column in metrics:
                metrics[column].update({f"{level}_{k}": v for k, v in
                                        evaluation.forecast_metrics(rows, "actual", column).items()})
        return [trained.record(metrics["forecast"]),
                trained.baseline("seasonal_naive_windows", metrics["seasonal_naive"])]


class ReviewTextRecommended(DeepTask):
    model, task = "review_text", "review_recommended"
    inputs = (tables.BRONZE_CLOTHING_REVIEWS,)
    needs_as_of = False
    rows_name = "training reviews"

    def __init__(self, max_len: int = REVIEW_MAX_LEN):
        self.max_len = max_len

    def params(self, config, as_of):
        settings = config["sentiment"]
        return {"max_len": self.max_len, "test_fraction": settings["test_fraction"],
                "vocabulary_size": settings["vocabulary_size"]}

    def prepare(self, spark, config, as_of, params, model_dir, num_files, cache):
        raw = lake.read_table(spark, config["lake_root"], tables.BRONZE_CLOTHING_REVIEWS)
        reviews = cache.persist(sentiment.prepare(raw, params["seed"], params["test_fraction"]))
        vocabulary = cache.persist(text.vocabulary(reviews.where(~F.col("is_test")), params["vocabulary_size"]))
        vocabulary.write.mode("overwrite").parquet(f"{model_dir}/vocabulary")
        encoded = text.encode(reviews, vocabulary, self.max_len).withColumn("label", F.col("recommended"))
        train_rows = write_shards(encoded.where(~F.col("is_test")).withColumn("row_id", F.col("review_id"))
                                  .select("row_id", "label", *[text.token_name(i) for i in range(self.max_len)]),
                                  f"{model_dir}/data/train", num_files)
        vocabulary_size = vocabulary.count()
        return Prepared(train_rows, {"vocabulary_size": vocabulary_size}, {"vocabulary_size": vocabulary_size},
                        {"reviews": reviews, "vocabulary": vocabulary, "encoded": encoded})

    def evaluate(self, spark, config, prepared, trained, cache):
        scored = cache.persist(scoring.predict(prepared.frames["encoded"], trained.spec, keep=("review_id",))
                               .withColumnRenamed("probability", "probability_recommended")
                               .join(prepared.frames["reviews"], "review_id"))
        lake.replace_partition(sentiment.output_rows(scored, self.model, trained.run_id), config["lake_root"],
                               tables.GOLD_REVIEW_SENTIMENT, "model", self.model)
        return [trained.record(sentiment.recommended_metrics(scored.where(F.col("is_test"))))]


class ImageCnnProductClass(DeepTask):
    model, task = "image_cnn", "product_image_class"
    inputs = (tables.BRONZE_PRODUCT_IMAGES,)
    needs_as_of = False
    rows_name = "training images"
    rows_key = "train_images"

    def params(self, config, as_of):
        return {"image_side": datasets.IMAGE_SIDE, "classes": len(datasets.FASHION_MNIST_CLASSES)}

    def prepare(self, spark, config, as_of, params, model_dir, num_files, cache):
        product_images = cache.persist(lake.read_table(spark, config["lake_root"], tables.BRONZE_PRODUCT_IMAGES)
                                       .select("image_id", "split", "label", "label_name", "image_png"))
        train = product_images.where(F.col("split") == "train")
        train_rows = write_shards(train.select(F.col("image_id").alias("row_id"), "label", "image_png"),
                                  f"{model_dir}/data/train", num_files)
        test_rows = product_images.where(F.col("split") == "test").count()
        if test_rows == 0:
            raise InputError(f"{tables.BRONZE_PRODUCT_IMAGES.id} holds no image of the test split to evaluate on")
        return Prepared(train_rows, {}, {"test_images": test_rows}, {"images": product_images})

    def evaluate(self, spark, config, prepared, trained, cache):
        product_images = prepared.frames["images"]
        scored = cache.persist(scoring.predict(product_images, trained.spec, embedding="embedding",
                                               keep=("image_id", "split", "label", "label_name")))
        lake.replace_partition(images.embedding_rows(scored, self.model, trained.run_id), config["lake_root"],
                               tables.GOLD_ITEM_IMAGE_EMBEDDINGS, "model", self.model)
        names = dict(enumerate(datasets.FASHION_MNIST_CLASSES))
        test = scored.where(F.col("split") == "test")
        pixels = cache.persist(images.pixel_features(product_images))
        baseline = (images.pixel_logistic_regression()
                    .fit(pixels.where(F.col("split") == "train"))
                    .transform(pixels.where(F.col("split") == "test")))
        seconds = trained.workers[0]["epoch_seconds"]
        speed = {"train_images_per_second": round(trained.spec["train_rows"] / (sum(seconds) / len(seconds)), 1)
                 } if seconds else {}
        return [trained.record(evaluation.classification_metrics(test, "label", "predicted_label"),
                               per_class_accuracy=images.per_class_accuracy(test, names), **speed),
                trained.baseline("logistic_regression_pixels",
                                 evaluation.classification_metrics(baseline, "label", "predicted_label"),
                                 per_class_accuracy=images.per_class_accuracy(baseline, names))]


def deep_task(model: str, history_days: int = FORECAST_HISTORY_DAYS) -> DeepTask:
    """The task that trains `model` (history_days: lstm_forecaster's window length)."""
    if model == "lstm_forecaster":
        return LstmForecast(history_days)
    classes = {"wide_deep": WideDeepPropensity, "session_gru": SessionGruNextItem,
               "session_attention": SessionAttentionNextItem, "movielens_attention": MovieLensAttention,
               "review_text": ReviewTextRecommended, "image_cnn": ImageCnnProductClass}
    if model not in classes:
        raise ConfigError(f"unknown deep model '{model}'; models: {', '.join(MODELS)}")
    return classes[model]()


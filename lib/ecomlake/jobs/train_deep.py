"""train_deep: deep models through Petastorm and Horovod, compared with the Spark ML baselines.

  ./spark-submit.sh train_deep wide_deep --as-of 2019-11-17 [--num-proc 2] [--launcher spark|horovodrun]
                    [--epochs 8] [--batch-size 256] [--learning-rate 0.002] [--resume]

wide_deep: Wide & Deep purchase propensity on gold/user_features + gold/user_labels (the same
features, label and 20 % user hold-out as `train propensity`). Spark encodes the rows (numeric
columns standardised with training-set statistics, top category through a vocabulary; the spec
is saved as spec.json beside the model) and writes Parquet; each Horovod worker reads its own
shard with Petastorm; rank 0 writes checkpoints and the model. The hold-out users are scored back
in Spark (mapInPandas) and the run is recorded in gold/model_runs (task propensity, model
wide_deep) next to the logistic regression, the recency baseline and the oracle AUC.
--launcher spark (default) runs the workers as Spark tasks (horovod.spark.run); horovodrun starts
local processes. --resume continues from the run's last checkpoint (weights and optimizer state)
instead of starting over; with --epochs N above the epochs it holds, it trains on up to N (the
epoch count is not part of a deep run's run_id, so the extended run replaces the run's row).

Every training writes into a new directory, <lake_root>/models/<task>/<run_id>/<attempt>
(checkpoints, data, spec.json, model.h5), and records the run pointing at it once the model is
written: a re-train never writes over the model an existing gold/model_runs row points to.
--resume continues in the newest attempt holding a checkpoint when no row points to it (an
interrupted run), else in a new attempt that starts from a copy of that checkpoint.

session_gru: next item in a session (GRU4Rec-style) over the 5,000 most viewed products, trained
on sessions before --as-of and evaluated on sessions in the label horizon after it: Recall@20 and
MRR@20 against most-popular, item transitions (co-occurrence with the last item) and the user's
ALS top-20 (the latest `train recommend` run). Recorded as task next_item.

lstm_forecaster: a global LSTM over 28-day (--history-days) windows of every product and category series of
gold/daily_sales (scaled by each series' mean), predicting the next train.forecast_holdout_days
days at once; WAPE/RMSE/sMAPE on the same held-out days as `train forecast`, next to seasonal
naive on the same rows. Recorded as task forecast; `score` uses it when it is the newest run.

review_text: P(the reviewer recommends the item) from the review's words (embedding -> masked
mean -> dense) on bronze/clothing_reviews, with the same hash split as the `sentiment` job (no
--as-of needed); the vocabulary (sentiment.vocabulary_size words) is saved beside the model.
Recorded as task review_recommended next to tfidf_lr; every review is scored into
gold/review_sentiment (model review_text).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import config as cfg
from ecomlake import evaluation, features, lake, runs, tables
from ecomlake import generate as gen
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.deep import distributed, encode, forecast_windows, scoring, sequences
from ecomlake.deep.distributed import local_path
from ecomlake.errors import ConfigError, InputError
from ecomlake.models import classify

MODELS = ("wide_deep", "session_gru", "lstm_forecaster", "review_text")
REVIEW_MAX_LEN = 96  # tokens per review kept by review_text (the median review has ~60)
FORECAST_HISTORY_DAYS = 28

log = logging.getLogger(__name__)


def _worker_details(results: list[dict], launcher: str, **extra) -> dict:
    """What every deep run records about its training: workers, launcher, loss history, and
    whether all ranks ended with the same weights (they must: Horovod averages the gradients)."""
    return {"workers": len(results), "launcher": launcher, "history": results[0]["history"], **extra,
            "weights_identical_on_all_ranks": len({r["weights_sha1"] for r in results}) == 1}


def _local_dir(path: str) -> str:
    if "://" in path and not path.startswith("file://"):
        raise ConfigError(f"train_deep keeps checkpoints on a shared local/NFS/DBFS-fuse path; got {path}")
    return local_path(path)


def prepare_data(spark: SparkSession, config: dict, as_of: str, out_dir: str, num_files: int) -> tuple[dict, dict]:
    """Encode train and hold-out rows, write them as Parquet; returns (spec, row counts)."""
    root, seed = config["lake_root"], config["train"]["seed"]
    hint = f"features --as-of {as_of} (with events covering the label horizon)"
    uf = lake.read_partition(spark, root, tables.GOLD_USER_FEATURES, "as_of_date", as_of, hint)
    labels = lake.read_partition(spark, root, tables.GOLD_USER_LABELS, "as_of_date", as_of, hint)
    categories = classify.top_categories(uf)
    data = (classify.prepare(uf, categories)
            .join(uf.select("user_key", encode.CATEGORY_COLUMN), "user_key")
            .join(labels.select("user_key", F.col("purchased_next").cast("float").alias("label")), "user_key")
            .withColumn("_test", classify.holdout(F.col("user_key"), seed))
            .withColumn("row_id", F.xxhash64(F.lit(seed), "user_key"))
            .persist(StorageLevel.MEMORY_AND_DISK))
    train = data.where(~F.col("_test"))
    vocabulary = classify.top_categories(uf, n=50)
    spec = encode.build_spec(train, classify.feature_columns(categories), vocabulary)
    counts = {"horizon_days": labels.select("horizon_days").head()[0]}
    for name, part in (("train", train), ("test", data.where(F.col("_test")))):
        # Enough files (row groups) that every worker gets a shard, in a stable order.
        (encode.encode(part, spec, keep=("row_id", "user_key", "label"))
         .repartition(num_files, "row_id").sortWithinPartitions("row_id")
         .write.mode("overwrite").parquet(f"{out_dir}/{name}"))
        counts[name] = spark.read.parquet(f"{out_dir}/{name}").count()
    data.unpersist()
    spec["categories"] = categories
    return spec, counts


def _identity(params: dict) -> dict:
    """The parameters that make a deep run's run_id: all but the epoch count, so that
    `--resume --epochs N` extends the same run (its row records the epochs reached)."""
    return {k: v for k, v in params.items() if k != "epochs"}


def _attempts_with_checkpoint(run_dir: str) -> list[str]:
    """A run's attempt directories that hold a committed checkpoint, newest first."""
    if not os.path.isdir(run_dir):
        return []
    attempts = (os.path.join(run_dir, entry) for entry in sorted(os.listdir(run_dir), reverse=True))
    return [a for a in attempts if distributed.last_checkpoint_epoch(f"{a}/checkpoints") > 0]


def _start(spark: SparkSession, config: dict, task: str, model_name: str, as_of: str | None, params: dict,
           resume: bool) -> tuple[str, str, str]:
    """run_id, this attempt's model dir and its checkpoint dir.

    A new training gets a new attempt directory. --resume continues the newest attempt holding a
    checkpoint: in place when no gold/model_runs row points to it (an interrupted run), else in a
    new attempt directory that starts from a copy of its checkpoints (a recorded model stays as is)."""
    root, models_root = config["lake_root"], cfg.deep_local_dir(config)
    run_id = runs.make_run_id(task, model_name, as_of, _identity(params))
    if not resume:
        model_dir = _local_dir(runs.new_attempt_dir(models_root, task, run_id))
        return run_id, model_dir, f"{model_dir}/checkpoints"
    run_dir = os.path.normpath(_local_dir(runs.model_dir(models_root, task, run_id)))
    attempts = _attempts_with_checkpoint(run_dir)
    if not attempts:
        raise InputError(f"--resume: no checkpoint of this {model_name} run under {run_dir}; "
                         f"run without --resume first")
    previous = attempts[0]
    done = distributed.last_checkpoint_epoch(f"{previous}/checkpoints")
    if params["epochs"] <= done:
        raise InputError(f"--resume: run {run_id} ({model_name}) already has {done} epoch(s) in {previous}; "
                         f"pass --epochs greater than {done} to train it further")
    recorded = {os.path.normpath(_local_dir(p)) for p in runs.recorded_model_paths(spark, root, run_id)}
    if previous not in recorded:
        log.info("--resume: continuing %s from epoch %d in %s", run_id, done, previous)
        return run_id, previous, f"{previous}/checkpoints"
    model_dir = _local_dir(runs.new_attempt_dir(models_root, task, run_id))
    shutil.copytree(f"{previous}/checkpoints", f"{model_dir}/checkpoints")
    log.info("--resume: continuing %s from epoch %d of the recorded %s in a new attempt %s",
             run_id, done, previous, model_dir)
    return run_id, model_dir, f"{model_dir}/checkpoints"


def run_session_gru(spark: SparkSession, config: dict, as_of: str, num_proc: int, launcher: str, epochs: int,
                    batch_size: int, learning_rate: float, resume: bool, max_items: int = 5000,
                    max_len: int = 10) -> dict:
    """Next item in a session: a GRU over the session so far, trained on sessions before the cutoff
    and evaluated on sessions in the horizon after it, against most-popular, item transitions
    (co-occurrence with the last item) and the user's ALS top-20."""
    root = config["lake_root"]
    horizon = config["features"]["label_horizon_days"]
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    versions = runs.input_versions(spark, root, [tables.SILVER_EVENTS])
    params = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "warmup_epochs": 1,
              "seed": config["train"]["seed"], "max_items": max_items, "max_len": max_len, "horizon_days": horizon}
    run_id, model_dir, checkpoint_dir = _start(spark, config, "next_item", "session_gru", as_of, params, resume)
    gap = config["sessionize"]["gap_minutes"]
    history = features.events_before(events, as_of)
    vocabulary = sequences.item_vocabulary(history, max_items).persist(StorageLevel.MEMORY_AND_DISK)
    train_examples = sequences.next_item_examples(sequences.session_sequences(history, vocabulary, gap), max_len)
    test_examples = sequences.next_item_examples(
        sequences.session_sequences(features.events_in_horizon(events, as_of, horizon), vocabulary, gap), max_len)
    (train_examples.withColumn("row_id", F.xxhash64("user_key", "session_start", "position"))
     .repartition(max(4, 2 * num_proc), "row_id").sortWithinPartitions("row_id")
     .write.mode("overwrite").parquet(f"{model_dir}/data/train"))
    test_examples.write.mode("overwrite").parquet(f"{model_dir}/data/test")
    train_rows = spark.read.parquet(f"{model_dir}/data/train").count()
    test = spark.read.parquet(f"{model_dir}/data/test").persist(StorageLevel.MEMORY_AND_DISK)
    if train_rows < batch_size * num_proc or test.limit(1).count() == 0:
        raise InputError(f"too few session examples ({train_rows} before {as_of}, test after it) for "
                         f"--batch-size {batch_size} x {num_proc} workers")
    vocabulary_size = vocabulary.count()
    spec = {**params, "model": "session_gru", "vocabulary_size": vocabulary_size,
            "train_url": f"file://{model_dir}/data/train", "train_rows": train_rows,
            "checkpoint_dir": checkpoint_dir, "model_path": f"{model_dir}/model.h5",
            "threads": max(1, (os.cpu_count() or 1) // num_proc)}
    vocabulary.write.mode("overwrite").parquet(f"{model_dir}/vocabulary")
    with open(f"{model_dir}/spec.json", "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
    results = distributed.launch(spec, num_proc, launcher)

    k = sequences.NEXT_ITEM_K
    inputs = [sequences.item_name(i) for i in range(max_len)]
    last = F.col(sequences.item_name(max_len - 1))
    keep = ("user_key", "target", sequences.item_name(max_len - 1))
    candidates = {
        "session_gru": scoring.keras_top_k(test, spec["model_path"], inputs, k, keep),
        "most_popular": test.withColumn("predicted", F.array(*[F.lit(i) for i in sequences.popular_items(train_examples, k)])),
        "item_transitions": test.join(sequences.transition_neighbours(train_examples, max_len, k)
                                      .withColumnRenamed("neighbours", "predicted"),
                                      last == F.col("last_item"), "left"),
    }
    als = _als_items(spark, root, test, vocabulary, k)
    if als is not None:
        candidates["als"] = als
    out = []
    for name, predicted in candidates.items():
        metrics = evaluation.next_item_metrics(predicted, k)
        trained = name == "session_gru"
        record = runs.model_run(
            "next_item", name, as_of, params, versions, metrics,
            _worker_details(results, launcher, train_examples=train_rows, vocabulary_size=vocabulary_size)
            if trained else {}, model_path=model_dir if trained else None, baseline=not trained,
            run_id=run_id if trained else runs.make_run_id("next_item", name, as_of, _identity(params)))
        out.append(record)
        log.info(f"train_deep next_item {name:<17} " + ", ".join(f"{m}={v:.4f}" for m, v in sorted(metrics.items())))
    runs.record(spark, root, out)
    test.unpersist()
    vocabulary.unpersist()
    return {"records": out, "workers": results, "spec": spec}


def run_forecaster(spark: SparkSession, config: dict, as_of: str, num_proc: int, launcher: str, epochs: int,
                   batch_size: int, learning_rate: float, resume: bool, history: int = FORECAST_HISTORY_DAYS) -> dict:
    """A global LSTM over 28-day windows of every product and category series, predicting the next
    train.forecast_holdout_days days at once; evaluated on the same held-out days as `train forecast`."""
    from datetime import date, timedelta

    root = config["lake_root"]
    horizon = config["train"]["forecast_holdout_days"]
    if history < 7:
        raise ConfigError(f"--history-days must be at least 7 (seasonal naive needs a week), got {history}")
    origin = (date.fromisoformat(as_of) - timedelta(days=horizon)).isoformat()
    daily = lake.read_partition(spark, root, tables.GOLD_DAILY_SALES, "as_of_date", as_of, f"features --as-of {as_of}")
    versions = runs.input_versions(spark, root, [tables.GOLD_DAILY_SALES])
    params = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "warmup_epochs": 1,
              "seed": config["train"]["seed"], "history": history, "horizon": horizon, "origin": origin}
    run_id, model_dir, checkpoint_dir = _start(spark, config, "forecast", "lstm_forecaster", as_of, params, resume)
    series = forecast_windows.series_arrays(daily, origin).persist(StorageLevel.MEMORY_AND_DISK)
    (forecast_windows.windows(series, origin, history, horizon, training=True)
     .withColumn("row_id", F.xxhash64("level", "series_key", "origin_date"))
     .repartition(max(4, 2 * num_proc), "row_id").sortWithinPartitions("row_id")
     .write.mode("overwrite").parquet(f"{model_dir}/data/train"))
    train_rows = spark.read.parquet(f"{model_dir}/data/train").count()
    if train_rows < batch_size * num_proc:
        raise InputError(f"{train_rows} training windows are fewer than one batch per worker "
                         f"({batch_size} x {num_proc}): a window needs {history} + {horizon} days before {origin}; "
                         f"lower --history-days or --batch-size, or use a later --as-of")
    spec = {**params, "model": "lstm_forecaster", "train_url": f"file://{model_dir}/data/train",
            "train_rows": train_rows, "checkpoint_dir": checkpoint_dir, "model_path": f"{model_dir}/model.h5",
            "threads": max(1, (os.cpu_count() or 1) // num_proc)}
    with open(f"{model_dir}/spec.json", "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
    results = distributed.launch(spec, num_proc, launcher)

    holdout = forecast_windows.windows(series, origin, history, horizon, training=False)
    keep = ("level", "series_key", "origin_date", "scale", *holdout.columns[5:])
    predicted = scoring.explode_forecasts(
        scoring.keras_forecasts(holdout, spec["model_path"], spec, keep), spec).persist(StorageLevel.MEMORY_AND_DISK)
    metrics = {"lstm_forecaster": {}, "seasonal_naive": {}}
    for level in ("category", "product"):
        rows = predicted.where(F.col("level") == level)
        for name, column in (("lstm_forecaster", "forecast"), ("seasonal_naive", "seasonal_naive")):
            metrics[name].update({f"{level}_{k}": v for k, v in
                                  evaluation.forecast_metrics(rows, "actual", column).items()})
    out = [runs.model_run("forecast", "lstm_forecaster", as_of, params, versions, metrics["lstm_forecaster"],
                          _worker_details(results, launcher, train_windows=train_rows), model_path=model_dir,
                          run_id=run_id),
           runs.model_run("forecast", "seasonal_naive_windows", as_of, params, versions, metrics["seasonal_naive"],
                          baseline=True,
                          run_id=runs.make_run_id("forecast", "seasonal_naive_windows", as_of, _identity(params)))]
    runs.record(spark, root, out)
    predicted.unpersist()
    series.unpersist()
    for record in out:
        log.info(f"train_deep forecast {record['model']:<24} " +
              ", ".join(f"{m}={v:.4f}" for m, v in sorted(record["metrics"].items())))
    return {"records": out, "workers": results, "spec": spec}


def _als_items(spark: SparkSession, root: str, test, vocabulary, k: int):
    """Each test user's ALS top-k (latest `train recommend` run) as vocabulary items; None without a run."""
    from pyspark.ml.recommendation import ALSModel

    from ecomlake.errors import EcomlakeError
    from ecomlake.models import recommend

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


def run_review_text(spark: SparkSession, config: dict, num_proc: int, launcher: str, epochs: int, batch_size: int,
                    learning_rate: float, resume: bool, max_len: int = REVIEW_MAX_LEN) -> dict:
    from ecomlake.deep import text
    from ecomlake.models import sentiment

    root, settings, seed = config["lake_root"], config["sentiment"], config["train"]["seed"]
    versions = runs.input_versions(spark, root, [tables.BRONZE_CLOTHING_REVIEWS])
    params = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "warmup_epochs": 1,
              "seed": seed, "max_len": max_len, "test_fraction": settings["test_fraction"],
              "vocabulary_size": settings["vocabulary_size"]}
    run_id, model_dir, checkpoint_dir = _start(spark, config, "review_recommended", "review_text", None, params,
                                               resume)
    reviews = sentiment.prepare(lake.read_table(spark, root, tables.BRONZE_CLOTHING_REVIEWS), seed,
                                settings["test_fraction"]).persist(StorageLevel.MEMORY_AND_DISK)
    vocab = text.vocabulary(reviews.where(~F.col("is_test")), settings["vocabulary_size"]).persist()
    vocab.write.mode("overwrite").parquet(f"{model_dir}/vocabulary")
    vocabulary_size = vocab.count()
    encoded = text.encode(reviews, vocab, max_len).withColumn("label", F.col("recommended"))
    (encoded.where(~F.col("is_test")).withColumn("row_id", F.col("review_id"))
     .select("row_id", "label", *[text.token_name(i) for i in range(max_len)])
     .repartition(max(4, 2 * num_proc), "row_id").sortWithinPartitions("row_id")
     .write.mode("overwrite").parquet(f"{model_dir}/data/train"))
    train_rows = spark.read.parquet(f"{model_dir}/data/train").count()
    if train_rows < batch_size * num_proc:
        raise InputError(f"{train_rows} training reviews are fewer than one batch per worker "
                         f"({batch_size} x {num_proc}): lower --batch-size")
    spec = {**params, "model": "review_text", "vocabulary_size": vocabulary_size,
            "train_url": f"file://{model_dir}/data/train", "train_rows": train_rows,
            "checkpoint_dir": checkpoint_dir, "model_path": f"{model_dir}/model.h5",
            "threads": max(1, (os.cpu_count() or 1) // num_proc)}
    with open(f"{model_dir}/spec.json", "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
    results = distributed.launch(spec, num_proc, launcher)

    inputs = [text.token_name(i) for i in range(max_len)]
    scored = (scoring.keras_sequence_probabilities(encoded, spec["model_path"], inputs, ("review_id",))
              .withColumnRenamed("probability", "probability_recommended")
              .join(reviews, "review_id")).persist(StorageLevel.MEMORY_AND_DISK)
    metrics = sentiment.recommended_metrics(scored.where(F.col("is_test")))
    lake.replace_partition(sentiment.output_rows(scored, "review_text", run_id), root, tables.GOLD_REVIEW_SENTIMENT,
                           "model", "review_text")
    record = runs.model_run("review_recommended", "review_text", None, params, versions, metrics,
                            _worker_details(results, launcher, train_rows=train_rows, vocabulary_size=vocabulary_size),
                            model_path=model_dir, run_id=run_id)
    runs.record(spark, root, [record])
    scored.unpersist()
    vocab.unpersist()
    reviews.unpersist()
    log.info(f"train_deep review_text: {len(results)} workers ({launcher}); "
          + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k in ("auc", "pr_auc", "accuracy", "macro_f1")))
    return {"record": record, "workers": results, "spec": spec}


def run(spark: SparkSession, config: dict, model_name: str, as_of: str | None, num_proc: int | None = None,
        launcher: str = "spark", epochs: int = 8, batch_size: int = 256, learning_rate: float = 0.002,
        resume: bool = False, audit_shards: bool = False, history_days: int = FORECAST_HISTORY_DAYS) -> dict:
    if model_name not in MODELS:
        raise ConfigError(f"unknown deep model '{model_name}'; models: {', '.join(MODELS)}")
    root = config["lake_root"]
    num_proc = num_proc or os.cpu_count() or 1
    if num_proc < 1 or epochs < 1 or batch_size < 1:
        raise ConfigError("--num-proc, --epochs and --batch-size must be positive")
    if model_name == "review_text":
        return run_review_text(spark, config, num_proc, launcher, epochs, batch_size, learning_rate, resume)
    if not as_of:
        raise ConfigError(f"train_deep {model_name} needs --as-of (the cutoff of the features to train on)")
    as_of = parse_as_of(as_of)
    if model_name == "lstm_forecaster":
        return run_forecaster(spark, config, as_of, num_proc, launcher, epochs, batch_size, learning_rate, resume,
                              history_days)
    if model_name == "session_gru":
        return run_session_gru(spark, config, as_of, num_proc, launcher, epochs, batch_size, learning_rate, resume)
    params = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "warmup_epochs": 1,
              "seed": config["train"]["seed"], "test_fraction": 0.2}
    versions = runs.input_versions(spark, root, [tables.GOLD_USER_FEATURES, tables.GOLD_USER_LABELS])
    run_id, model_dir, checkpoint_dir = _start(spark, config, "propensity", model_name, as_of, params, resume)
    spec, counts = prepare_data(spark, config, as_of, f"{model_dir}/data", num_files=max(4, 2 * num_proc))
    if counts["train"] < batch_size * num_proc:
        raise InputError(f"{counts['train']} training rows are fewer than one batch per worker "
                         f"({batch_size} x {num_proc}): lower --batch-size")
    spec.update(params)
    spec.update({"train_url": f"file://{model_dir}/data/train", "train_rows": counts["train"],
                 "checkpoint_dir": checkpoint_dir, "model_path": f"{model_dir}/model.h5",
                 "threads": max(1, (os.cpu_count() or 1) // num_proc), "audit_shards": audit_shards})
    with open(f"{model_dir}/spec.json", "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
    results = distributed.launch(spec, num_proc, launcher)

    test = spark.read.parquet(f"{model_dir}/data/test")
    scored = scoring.keras_probabilities(test, spec["model_path"], spec, keep=("user_key", "label")).persist()
    metrics = evaluation.binary_metrics(scored, "label", "probability")
    auc = gen.oracle_auc(spark, config["generate"]["output"], cfg.pseudonymisation_key(config), scored, as_of,
                         counts["horizon_days"])
    if auc is not None:
        metrics["oracle_auc"] = auc
    history = results[0]["history"]
    record = runs.model_run("propensity", model_name, as_of, params, versions, metrics, _worker_details(
        results, launcher, train_rows=counts["train"], test_rows=counts["test"],
        initial_epoch=results[0]["initial_epoch"],
        calibration=evaluation.calibration_table(scored, "label", "probability")), model_path=model_dir, run_id=run_id)
    runs.record(spark, root, [record])
    scored.unpersist()
    losses = history.get("loss", [])
    log.info(f"train_deep {model_name}: {len(results)} workers ({launcher}), epochs {results[0]['initial_epoch']}"
          f"->{epochs}, loss {losses[0] if losses else float('nan'):.4f} -> {losses[-1] if losses else float('nan'):.4f}; "
          + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return {"record": record, "workers": results, "spec": spec}


def main(argv=None) -> int:
    parser = job_parser("train_deep", __doc__)
    parser.add_argument("model", choices=MODELS, help="which deep model to train")
    parser.add_argument("--as-of", help="cutoff date of the features to train on (not for review_text)")
    parser.add_argument("--num-proc", type=int, help="Horovod workers (default: the machine's cores)")
    parser.add_argument("--launcher", choices=("spark", "horovodrun"), default="spark")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256, help="per worker")
    parser.add_argument("--learning-rate", type=float, default=0.002, help="per worker (scaled by workers)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run from its last checkpoint up to --epochs (more than it holds)")
    parser.add_argument("--history-days", type=int, default=FORECAST_HISTORY_DAYS,
                        help="lstm_forecaster: days of history per window (default 28)")
    return run_job("train_deep", parser, lambda spark, config, a: run(
        spark, config, a.model, a.as_of, a.num_proc, a.launcher, a.epochs, a.batch_size, a.learning_rate,
        a.resume, history_days=a.history_days), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

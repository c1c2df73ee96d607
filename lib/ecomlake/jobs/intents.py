"""intents: review aspects and service triage on the clothing reviews; route new messages.

  ./spark-submit.sh intents                                   # all reviews: models, gold tables
  ./spark-submit.sh intents --route --input messages.csv      # new messages -> their actions

Reads bronze/clothing_reviews (`ingest --source clothing_reviews`). Each review is a message a
service team must triage: which aspects it talks about (fit/size, fabric/quality, colour,
look/style, price/value, comfort) with which sentiment, and one action (none, sizing_help,
quality_complaint, return_follow_up, share_praise; docs/review_labelling.md). Three methods
(lib/ecomlake/models/aspects.py): keyword rules, zero-shot MiniLM similarity to short
descriptions, and logistic regressions on the MiniLM embedding, rating and recommended flag
trained on the rules' labels (intents.weak_aspect_labels) of every review outside the
hand-labelled set (420 reviews, in the package);
all three are measured against the hand labels (the 280 outside the development part that the
rules were fixed on). MiniLM embeddings are kept in
silver/review_embeddings (computed once per review text). Writes (each replaced whole):
  gold/review_aspects   per review and aspect it talks about (intents.aspect_method's method):
                        sentiment, fit direction (small / large / true), probability
  gold/aspect_summary   per department and class, and per item: mentions, shares negative, running
                        small / large, and a suggestion a merchandiser can act on
  gold/service_queue    per review: the rules' action, the classifier's confidence in it, queue
                        (human below intents.human_queue_below)
  gold/model_runs       tasks review_aspects and service_triage (metrics against the hand labels)
--route reads a CSV or JSON file (or a Delta table path) of new messages with columns
message_id and text (rating, recommended, item_id optional) and writes their actions with the
newest service_triage model to gold/routed_messages (the rows of that input replaced in one
commit: re-running the same file gives the same rows, with a new routed_at); a message without
message_id or text goes to quarantine/routed_messages with its reason (missing_message_id,
missing_text), replaced the same way.
"""
from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import embedding_cache, lake, runs, sentence_embeddings, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.errors import InputError, require_columns
from ecomlake.models import aspects, sentiment

log = logging.getLogger(__name__)

METHODS = {"keyword_rules": "", "zero_shot_minilm": "zs_", "weak_lr": "ml_"}  # method -> column prefix
ROUTED_COLUMNS = ["message_id", "source", "action", "confidence", "queue", "aspects", "fit_direction",
                  "run_id", "routed_at"]


def review_messages(reviews: DataFrame) -> DataFrame:
    """bronze/clothing_reviews -> the message columns the models read."""
    return reviews.select(
        F.col("review_id").alias("message_id"), "item_id",
        F.coalesce("department", F.lit("unknown")).alias("department"),
        F.coalesce("class_name", F.lit("unknown")).alias("class_name"),
        F.concat_ws(". ", "title", "review_text").alias("raw_text"),
        aspects.message_text("title", "review_text").alias("text"), "rating", "recommended")


def evaluation_rows(scored: DataFrame, labelled: DataFrame) -> list[dict]:
    """The hand-labelled reviews with every method's output (420 rows: bounded by the test set)."""
    clauses = aspects.split_clauses(F.col("text"))
    extra = [aspects.aspect_sentiment(clauses, a, F.col("rating")).alias(f"clause_{a}") for a in aspects.ASPECTS]
    by_rating = F.when(F.col("rating") >= 4, "positive").when(F.col("rating") <= 2, "negative").otherwise("mixed")
    rows = (scored.join(labelled, scored.message_id == labelled.review_id)
            .select("*", *extra, by_rating.alias("rating_sentiment"),
                    F.col("fit_direction").alias("rule_direction")).drop("embedding", "features")
            .collect())
    return [r.asDict() for r in rows]


def evaluate(rows: list[dict]) -> tuple[dict, dict]:
    """(aspect metrics, action metrics) of every method against the hand labels."""
    detection = aspects.detection_metrics(rows, METHODS)
    with_fit = [r for r in rows if r["true_fit_direction"]]
    aspect_metrics = {
        "detection": detection,
        "sentiment_accuracy": {"clause_rules": aspects.sentiment_accuracy(rows, lambda a: f"clause_{a}"),
                               "star_rating": aspects.sentiment_accuracy(rows, lambda a: "rating_sentiment")},
        "fit_direction_accuracy": (sum(r["rule_direction"] == r["true_fit_direction"] for r in with_fit)
                                   / len(with_fit) if with_fit else 0.0),
        "fit_direction_n": len(with_fit), "n": len(rows)}
    action = {method: aspects.action_metrics(rows, column) for method, column in
              (("keyword_rules", "action"), ("zero_shot_minilm", "zs_action"), ("weak_lr", "ml_action"))}
    majority = max(aspects.ACTIONS, key=lambda a: sum(r["true_action"] == a for r in rows))
    action["majority"] = aspects.action_metrics([r | {"_m": majority} for r in rows], "_m")
    # The queue: the rules' action, to a person when the classifier doubts it.
    auto = [r for r in rows if r["queue"] == "auto"]
    human = [r for r in rows if r["queue"] == "human"]
    action["keyword_rules"] |= {
        "auto_share": len(auto) / len(rows) if rows else 0.0,
        "auto_accuracy": sum(r["true_action"] == r["action"] for r in auto) / len(auto) if auto else 0.0,
        "human_queue_accuracy": sum(r["true_action"] == r["action"] for r in human) / len(human) if human else 0.0}
    return aspect_metrics, action


def fit_models(spark: SparkSession, scored: DataFrame, seed: int, aspect_labels: str,
               max_iter: int) -> tuple[dict, object, int]:
    """The weak-label classifiers, trained on every review outside the hand-labelled test set."""
    test_ids = aspects.labels_frame(spark).select(F.col("review_id").alias("message_id"))
    train = (aspects.classifier_features(aspects.weak_labels(scored, aspect_labels), rating_dropout_seed=seed)
             .join(test_ids, "message_id", "left_anti").persist(StorageLevel.MEMORY_AND_DISK))
    # One pass: the training rows and, per aspect, how many weak labels of each class and how many
    # reviews the rules flag.
    counts = train.agg(F.count(F.lit(1)).alias("n"), *[
        agg.alias(f"{name}_{a}") for a in aspects.ASPECTS for name, agg in (
            ("yes", F.sum((F.col(f"weak_{a}") == 1).cast("int"))), ("no", F.sum((F.col(f"weak_{a}") == 0).cast("int"))),
            ("rule", F.sum(F.col(a).isNotNull().cast("int"))))]).first()
    n_train = counts["n"]
    training = {}
    for aspect in aspects.ASPECTS:
        rows = train.where(F.col(f"weak_{aspect}").isNotNull())
        if not (counts[f"yes_{aspect}"] and counts[f"no_{aspect}"]):
            # The weak labels hold one class only (rules and zero-shot never agree on the other, in a
            # small or uniform corpus): the rules' flags alone.
            log.warning(f"intents: aspect {aspect}: its weak labels hold one class only; training on the rules' flags")
            if not 0 < counts[f"rule_{aspect}"] < n_train:
                raise InputError(f"bronze/clothing_reviews: no review or every review talks about {aspect}; "
                                 "too few reviews to learn from")
            rows = train.withColumn(f"weak_{aspect}", F.col(aspect).isNotNull().cast("double"))
        training[aspect] = (aspects.aspect_classifier(aspect, max_iter=max_iter), rows)
    training["action"] = (aspects.action_classifier(max_iter=max_iter), train.where(F.col("weak_action") >= 0))
    fitted = {name: estimator.fit(rows) for name, (estimator, rows) in training.items()}
    train.unpersist()
    return {a: fitted[a] for a in aspects.ASPECTS}, fitted["action"], n_train


def run(spark: SparkSession, config: dict) -> dict:
    root, settings, seed = config["lake_root"], config["intents"], config["train"]["seed"]
    versions = runs.input_versions(spark, root, [tables.BRONZE_CLOTHING_REVIEWS])
    messages = review_messages(lake.read_table(spark, root, tables.BRONZE_CLOTHING_REVIEWS)
                               .where(F.col("review_text").isNotNull() | F.col("title").isNotNull()))
    embedded = embedding_cache.with_embeddings(spark, root, messages)
    names, vectors = aspects.prototype_matrix(sentence_embeddings.embed_texts)
    cached = aspects.zero_shot_action(aspects.zero_shot_scores(aspects.rule_labels(embedded), names, vectors)
                                      ).persist(StorageLevel.MEMORY_AND_DISK)
    scored = cached
    shares = scored.agg(*[F.avg(F.col(a).isNotNull().cast("double")).alias(a) for a in aspects.ASPECTS]).first()
    n_messages = scored.count()
    if n_messages < 50:
        raise InputError(f"bronze/clothing_reviews has too few reviews with text to learn from ({n_messages})")
    thresholds = aspects.zero_shot_thresholds(scored, shares.asDict())
    scored = aspects.zero_shot_aspects(scored, thresholds)
    aspect_models, action_model, n_train = fit_models(spark, scored, seed, settings["weak_aspect_labels"],
                                                      settings["max_iter"])
    final = aspects.classified(aspects.classifier_features(scored), aspect_models, action_model,
                               settings["human_queue_below"]).persist(StorageLevel.MEMORY_AND_DISK)
    labelled = evaluation_rows(final, aspects.labels_frame(spark))
    development = aspects.development_ids()
    rows = [r for r in labelled if r["review_id"] not in development]
    aspect_metrics, action_metrics = evaluate(rows)
    dev_aspects, dev_actions = evaluate([r for r in labelled if r["review_id"] in development])

    params = {"seed": seed, "human_queue_below": settings["human_queue_below"], "embedding": "all-MiniLM-L6-v2",
              "weak_aspect_labels": settings["weak_aspect_labels"], "max_iter": settings["max_iter"]}
    common = {"train_rows": n_train, "test_rows": len(rows), "development_rows": len(labelled) - len(rows),
              "zero_shot_thresholds": thresholds,
              "rule_shares": shares.asDict()}
    run_id = runs.make_run_id("service_triage", "weak_lr", None, params)
    model_path = runs.new_attempt_dir(root, "service_triage", run_id)
    for aspect, model in aspect_models.items():
        model.write().overwrite().save(f"{model_path}/aspect_{aspect}")
    action_model.write().overwrite().save(f"{model_path}/action")
    records = []
    for method in METHODS:
        detection = aspect_metrics["detection"][method]
        metrics = {"macro_f1": detection["macro_f1"],
                   **{f"f1_{a}": m["f1"] for a, m in detection["per_aspect"].items()},
                   "sentiment_accuracy": aspect_metrics["sentiment_accuracy"]["clause_rules"],
                   "fit_direction_accuracy": aspect_metrics["fit_direction_accuracy"]}
        records.append(runs.model_run("review_aspects", method, None, params, versions, metrics,
                                      {**common, "per_aspect": detection["per_aspect"],
                                       "development_macro_f1": dev_aspects["detection"][method]["macro_f1"],
                                       "sentiment_accuracy": aspect_metrics["sentiment_accuracy"]},
                                      baseline=method == "zero_shot_minilm"))
    for method, metrics in action_metrics.items():
        flat = {k: v for k, v in metrics.items() if k != "per_class"}
        flat |= {f"f1_{c}": m["f1"] for c, m in metrics["per_class"].items()}
        records.append(runs.model_run("service_triage", method, None, params, versions, flat,
                                      {**common, "per_class": metrics["per_class"],
                                       "development_macro_f1": dev_actions[method]["macro_f1"]},
                                      baseline=method in ("zero_shot_minilm", "majority"),
                                      model_path=model_path if method == "weak_lr" else None))
    for r in records:
        m = r["metrics"]
        log.info(f"intents {r['task']:<15} {r['model']:<17} macro-F1 {m['macro_f1']:.3f}"
                 + (f", accuracy {m['accuracy']:.3f}" if "accuracy" in m else "")
                 + f" (development {r['details']['development_macro_f1']:.3f})")

    method = settings["aspect_method"]
    aspect_rows = aspects.aspect_rows(final, METHODS[method], method).withColumn("run_id", F.lit(run_id))
    lake.overwrite_table(aspect_rows, root, tables.GOLD_REVIEW_ASPECTS)
    summary = aspects.aspect_summary(lake.read_table(spark, root, tables.GOLD_REVIEW_ASPECTS), final,
                                     min_mentions=settings["min_mentions"])
    lake.overwrite_table(summary.withColumn("run_id", F.lit(run_id)), root, tables.GOLD_ASPECT_SUMMARY)
    lake.overwrite_table(queue_rows(final, run_id), root, tables.GOLD_SERVICE_QUEUE)
    runs.record(spark, root, records)
    queue = {(r.action, r.queue): r["count"] for r in
             lake.read_table(spark, root, tables.GOLD_SERVICE_QUEUE).groupBy("action", "queue").count().collect()}
    for action in aspects.ACTIONS:
        log.info(f"  {action:<18} {queue.get((action, 'auto'), 0):>6,} auto  {queue.get((action, 'human'), 0):>6,} human")
    final.unpersist()
    cached.unpersist()
    return {"messages": n_messages, "train_rows": n_train, "test_rows": len(rows), "run_id": run_id,
            "aspect_macro_f1": {m: aspect_metrics["detection"][m]["macro_f1"] for m in METHODS},
            "action_macro_f1": {m: action_metrics[m]["macro_f1"] for m in action_metrics}}


def queue_rows(final: DataFrame, run_id: str) -> DataFrame:
    negative = F.filter(F.array(*[F.when(F.col(a).isin("negative", "mixed"), F.lit(a))
                                  for a in aspects.ASPECTS]), lambda x: x.isNotNull())
    return final.select(F.col("message_id").alias("review_id"), "item_id", "department", "class_name", "rating",
                        "action", "confidence", "queue", negative.alias("complaint_aspects"), "fit_direction",
                        F.col("ml_action").alias("classifier_action"), F.lit(run_id).alias("run_id"))


def read_messages(spark: SparkSession, path: str) -> DataFrame:
    """A CSV (header) or JSON-lines file, or a Delta table, of new messages."""
    lowered = path.lower()
    if lowered.endswith((".csv", ".csv.gz")):
        df = spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(path)
    elif lowered.endswith((".json", ".jsonl")):
        df = spark.read.json(path)
    elif lake.table_exists(spark, path):
        df = spark.read.format("delta").load(path)
    else:
        raise InputError(f"--input {path}: not a .csv, .json or .jsonl file nor a Delta table")
    require_columns(df, ["message_id", "text"], f"--input {path}")
    for optional, kind in (("rating", "int"), ("recommended", "int"), ("item_id", "long")):
        df = df.withColumn(optional, F.col(optional).cast(kind) if optional in df.columns else F.lit(None).cast(kind))
    return df


def route(spark: SparkSession, config: dict, path: str) -> dict:
    from pyspark.ml.classification import LogisticRegressionModel

    root, settings = config["lake_root"], config["intents"]
    try:
        model_run = runs.find(spark, root, "service_triage")
    except InputError:
        raise InputError("gold/model_runs has no trained service_triage model: run `intents` first") from None
    raw = read_messages(spark, path)
    reason = (F.when(F.col("message_id").isNull(), F.lit("missing_message_id"))
              .when(F.coalesce(F.length(F.trim(F.col("text").cast("string"))), F.lit(0)) == 0, F.lit("missing_text")))
    # A message that cannot be routed is kept with its reason (replaced with the input's other rows).
    set_aside = raw.where(reason.isNotNull()).select(
        F.col("message_id").cast("string").alias("message_id"), F.col("text").cast("string").alias("text"),
        reason.alias("reason"), F.lit(path).alias("source"),
        F.lit(datetime.now(timezone.utc)).cast("timestamp").alias("routed_at"))
    lake.replace_rows(spark, set_aside, root, tables.QUARANTINE_ROUTED_MESSAGES, f"source = {lake.sql_string(path)}")
    skipped = lake.read_table(spark, root, tables.QUARANTINE_ROUTED_MESSAGES).where(F.col("source") == path).count()
    if skipped:
        log.warning(f"intents --route: {skipped:,} row(s) of {path} have no message_id or no text: kept in "
                    f"{tables.QUARANTINE_ROUTED_MESSAGES.id} with the reason, not routed")
    raw = raw.where(reason.isNull())
    messages = raw.select(F.col("message_id").cast("string").alias("message_id"), "item_id",
                          F.lit("unknown").alias("department"), F.lit("unknown").alias("class_name"),
                          F.col("text").alias("raw_text"), aspects.message_text(F.lit(None), "text").alias("text"),
                          "rating", "recommended")
    embedded = sentiment.embed(messages, "raw_text")  # new messages: nothing to cache by review_id
    labelled = aspects.rule_labels(embedded)
    base = model_run["model_path"]
    aspect_models = {a: LogisticRegressionModel.load(f"{base}/aspect_{a}") for a in aspects.ASPECTS}
    final = aspects.classified(aspects.classifier_features(labelled), aspect_models,
                               LogisticRegressionModel.load(f"{base}/action"), settings["human_queue_below"])
    talked_about = F.filter(F.array(*[F.when(F.col(a).isNotNull(), F.concat(F.lit(f"{a}:"), F.col(a)))
                                      for a in aspects.ASPECTS]),
                            lambda x: x.isNotNull())
    routed = final.select("message_id", F.lit(path).alias("source"), "action",
                          "confidence", "queue", talked_about.alias("aspects"), "fit_direction",
                          F.lit(model_run["run_id"]).alias("run_id"),
                          F.lit(datetime.now(timezone.utc)).cast("timestamp").alias("routed_at"))
    lake.replace_rows(spark, routed.select(*ROUTED_COLUMNS), root, tables.GOLD_ROUTED_MESSAGES,
                      f"source = {lake.sql_string(path)}")
    written = lake.read_table(spark, root, tables.GOLD_ROUTED_MESSAGES).where(F.col("source") == path)
    counts = {(r.action, r.queue): r["count"] for r in written.groupBy("action", "queue").count().collect()}
    for (action, queue), n in sorted(counts.items()):
        log.info(f"  {action:<18} {queue:<5} {n:>6,}")
    return {"routed": sum(counts.values()), "skipped": skipped, "run_id": model_run["run_id"],
            "by_action": {f"{a}/{q}": n for (a, q), n in counts.items()}}


def main(argv=None) -> int:
    parser = job_parser("intents", __doc__)
    parser.add_argument("--route", action="store_true", help="route new messages (--input) with the newest model")
    parser.add_argument("--input", metavar="PATH", help="with --route: a CSV / JSON file or Delta table of messages")

    def body(spark, config, args):
        if args.route:
            if not args.input:
                raise InputError("--route needs --input PATH (a CSV or JSON file, or a Delta table, of messages)")
            return route(spark, config, args.input)
        if args.input:
            raise InputError("--input is only read with --route")
        return run(spark, config)

    return run_job("intents", parser, body, argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

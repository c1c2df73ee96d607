"""How close can a purchase-propensity model get to the generator's oracle? A measured upper bound.

  .venv/bin/python benchmarks/propensity.py [--lake lakehouse] [--raw data/rees46] [--as-of 2019-11-17]

On a lake built by `make pipeline ml` (gold/user_features and gold/user_labels as of --as-of) and
the generator's ground truth under --raw, with the hold-out users of `train propensity`, prints
the AUC of:
- the logistic regression of `train propensity`;
- gradient-boosted trees (Spark ML GBTClassifier) on the same user features, and on those plus
  sequence features (days since the last cart, the trend of the last 7 days' views against the
  last 30 days', the user's viewed price against the catalogue's mean);
- the same trees taught by the oracle: regressed on each training user's true purchase
  probability 1 - exp(-oracle_score) instead of the noisy 0/1 label. That is the best estimate of
  each user's intensity the features allow; its AUC on the hold-out (and on the very users it was
  fitted on) bounds what any model on these features can reach;
- the oracle itself (the generator's true odds).
Not a test: numbers, written to benchmarks/results-propensity-<events>.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake import config as cfg  # noqa: E402
from ecomlake import evaluation, features, lake, tables  # noqa: E402
from ecomlake import generate as gen  # noqa: E402
from ecomlake.models import classify  # noqa: E402
from ecomlake.privacy import pseudonymise  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402

log = logging.getLogger("bench-propensity")
TREES = {"maxIter": 60, "maxDepth": 3, "stepSize": 0.1, "subsamplingRate": 0.8, "seed": 7}
SEQUENCE = ("days_since_last_cart", "views_trend", "price_position")


def sequence_features(events, as_of: str):
    """user_key and SEQUENCE from the silver events before as_of."""
    from pyspark.sql import functions as F

    before = features.events_before(events, as_of)
    cutoff = features.cutoff(as_of)
    days_ago = (F.unix_timestamp(cutoff) - F.unix_timestamp("event_time")) / 86400.0
    mean_price = before.where(F.col("event_type") == "view").agg(F.avg("price")).head()[0]
    per_user = before.groupBy("user_key").agg(
        F.min(F.when(F.col("event_type") == "cart", days_ago)).alias("days_since_last_cart"),
        F.sum(F.when((F.col("event_type") == "view") & (days_ago < 7), 1).otherwise(0)).alias("_v7"),
        F.sum(F.when((F.col("event_type") == "view") & (days_ago < 30), 1).otherwise(0)).alias("_v30"),
        F.avg(F.when(F.col("event_type") == "view", F.col("price"))).alias("_price"))
    return per_user.select(
        "user_key", F.coalesce("days_since_last_cart", F.lit(365.0)).alias("days_since_last_cart"),
        ((F.col("_v7") + 1) / (F.col("_v30") / 30 * 7 + 1)).alias("views_trend"),
        F.coalesce(F.col("_price") / F.lit(mean_price), F.lit(1.0)).alias("price_position"))


def main() -> None:
    from pyspark import StorageLevel
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import GBTRegressor
    from pyspark.sql import functions as F

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lakehouse")
    parser.add_argument("--raw", default="data/rees46", help="the generator output with _ground_truth/")
    parser.add_argument("--as-of", default="2019-11-17")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    config = cfg.load("local", overrides=["spark.conf.spark.ui.enabled=false"], lake=args.lake)
    spark = get_spark(config, "bench-propensity")
    spark.sparkContext.setLogLevel("ERROR")
    root, seed, as_of = config["lake_root"], config["train"]["seed"], args.as_of

    user_features = lake.read_partition(spark, root, tables.GOLD_USER_FEATURES, "as_of_date", as_of, "features")
    labels = lake.read_partition(spark, root, tables.GOLD_USER_LABELS, "as_of_date", as_of, "features")
    horizon = labels.select("horizon_days").head()[0]
    labels = labels.where(F.col("purchased_next").isNotNull()).select(
        "user_key", F.col("purchased_next").alias("label"))
    truth = json.loads(Path(args.raw, "_ground_truth", "generator.json").read_text())
    oracle = pseudonymise(
        gen.oracle_purchase_score(spark.read.parquet(str(Path(args.raw, "_ground_truth", "users"))),
                                  truth["day_weights"], truth["params"]["start_date"], as_of, horizon),
        "user_id", "user_key", cfg.pseudonymisation_key(config))
    categories = classify.top_categories(user_features)
    sequence = sequence_features(lake.read_table(spark, root, tables.SILVER_EVENTS), as_of)
    data = (classify.prepare(user_features, categories).join(labels, "user_key").join(oracle, "user_key")
            .join(sequence, "user_key", "left").fillna({"days_since_last_cart": 365.0, "views_trend": 1.0,
                                                         "price_position": 1.0})
            .withColumn("label_value", F.col("label").cast("double"))   # Spark ML trees want a number
            .withColumn("true_probability", 1 - F.exp(-F.col("oracle_score")))
            .withColumn("_test", classify.holdout(F.col("user_key"), seed))
            .persist(StorageLevel.MEMORY_AND_DISK))
    train, test = data.where(~F.col("_test")), data.where(F.col("_test"))
    base = classify.feature_columns(categories)

    def auc(scored, column):
        return evaluation.binary_metrics(scored.select("label", F.col(column).alias("score")), probability=False)["auc"]

    def trees(estimator, columns):
        started = time.time()
        model = Pipeline(stages=[VectorAssembler(inputCols=columns, outputCol="_f"), estimator]).fit(train)
        return model, time.time() - started

    results = {"events": truth["params"]["events"], "as_of": as_of, "test_users": test.count(),
               "train_users": train.count(), "auc": {}, "seconds": {}}
    lr, shift = classify.fit(train, "label", categories)
    results["auc"]["logistic_regression"] = auc(classify.predict(lr, test, shift).join(test, "user_key"), "probability")
    for name, columns in (("gbt", base), ("gbt_with_sequence", [*base, *SEQUENCE])):
        model, seconds = trees(GBTClassifier(featuresCol="_f", labelCol="label_value", **TREES), columns)
        scored = model.transform(test).withColumn("p", classify.positive_probability(F.col("probability")))
        results["auc"][name], results["seconds"][name] = auc(scored, "p"), seconds
        importances = model.stages[-1].featureImportances.toArray()
        results[f"{name}_top_features"] = sorted(
            ((c, round(float(w), 3)) for c, w in zip(columns, importances)), key=lambda cw: -cw[1])[:8]
    taught, seconds = trees(GBTRegressor(featuresCol="_f", labelCol="true_probability", **TREES), [*base, *SEQUENCE])
    results["auc"]["oracle_taught_gbt"] = auc(taught.transform(test), "prediction")
    results["auc"]["oracle_taught_gbt_on_its_training_users"] = auc(taught.transform(train), "prediction")
    results["auc"]["oracle"] = auc(test, "oracle_score")
    results["seconds"]["oracle_taught_gbt"] = seconds

    log.info(f"\n== purchase propensity, {results['events']:,} generated events, as of {as_of}: "
             f"{results['test_users']:,} hold-out users ({results['train_users']:,} to train) ==")
    for name, value in results["auc"].items():
        log.info(f"  AUC {name:<42} {value:.3f}")
    for name in ("gbt", "gbt_with_sequence"):
        log.info(f"  {name} top features: " + ", ".join(f"{c} {w:.3f}" for c, w in results[f"{name}_top_features"]))
    out = Path(__file__).with_name(f"results-propensity-{results['events']}.json")
    out.write_text(json.dumps(results, indent=2))
    log.info(f"\nraw numbers: {out}")
    data.unpersist()
    spark.stop()


if __name__ == "__main__":
    main()

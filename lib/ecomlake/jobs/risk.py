"""risk: fraud and risk signals per session and user, a classifier, and ranked alerts with reasons.

  ./spark-submit.sh risk [--as-of 2019-12-01]

Reads silver/sessions and silver/events before --as-of (default: the day after the last event).
Signals and rules: ecomlake.models.risk. When the lake holds generated data, the generator's
planted fraud (_ground_truth/users: bots, card testers and, with generate.hidden_fraud_fraction,
taken-over accounts and slow scrapers; bulk buyers are legitimate) are the labels: a logistic
regression and gradient-boosted trees on the signals are trained on 70 % of users and measured on
the other 30 % (risk.test_fraction) with precision, recall and PR-AUC, next to the rule count as
the baseline; risk.classifier picks the one whose score the alerts use. Without labels the
rules alone rank users. Writes, replacing the partition of that as-of date:
  gold/risk_signals   every user's signals, fired reasons, rule score, risk score (and label)
  gold/risk_alerts    users with a risk score >= risk.alert_threshold or any rule firing, ranked
                      (alert_rank 1 = riskiest), each with its reasons in words
  gold/model_runs     task 'risk': the classifier and the rule baseline
"""
from __future__ import annotations

import logging
import sys
from datetime import timedelta

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import config as cfg
from ecomlake import evaluation, features, lake, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import InputError
from ecomlake.models import risk
from ecomlake.models.classify import holdout, positive_probability
from ecomlake.privacy import pseudonymise

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["user_key", *risk.SIGNALS, "reasons", "rule_score", "risk_score", "label"]


def planted_fraud_labels(spark: SparkSession, config: dict) -> DataFrame | None:
    """user_key, label (1 = a fraud kind: bot, card tester, taken-over account, slow scraper; 0 =
    normal or bulk buyer), kind from the generator's ground truth, if present."""
    from ecomlake.generate import FRAUD_KINDS

    output = config["generate"]["output"]
    if not lake.path_exists(spark, f"{output}/_ground_truth/users"):
        return None
    users = spark.read.parquet(f"{output}/_ground_truth/users").select("user_id", "kind")
    labelled = pseudonymise(users, "user_id", "user_key", cfg.pseudonymisation_key(config))
    return labelled.select("user_key", "kind", F.col("kind").isin(*FRAUD_KINDS).cast("double").alias("label"))


def run(spark: SparkSession, config: dict, as_of: str | None = None) -> dict:
    root, settings, seed = config["lake_root"], config["risk"], config["train"]["seed"]
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    sessions = lake.read_table(spark, root, tables.SILVER_SESSIONS)
    if as_of is None:
        last = events.agg(F.max("event_date")).first()[0]
        if last is None:
            raise InputError("silver/events is empty: run `pipeline` (or ingest + clean) first")
        as_of = (last + timedelta(days=1)).isoformat()
    as_of = parse_as_of(as_of)
    versions = runs.input_versions(spark, root, [tables.SILVER_EVENTS, tables.SILVER_SESSIONS])
    cutoff = features.cutoff(as_of)
    signals = risk.with_reasons(risk.user_signals(sessions.where(F.col("session_start") < cutoff),
                                                  features.events_before(events, as_of), cutoff))
    labels = planted_fraud_labels(spark, config)
    if labels is not None:
        signals = signals.join(labels, "user_key", "left")
        if signals.where(F.col("label").isNotNull()).limit(1).count() == 0:
            labels = None  # the ground truth belongs to other data
            signals = signals.drop("kind", "label")
    params = {"as_of": as_of, "alert_threshold": settings["alert_threshold"], "seed": seed,
              "test_fraction": settings["test_fraction"], "gbt_max_iter": settings["gbt_max_iter"]}
    records = []
    if labels is not None:
        data = (signals.withColumn("label", F.coalesce("label", F.lit(0.0)))
                .withColumn("_test", holdout(F.col("user_key"), seed, settings["test_fraction"]))
                .persist(StorageLevel.MEMORY_AND_DISK))
        train = data.where(~F.col("_test"))
        models = {kind: risk.classifier(seed, kind, settings["gbt_max_iter"]).fit(train) for kind in risk.CLASSIFIERS}
        scored = data
        for kind, model in models.items():
            scored = (model.transform(scored).withColumn(f"score_{kind}", positive_probability(F.col("probability")))
                      .drop("raw_features", "features", "rawPrediction", "probability", "prediction"))
        scored = scored.withColumn("risk_score", F.col(f"score_{settings['classifier']}"))
        test = scored.where(F.col("_test"))
        threshold = settings["alert_threshold"]
        for name, score, cut in (*((kind, f"score_{kind}", threshold) for kind in risk.CLASSIFIERS),
                                 ("rule_count", "rule_score", 1.0)):
            metrics = evaluation.binary_metrics(test, "label", score, probability=False)
            metrics.update(risk.precision_recall_at(test, score, cut))
            # Share flagged per planted kind (at most 6 rows): recall_<kind> for the fraud kinds,
            # flagged_<kind> (false alarms) for the legitimate ones.
            by_kind = {(r.kind, r.label): r.flagged for r in test.where(F.col("kind").isNotNull())
                       .groupBy("kind", "label").agg(F.avg((F.col(score) >= cut).cast("double")).alias("flagged"))
                       .collect()}
            shares = {f"{'recall' if label == 1 else 'flagged'}_{kind}": share
                      for (kind, label), share in sorted(by_kind.items())}
            records.append(runs.model_run(
                "risk", name, as_of, params, versions, {**metrics, **shares},
                {"threshold": cut, "labels": "generator ground truth (kind in generate.FRAUD_KINDS)",
                 "alerts_use_it": name == settings["classifier"]},
                baseline=name == "rule_count"))
            log.info(f"risk {name:<20} PR-AUC {metrics['pr_auc']:.3f}, AUC {metrics['auc']:.3f}, precision "
                  f"{metrics['precision']:.3f}, recall {metrics['recall']:.3f} at >= {cut} "
                  f"({int(metrics['flagged'])} of {int(metrics['n'])} test users flagged, base rate {metrics['base_rate']:.3f})")
            log.info("  flagged by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
        coefficients = dict(zip(risk.MODEL_SIGNALS, (round(float(c), 3) for c in
                                                     models["logistic_regression"].stages[-1].coefficients)))
        records[0]["details"]["standardised_coefficients"] = coefficients
        importances = dict(zip(risk.MODEL_SIGNALS, (round(float(v), 3) for v in
                                                    models["gbt"].stages[-1].featureImportances.toArray())))
        records[1]["details"]["feature_importances"] = importances
        data.unpersist()
    else:
        scored = signals.withColumn("risk_score", F.col("rule_score") / len(risk.rules())).withColumn(
            "label", F.lit(None).cast("double"))
        log.info("risk: no planted labels for these users: the rules alone rank them")
    run_id = records[0]["run_id"] if records else runs.make_run_id("risk", "rules", as_of, params)
    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    tag = {"run_id": F.lit(run_id), "as_of_date": F.to_date(F.lit(as_of))}
    lake.replace_partition(scored.select(*OUTPUT_COLUMNS).withColumns(tag), root, tables.GOLD_RISK_SIGNALS,
                           "as_of_date", as_of)
    alerts = risk.ranked_alerts(scored, "risk_score", settings["alert_threshold"])
    lake.replace_partition(alerts.select("alert_rank", "user_key", "risk_score", "reasons", "rule_score",
                                         *[s for s in risk.SIGNALS], "label").withColumns(tag),
                           root, tables.GOLD_RISK_ALERTS, "as_of_date", as_of)
    if records:
        runs.record(spark, root, records)
    n_alerts = lake.read_table(spark, root, tables.GOLD_RISK_ALERTS).where(f"as_of_date = '{as_of}'").count()
    log.info(f"risk: {n_alerts:,} alerts as of {as_of} -> {tables.GOLD_RISK_ALERTS.id}")
    for r in alerts.orderBy("alert_rank").limit(3).collect():
        log.info(f"  #{r.alert_rank} user {r.user_key}: score {r.risk_score:.3f}; " + "; ".join(r.reasons))
    scored.unpersist()
    return {"as_of": as_of, "alerts": n_alerts, "records": records}


def main(argv=None) -> int:
    parser = job_parser("risk", __doc__)
    parser.add_argument("--as-of", help="cutoff date (default: the day after the last event)")
    return run_job("risk", parser, lambda spark, config, a: run(spark, config, a.as_of), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

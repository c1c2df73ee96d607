"""monitor: is the data still right and are the models still good? Daily checks, drift and decay.

  ./spark-submit.sh monitor --as-of 2019-12-01 [--days 1] [--alert-file PATH]

Run every day after the ETL (and after `score`): it checks the --days days before --as-of.
  quality  each day's metrics from silver/events and quarantine/events against the same metric's
           trailing monitor.history_days days (median and MAD: ecomlake.monitoring): rows, rows per
           event type, users, events per session, null shares, the median price, a price index
           (products' prices against their own usual price) overall and per category, the
           late-arriving share and the quarantine share per reason
  rule     monitor.rules: named Spark SQL conditions every row must meet; a day whose failing share
           is above monitor.rule_max_failing_share alerts
  schema   input files set aside whole because their header (their columns) changed
           (quarantine/files, reason wrong_header), by the day they were ingested
  drift    each input feature of the newest propensity and churn models (gold/user_features) and
           their scores, in the snapshots of the checked days against the model's training
           snapshot (features) or the model's first scored date (scores): PSI and KS on the
           reference's quantile bins; alert when PSI > monitor.psi_alert
  decay    scores of a date whose labels have arrived (gold/user_labels of that date): their AUC
           against the model's test AUC; alert when it fell by more than monitor.max_auc_drop; and
           the ALS recommendations of a date whose horizon the events now cover: their NDCG@10
           against the run's test NDCG@10 (monitor.max_ndcg_drop)
Writes gold/monitoring (replaced per as_of_date: a re-run gives the same rows), and the alerts as
JSON to --alert-file (default monitor.alert_file, else <lake_root>/ops/alerts/monitor_<as-of>.json),
written on every run ("alerts": [] when all is quiet). Exit status 4 when anything alerts
(monitor.exit_on_alert), so a scheduler can act on it; 0 when quiet.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import evaluation, lake, monitoring, ops, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.dates import add_days
from ecomlake.errors import ConfigError, InputError
from ecomlake.models import classify

log = logging.getLogger(__name__)
JOB = "monitor"
OUTPUT_SCHEMA = ("monitored_date date, check string, metric string, column string, segment string, value double, "
                 "expected double, scale double, score double, threshold double, alert boolean, detail string")
# The models watched: task -> (score table, label column of gold/user_labels).
WATCHED_MODELS = {"propensity": (tables.GOLD_PROPENSITY_SCORES, "purchased_next"),
                  "churn": (tables.GOLD_CHURN_RISK, "churned")}
MAX_ALERTS_IN_FILE = 500  # the file names the first ones; gold/monitoring has them all


def check_rules(spark: SparkSession, events: DataFrame, rules: dict) -> dict[str, str]:
    """monitor.rules, each compiled against silver/events' columns now: a bad one is named."""
    for name, sql in rules.items():
        if not isinstance(sql, str) or not sql.strip():
            raise ConfigError(f"monitor.rules.{name} must be a Spark SQL condition (text), got {sql!r}")
        try:
            events.limit(0).select(F.expr(sql).cast("boolean")).schema
        except Exception as exc:  # AnalysisException / ParseException: the first line names the problem
            raise ConfigError(f"monitor.rules.{name} = {sql!r} is not a condition on silver/events: "
                              f"{str(exc).strip().splitlines()[0]}") from None
    return rules


def quality_rows(events: DataFrame, quarantine: DataFrame, settings: dict, first_day: str) -> DataFrame:
    metrics = monitoring.daily_quality_metrics(events, quarantine, settings["null_columns"],
                                               settings["segment_column"] or None, "price", settings["history_days"])
    scored = monitoring.robust_anomalies(metrics, ["metric"], history_days=settings["history_days"],
                                         min_history=settings["min_history_days"],
                                         threshold=settings["z_threshold"],
                                         min_scale_share=settings["min_relative_scale"])
    return scored.where(F.col("event_date") >= F.lit(first_day).cast("date")).select(
        F.col("event_date").alias("monitored_date"), F.lit("quality").alias("check"), "metric", "column", "segment",
        "value", F.col("median").alias("expected"), "scale", "z", F.lit(float(settings["z_threshold"])),
        "alert", F.to_json(F.struct("kind", "n", "history_days", "mad")))


def rule_rows(events: DataFrame, rules: dict, max_share: float) -> DataFrame:
    return monitoring.rule_failures(events, rules).select(
        "event_date", F.lit("rule"), F.concat(F.lit("rule:"), "rule"), "rule", F.lit(""), "failing_share",
        F.lit(0.0), F.lit(None).cast("double"), "failing_share", F.lit(float(max_share)),
        F.col("failing_share") > max_share, F.to_json(F.struct("n")))


def schema_rows(spark: SparkSession, root: str, first_day: str, as_of: str) -> DataFrame | None:
    if not lake.table_exists(spark, tables.QUARANTINE_FILES.path(root)):
        return None
    files = lake.read_table(spark, root, tables.QUARANTINE_FILES)
    day = F.to_date("ingested_at")
    return files.where((F.col("reason") == "wrong_header") & (day >= first_day) & (day < as_of)).select(
        day, F.lit("schema"), F.lit("files_with_changed_columns"), F.lit("*"), "source_file", F.lit(1.0),
        F.lit(0.0), F.lit(None).cast("double"), F.lit(1.0), F.lit(0.0), F.lit(True), "detail")


def _snapshot_dates(frame: DataFrame, low: str, high: str) -> list[str]:
    """The as_of_date values in [low, high] (one row per date reaches the driver)."""
    rows = (frame.where(F.col("as_of_date").between(low, high)).select("as_of_date").distinct()
            .orderBy("as_of_date").collect())
    return [r[0].isoformat() for r in rows]


def _drift_rows(spark, reference: DataFrame, current: DataFrame, columns: list[str], bins: int, psi_alert: float,
                snapshot: str, segment: str, detail: dict) -> DataFrame:
    return monitoring.drift(reference, current, columns, bins).select(
        F.lit(snapshot).cast("date"), F.lit("drift"), F.concat(F.lit("psi:"), "feature"), "feature", F.lit(segment),
        "psi", F.lit(0.0), F.lit(None).cast("double"), "psi", F.lit(float(psi_alert)), F.col("psi") > psi_alert,
        F.to_json(F.struct("ks", "reference_rows", "current_rows", *[F.lit(v).alias(k) for k, v in detail.items()])))


def model_rows(spark: SparkSession, root: str, settings: dict, first_day: str, as_of: str) -> list[DataFrame]:
    """Drift of the watched models' inputs and scores, and their decay once labels arrive."""
    if not lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(root)):
        log.info("monitor: no gold/model_runs yet, so no model to watch")
        return []
    out, bins, psi_alert = [], settings["drift_bins"], settings["psi_alert"]
    features = (lake.read_table(spark, root, tables.GOLD_USER_FEATURES)
                if lake.table_exists(spark, tables.GOLD_USER_FEATURES.path(root)) else None)
    inputs = [c for c in (*classify.LOG_SCALE, *classify.LINEAR) if features is not None and c in features.columns]
    by_reference: dict[str, list[str]] = {}
    for task, (score_table, label) in WATCHED_MODELS.items():
        try:
            run = runs.find(spark, root, task)
        except InputError:
            continue
        trained_on = run["as_of_date"].isoformat()
        by_reference.setdefault(trained_on, []).append(task)
        if lake.table_exists(spark, score_table.path(root)):
            scores = lake.read_table(spark, root, score_table).where(F.col("run_id") == run["run_id"])
            scored = _snapshot_dates(scores, "0001-01-01", as_of)
            for snapshot in [d for d in scored[1:] if d > first_day]:
                out.append(_drift_rows(spark, scores.where(F.col("as_of_date") == scored[0]),
                                       scores.where(F.col("as_of_date") == snapshot), ["probability"], bins,
                                       psi_alert, snapshot, task, {"reference_date": scored[0]}))
            out += decay_rows(spark, root, task, score_table, label, settings, first_day, as_of)
    out += recommendation_decay_rows(spark, root, settings, first_day, as_of)
    if features is not None:
        for trained_on, tasks in by_reference.items():
            reference = features.where(F.col("as_of_date") == trained_on)
            for snapshot in [d for d in _snapshot_dates(features, add_days(first_day, 1), as_of) if d != trained_on]:
                out.append(_drift_rows(spark, reference, features.where(F.col("as_of_date") == snapshot), inputs,
                                       bins, psi_alert, snapshot, ",".join(tasks), {"reference_date": trained_on}))
    return out


def decay_rows(spark, root, task, score_table, label, settings, first_day, as_of) -> list[DataFrame]:
    """AUC of each scored date in the last history_days whose labels exist, against its model's test AUC."""
    if not lake.table_exists(spark, tables.GOLD_USER_LABELS.path(root)):
        return []
    scores = lake.read_table(spark, root, score_table)
    labels = lake.read_table(spark, root, tables.GOLD_USER_LABELS)
    low = add_days(first_day, -settings["history_days"])
    labelled = set(_snapshot_dates(labels, low, as_of))
    out = []
    for scored_on in [d for d in _snapshot_dates(scores, low, as_of) if d in labelled]:
        day_scores = scores.where(F.col("as_of_date") == scored_on)
        run_ids = [r[0] for r in day_scores.select("run_id").distinct().limit(2).collect()]
        model_runs = lake.read_table(spark, root, tables.GOLD_MODEL_RUNS).where(F.col("run_id").isin(run_ids))
        trained = {r["run_id"]: r["metrics"].get("auc") for r in model_runs.select("run_id", "metrics").collect()}
        joined = day_scores.join(labels.where((F.col("as_of_date") == scored_on) & F.col(label).isNotNull())
                                 .select("user_key", F.col(label).cast("double").alias("label")), "user_key")
        if len(run_ids) != 1 or trained.get(run_ids[0]) is None or not joined.limit(1).count():
            continue
        live = evaluation.binary_metrics(joined, "label", "probability")
        drop = trained[run_ids[0]] - live["auc"]
        out.append(spark.createDataFrame([(date.fromisoformat(scored_on), "decay", "auc", "probability", task,
                                           float(live["auc"]), float(trained[run_ids[0]]), None, float(drop),
                                           float(settings["max_auc_drop"]), bool(drop > settings["max_auc_drop"]),
                                           json.dumps({"run_id": run_ids[0], "rows": int(live["n"]),
                                                       "base_rate": live["base_rate"]}))], OUTPUT_SCHEMA))
    return out


def recommendation_decay_rows(spark, root, settings, first_day, as_of) -> list[DataFrame]:
    """NDCG@10 of the ALS recommendations of each scored date in the last history_days whose
    horizon the events now cover (what the users then viewed, carted or bought: the truth `train
    recommend` measures on), against the run's test NDCG@10."""
    if not lake.table_exists(spark, tables.GOLD_RECOMMENDATIONS.path(root)):
        return []
    from ecomlake import features
    from ecomlake.models import recommend

    k = 10
    recommendations = lake.read_table(spark, root, tables.GOLD_RECOMMENDATIONS).where(F.col("source") == "als")
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    out = []
    for scored_on in _snapshot_dates(recommendations, add_days(first_day, -settings["history_days"]), as_of):
        day = recommendations.where(F.col("as_of_date") == scored_on)
        run_ids = [r[0] for r in day.select("run_id").distinct().limit(2).collect()]
        rows = (lake.read_table(spark, root, tables.GOLD_MODEL_RUNS).where(F.col("run_id").isin(run_ids))
                .select("run_id", "params", "metrics").collect())
        if len(run_ids) != 1 or len(rows) != 1 or rows[0]["metrics"].get(f"ndcg@{k}") is None:
            continue
        horizon = json.loads(rows[0]["params"]).get("horizon_days")
        if not horizon or not features.horizon_covered(events, scored_on, horizon):
            continue
        truth = recommend.truth_items(events, scored_on, horizon)
        live = evaluation.ranking_metrics(day, truth, k, 0, user="user_key", item="product_id")
        trained = float(rows[0]["metrics"][f"ndcg@{k}"])
        drop = trained - live[f"ndcg@{k}"]
        out.append(spark.createDataFrame([(date.fromisoformat(scored_on), "decay", f"ndcg@{k}", "product_id",
                                           "recommend", float(live[f"ndcg@{k}"]), trained, None, float(drop),
                                           float(settings["max_ndcg_drop"]), bool(drop > settings["max_ndcg_drop"]),
                                           json.dumps({"run_id": run_ids[0], "horizon_days": horizon,
                                                       "users": int(live["users_evaluated"])}))], OUTPUT_SCHEMA))
    return out


def alert_file_path(root: str, settings: dict, as_of: str, alert_file: str | None) -> str:
    return alert_file or settings["alert_file"] or f"{root.rstrip('/')}/ops/alerts/monitor_{as_of}.json"


def run(spark: SparkSession, config: dict, as_of: str, days: int | None = None, alert_file: str | None = None) -> dict:
    root, settings = config["lake_root"], config["monitor"]
    as_of = parse_as_of(as_of)
    days = settings["days"] if days is None else days
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    first_day, history_start = add_days(as_of, -days), add_days(as_of, -days - settings["history_days"])
    run_id, started = ops.new_run_id(JOB), datetime.now(timezone.utc)
    versions = runs.input_versions(spark, root, [tables.SILVER_EVENTS])
    window = F.col("event_date").between(F.lit(history_start).cast("date"), F.lit(add_days(as_of, -1)).cast("date"))
    events = lake.read_table(spark, root, tables.SILVER_EVENTS).where(window)
    rules = check_rules(spark, events, settings["rules"])
    events = events.persist(StorageLevel.MEMORY_AND_DISK)  # read by the metrics and the rules
    if not events.where(F.col("event_date") >= F.lit(first_day).cast("date")).limit(1).count():
        raise InputError(f"silver/events has no events from {first_day} to before {as_of}: nothing to monitor "
                         "(run the ETL for those days first)")
    if lake.table_exists(spark, tables.QUARANTINE_EVENTS.path(root)):
        quarantine = (lake.read_table(spark, root, tables.QUARANTINE_EVENTS)
                      .select(F.col("_event_date").alias("event_date"), "reason").where(window))
    else:
        quarantine = spark.createDataFrame([], "event_date date, reason string")
    parts = [quality_rows(events, quarantine, settings, first_day),
             rule_rows(events.where(F.col("event_date") >= F.lit(first_day).cast("date")), rules,
                       settings["rule_max_failing_share"])]
    schema = schema_rows(spark, root, first_day, as_of)
    parts += ([schema] if schema is not None else []) + model_rows(spark, root, settings, first_day, as_of)
    rows = parts[0].toDF(*[c.split()[0] for c in OUTPUT_SCHEMA.split(", ")])
    for part in parts[1:]:
        rows = rows.union(part.toDF(*rows.columns))
    table = (rows.withColumn("as_of_date", F.lit(as_of).cast("date")).withColumn("run_id", F.lit(run_id)))
    with ops.job_lease(spark, config, JOB, run_id):
        lake.replace_partition(table, root, tables.GOLD_MONITORING, "as_of_date", as_of)
    events.unpersist()
    written = lake.read_table(spark, root, tables.GOLD_MONITORING).where(F.col("as_of_date") == as_of)
    counts = {r["check"]: (r["n"], r["alerts"]) for r in written.groupBy("check").agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.col("alert").cast("int")).alias("alerts")).collect()}
    alerts = [r.asDict() for r in written.where("alert").orderBy("monitored_date", "check", "metric")
              .limit(MAX_ALERTS_IN_FILE).collect()]
    n_alerts = sum(a for _, a in counts.values())
    path = alert_file_path(root, settings, as_of, alert_file)
    lake.write_text_file(spark, path, json.dumps({
        "job": JOB, "as_of": as_of, "days_checked": [add_days(first_day, i) for i in range(days)], "run_id": run_id,
        "status": "alert" if n_alerts else "ok", "alert_count": n_alerts,
        "alerts": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in a.items()
                    if k not in ("as_of_date", "run_id")} for a in alerts]}, indent=2))
    for a in alerts[:20]:
        log.warning("monitor alert: %s %s %s %s = %.4g (expected %s, score %.2f > %.2f)", a["monitored_date"],
                    a["check"], a["metric"], a["column"], a["value"] if a["value"] is not None else float("nan"),
                    "n/a" if a["expected"] is None else f"{a['expected']:.4g}", a["score"] or 0.0, a["threshold"])
    log.info("monitor: %s to %s, %s; %d alert(s); alerts in %s", first_day, add_days(as_of, -1),
             ", ".join(f"{c} {n} rows ({a} alerts)" for c, (n, a) in sorted(counts.items())), n_alerts, path)
    checked_days = [add_days(first_day, i) for i in range(days)]
    measured = against_planted(spark, config, written, checked_days)
    ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                   args={"as_of": as_of, "days": days}, input_versions=versions,
                   output_versions={tables.GOLD_MONITORING.id: lake.table_version(spark, root, tables.GOLD_MONITORING)},
                   counts={c: n for c, (n, _) in counts.items()},
                   details={"alerts": n_alerts, "alert_file": path, "against_planted": measured})
    return {"as_of": as_of, "days": days, "alerts": n_alerts if settings["exit_on_alert"] else 0,
            "alerts_found": n_alerts, "alert_file": path, "rows": {c: n for c, (n, _) in counts.items()},
            "against_planted": measured}


def against_planted(spark: SparkSession, config: dict, written: DataFrame, days: list[str]) -> dict | None:
    """When the lake's data was generated (generate.output holds its ground truth), the daily
    alerts (quality, rule, schema) against the planted changes: none planted means every alert is
    false. Drift and decay are about models, not days, and are left out."""
    text = lake.read_text_file(spark, f"{config['generate']['output']}/_ground_truth/generator.json")
    if text is None:
        return None
    changes = json.loads(text).get("change_points") or []
    alerts = [(r[0].isoformat(), r[1]) for r in written.where(F.col("alert") & F.col("check").isin(
        "quality", "rule", "schema")).select("monitored_date", "column").distinct().collect()]
    measured = monitoring.planted_detection(alerts, changes, days)
    found = "; ".join(f"{c['kind']} flagged on {c['days_flagged']} of its {c['planted_days']} days"
                      + (f" ({c['first_flagged']} .. {c['last_flagged']})" if c["days_flagged"] else "")
                      for c in measured["changes"])
    log.info("monitor against the generator's planted changes: %d of %d found (%s); %d false alert(s) (day x "
             "column), %d of %d quiet days with one%s", measured["changes_found"], measured["changes_planted"],
             found or "none planted", measured["false_alerts"], measured["quiet_days_with_false_alert"],
             measured["quiet_days"],
             f": {', '.join(measured['false_alert_list'][:10])}" if measured["false_alerts"] else "")
    return measured


def main(argv=None) -> int:
    parser = job_parser(JOB, __doc__)
    parser.add_argument("--as-of", required=True, help="check the --days days before this date")
    parser.add_argument("--days", type=int, help="days checked (default: monitor.days, 1)")
    parser.add_argument("--alert-file", help="where the alerts go as JSON (default: monitor.alert_file)")
    return run_job(JOB, parser, lambda spark, config, a: run(spark, config, a.as_of, a.days, a.alert_file), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

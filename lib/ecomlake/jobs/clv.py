"""clv: customer lifetime value with BG/NBD + Gamma-Gamma, evaluated on a holdout period.

  ./spark-submit.sh clv --orders cdnow                       # 39 + 39 weeks, the papers' split
  ./spark-submit.sh clv --orders cdnow_sample                # the 2,357-customer sample of the papers
  ./spark-submit.sh clv --orders events --calibration-end 2019-11-02 --holdout-end 2019-11-30

--orders names the orders table: bronze/cdnow_orders or bronze/cdnow_sample_orders
(`ingest --source cdnow|cdnow_sample`), or the purchases of silver/events (customer = user_key,
amount = price). Per customer (frequency, recency, age, spend in weeks) the job fits BG/NBD and
Gamma-Gamma by maximum likelihood on the calibration period, then writes, replacing the rows of
that source (idempotent):
  gold/customer_value    per customer: the summary, P(alive), expected purchases and spend over
                         clv.horizon_weeks, CLV (undiscounted), predicted vs actual holdout purchases
  gold/clv_calibration   predicted vs actual holdout purchases by calibration frequency
  gold/model_runs        task 'clv': fitted parameters, holdout error vs a naive rate baseline
"""
from __future__ import annotations

import logging
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import EcomlakeError
from ecomlake.models import clv

log = logging.getLogger(__name__)

# orders source -> (table, default calibration end, default holdout end)
ORDERS = {
    "cdnow": (tables.BRONZE_CDNOW_ORDERS, "1997-09-30", "1998-06-30"),
    "cdnow_sample": (tables.BRONZE_CDNOW_SAMPLE_ORDERS, "1997-09-30", "1998-06-30"),
    "events": (tables.SILVER_EVENTS, None, None),
}


def orders_of(spark: SparkSession, root: str, source: str) -> DataFrame:
    table = ORDERS[source][0]
    df = lake.read_table(spark, root, table)
    if source == "events":
        return (df.where(F.col("event_type") == "purchase")
                .select(F.col("user_key").alias("customer_id"), F.col("event_date").alias("order_date"),
                        F.col("price").alias("amount")))
    return df.select("customer_id", "order_date", "amount")


def run(spark: SparkSession, config: dict, source: str, calibration_end: str | None = None,
        holdout_end: str | None = None) -> dict:
    if source not in ORDERS:
        raise EcomlakeError(f"unknown --orders '{source}'; known: {', '.join(ORDERS)}")
    table, default_end, default_holdout = ORDERS[source]
    calibration_end = parse_as_of(calibration_end or default_end or _missing("--calibration-end", source),
                                  "--calibration-end")
    holdout_end = parse_as_of(holdout_end or default_holdout or _missing("--holdout-end", source), "--holdout-end")
    if holdout_end <= calibration_end:
        raise EcomlakeError(f"--holdout-end {holdout_end} must be after --calibration-end {calibration_end}")
    root = config["lake_root"]
    horizon = config["clv"]["horizon_weeks"]
    versions = runs.input_versions(spark, root, [table])
    summary = clv.rfm_summary(orders_of(spark, root, source), calibration_end, holdout_end).cache()
    if summary.limit(1).count() == 0:
        raise EcomlakeError(f"{table.id} has no orders on or before {calibration_end}")
    bgnbd = clv.fit_bgnbd(summary)
    gamma_gamma = clv.fit_gamma_gamma(summary, config["clv"]["max_fit_rows"], config["train"]["seed"])
    params = {"source": source, "calibration_end": calibration_end, "holdout_end": holdout_end,
              "horizon_weeks": horizon, "unit": "week"}
    run_id = runs.make_run_id("clv", "bg_nbd_gamma_gamma", calibration_end, params)
    values = clv.customer_values(summary, bgnbd, gamma_gamma, horizon).cache()
    metrics = clv.holdout_metrics(values)
    tag = {"source": F.lit(source), "run_id": F.lit(run_id)}
    lake.replace_partition(values.withColumns(tag), root, tables.GOLD_CUSTOMER_VALUE, "source", source)
    lake.replace_partition(clv.calibration_table(values).withColumns(tag), root, tables.GOLD_CLV_CALIBRATION,
                           "source", source)
    fitted = {f"bgnbd_{k}": v for k, v in bgnbd.items() if k in ("r", "alpha", "a", "b", "log_likelihood")}
    fitted |= {f"gamma_gamma_{k}": v for k, v in gamma_gamma.items() if k in ("p", "q", "v", "log_likelihood")}
    runs.record(spark, root, [
        runs.model_run("clv", "bg_nbd_gamma_gamma", calibration_end, params, versions, {**metrics, **fitted},
                       {"bgnbd": bgnbd, "gamma_gamma": gamma_gamma}, run_id=run_id),
        runs.model_run("clv", "naive_rate", calibration_end, params, versions,
                       {"mae": metrics["naive_rate_mae"], "customers": metrics["customers"]}, baseline=True)])
    written = lake.read_table(spark, root, tables.GOLD_CUSTOMER_VALUE).where(F.col("source") == source).count()
    log.info(f"clv {source}: {written:,} customers, calibration to {calibration_end}, holdout to {holdout_end}")
    log.info("  BG/NBD      " + ", ".join(f"{k}={bgnbd[k]:.4g}" for k in ("r", "alpha", "a", "b", "log_likelihood")))
    log.info("  Gamma-Gamma " + ", ".join(f"{k}={gamma_gamma[k]:.4g}" for k in ("p", "q", "v", "log_likelihood")))
    log.info(f"  holdout purchases: predicted {metrics['predicted_holdout_purchases']:,.0f} vs actual "
          f"{metrics['actual_holdout_purchases']:,.0f}; per-customer MAE {metrics['mae']:.3f} "
          f"(naive rate {metrics['naive_rate_mae']:.3f}), correlation {metrics['correlation']:.3f}")
    summary.unpersist()
    values.unpersist()
    return {"run_id": run_id, "customers": written, "bgnbd": bgnbd, "gamma_gamma": gamma_gamma, "metrics": metrics}


def _missing(flag: str, source: str):
    raise EcomlakeError(f"--orders {source} needs {flag} (YYYY-MM-DD)")


def main(argv=None) -> int:
    parser = job_parser("clv", __doc__)
    parser.add_argument("--orders", required=True, choices=tuple(ORDERS), help="which orders table")
    parser.add_argument("--calibration-end", help="last day of the calibration period (cdnow: 1997-09-30)")
    parser.add_argument("--holdout-end", help="last day of the holdout period (cdnow: 1998-06-30)")
    return run_job("clv", parser, lambda spark, config, a: run(spark, config, a.orders, a.calibration_end,
                                                                 a.holdout_end), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

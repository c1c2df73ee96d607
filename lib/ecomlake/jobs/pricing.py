"""pricing: price elasticity and promotion lift on store sales; inventory suggestions per product.

  ./spark-submit.sh pricing [--as-of 2019-12-01] [--holdout-weeks 12]

Runs each part whose input is in the lake (and says which it skipped):
- Dominick's orange juice (bronze/dominicks_oj, `ingest --source dominicks_oj`): per brand, own-
  and cross-price elasticity and the lift of a deal and of a feature ad (log-log regression with
  store fixed effects: ecomlake.models.pricing), fitted on all but the last --holdout-weeks weeks;
  on those weeks, its unit forecasts (at the prices and promotions that were run) against the
  store-brand mean. -> gold/price_elasticity (source dominicks_oj), gold/model_runs (task pricing)
  With bronze/dominicks_stores (`ingest --source dominicks_stores`): per store, its own-price
  elasticity against the other stores' for the same brands, and how much of that difference the store's
  demographics and competition explain (weighted regression, in sample and leave-one-store-out,
  against the noise of the estimates) -> gold/store_elasticity, gold/model_runs (task store_elasticity)
- generated clickstream (silver/events): elasticity of conversion to price per category (the
  `train elasticity` model) -> gold/price_elasticity (source events)
- inventory (gold/forecasts and gold/daily_sales of --as-of, from `score`): per product, demand
  over pricing.lead_time_days, safety stock for pricing.service_level, reorder point
  -> gold/inventory_suggestions (partition as_of_date)
Each output is replaced for its source / date: re-running changes nothing.
"""
from __future__ import annotations

import logging
import sys

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import datasets, evaluation, features, lake, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import ConfigError
from ecomlake.models import elasticity, pricing

log = logging.getLogger(__name__)

ELASTICITY_COLUMNS = ["source", "segment", "elasticity", "ci_low", "ci_high", "cross_elasticity", "deal_lift",
                      "feature_lift", "rows", "run_id"]


def store_sales(spark: SparkSession, config: dict, holdout_weeks: int) -> dict:
    root = config["lake_root"]
    frame = pricing.store_sales_frame(lake.read_table(spark, root, tables.BRONZE_DOMINICKS_OJ)).persist(
        StorageLevel.MEMORY_AND_DISK)
    last_week = frame.agg(F.max("week")).first()[0]
    cutoff = last_week - holdout_weeks
    train, test = frame.where(F.col("week") <= cutoff), frame.where(F.col("week") > cutoff)
    params = {"holdout_weeks": holdout_weeks, "train_last_week": cutoff, "regressors": pricing.REGRESSORS,
              "fixed_effects": "store"}
    versions = runs.input_versions(spark, root, [tables.BRONZE_DOMINICKS_OJ])
    run_id = runs.make_run_id("pricing", "loglog_store_fe", None, params)
    fits = pricing.fit_brands(train).persist()
    predicted = pricing.predict_units(test, fits, train).persist()
    metrics = {f"model_{k}": v for k, v in evaluation.forecast_metrics(predicted, "units", "forecast").items()}
    baseline = {f"store_brand_mean_{k}": v for k, v in
                evaluation.forecast_metrics(predicted, "units", "store_brand_mean").items()}
    rows = fits.orderBy("brand").collect()  # 11 brands
    metrics["mean_elasticity"] = sum(r.elasticity for r in rows) / len(rows)
    runs.record(spark, root, [runs.model_run("pricing", "loglog_store_fe", None, params, versions,
                                             {**metrics, **baseline}, {"brands": [r.asDict() for r in rows]},
                                             run_id=run_id)])
    out = fits.select(F.lit("dominicks_oj").alias("source"), F.col("brand_name").alias("segment"), "elasticity",
                      (F.col("elasticity") - 1.96 * F.col("elasticity_std_error")).alias("ci_low"),
                      (F.col("elasticity") + 1.96 * F.col("elasticity_std_error")).alias("ci_high"),
                      "cross_elasticity", "deal_lift", "feature_lift", "rows", F.lit(run_id).alias("run_id"))
    lake.replace_partition(out, root, tables.GOLD_PRICE_ELASTICITY, "source", "dominicks_oj")
    log.info(f"pricing dominicks_oj: {len(rows)} brands, trained to week {cutoff}, {holdout_weeks} hold-out weeks")
    for r in rows:
        log.info(f"  {r.brand_name:<24} elasticity {r.elasticity:6.2f} (se {r.elasticity_std_error:.2f}), cross "
              f"{r.cross_elasticity:5.2f}, deal lift {r.deal_lift:+.0%}, feature lift {r.feature_lift:+.0%}")
    log.info(f"  hold-out WAPE: model {metrics['model_wape']:.3f} vs store-brand mean {baseline['store_brand_mean_wape']:.3f}")
    for df in (fits, predicted, frame):
        df.unpersist()
    return {"run_id": run_id, "metrics": {**metrics, **baseline}, "brands": len(rows)}


def store_elasticities(spark: SparkSession, config: dict) -> dict:
    """Per store, its price elasticity; then how much of the difference between stores their
    demographics and competition (bronze/dominicks_stores) explain, in sample and leave-one-out."""
    root = config["lake_root"]
    frame = pricing.store_sales_frame(lake.read_table(spark, root, tables.BRONZE_DOMINICKS_OJ))
    demographics = list(datasets.DOMINICKS_STORE_COLUMNS)
    fits = pricing.fit_stores(frame).join(
        lake.read_table(spark, root, tables.BRONZE_DOMINICKS_STORES).select("store", *demographics), "store", "left")
    stores = fits.toPandas()  # one row per store (83)
    explained, metrics = pricing.explain_store_elasticities(stores, demographics)
    coefficients = metrics.pop("coefficients")
    params = {"store_effect": "store x brand elasticity minus the brand's median, weighted mean over brands",
              "regressors": pricing.REGRESSORS,
              "explained_by": demographics, "weights": "1 / se^2"}
    versions = runs.input_versions(spark, root, [tables.BRONZE_DOMINICKS_OJ, tables.BRONZE_DOMINICKS_STORES])
    run_id = runs.make_run_id("store_elasticity", "wls_demographics", None, params)
    runs.record(spark, root, [
        runs.model_run("store_elasticity", "wls_demographics", None, params, versions, metrics,
                       {"coefficients": coefficients, "stores_without_demographics":
                        int(stores[demographics].isna().any(axis=1).sum())}, run_id=run_id),
        runs.model_run("store_elasticity", "mean_elasticity", None, {"weights": "1 / se^2"}, versions,
                       {"loo_r2": metrics["baseline_loo_r2"], "mean_elasticity": metrics["mean_elasticity"]},
                       baseline=True)])
    table = datasets.from_pandas(spark, explained[["store", "elasticity", "elasticity_std_error", "rows", "brands",
                                                   *demographics, "fitted", "loo_fitted"]]
                                 .rename(columns={"fitted": "explained_elasticity",
                                                  "loo_fitted": "explained_elasticity_loo"}))
    lake.overwrite_table(table.withColumn("run_id", F.lit(run_id)), root, tables.GOLD_STORE_ELASTICITY)
    strongest = sorted(coefficients.items(), key=lambda kv: -abs(kv[1]["t"]))[:3]
    log.info("pricing stores: %d stores, elasticity %+.2f against the brands' median store on average, %.2f "
             "between stores (sampling se %.2f, so "
             "%.0f %% of that spread is real); demographics explain R2 %.2f in sample, %.2f leave-one-store-out "
             "(the mean alone: %.2f), i.e. %.0f %% of the real difference out of sample; strongest: %s",
             metrics["stores"], metrics["mean_elasticity"], metrics["sd_between_stores"], metrics["mean_sampling_se"],
             100 * metrics["reliability"], metrics["r2"], metrics["loo_r2"], metrics["baseline_loo_r2"],
             100 * metrics["loo_share_of_true_difference_explained"],
             ", ".join(f"{f} {c['per_sd']:+.2f} per sd (t {c['t']:.1f})" for f, c in strongest))
    return {"run_id": run_id, "metrics": metrics, "coefficients": coefficients}


def clickstream(spark: SparkSession, config: dict, as_of: str | None) -> dict:
    root = config["lake_root"]
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    if as_of:
        events = features.events_before(events, as_of)
    estimates = elasticity.elasticities(elasticity.price_bins(events)).where(~F.isnan("elasticity"))
    run_id = runs.make_run_id("pricing", "log_log_wls", as_of, {"source": "events"})
    out = estimates.select(F.lit("events").alias("source"), F.col("category_code").alias("segment"), "elasticity",
                           "ci_low", "ci_high", F.lit(None).cast("double").alias("cross_elasticity"),
                           F.lit(None).cast("double").alias("deal_lift"), F.lit(None).cast("double").alias("feature_lift"),
                           F.col("bins").alias("rows"), F.lit(run_id).alias("run_id"))
    lake.replace_partition(out, root, tables.GOLD_PRICE_ELASTICITY, "source", "events")
    n = lake.read_table(spark, root, tables.GOLD_PRICE_ELASTICITY).where("source = 'events'").count()
    log.info(f"pricing events: elasticity of conversion for {n} categories -> {tables.GOLD_PRICE_ELASTICITY.id}")
    return {"categories": n}


def inventory(spark: SparkSession, config: dict, as_of: str) -> dict:
    root, settings = config["lake_root"], config["pricing"]
    hint = f"score --as-of {as_of}"
    forecasts = (lake.read_partition(spark, root, tables.GOLD_FORECASTS, "as_of_date", as_of, hint)
                 .where(F.col("level") == "product"))
    history = (lake.read_partition(spark, root, tables.GOLD_DAILY_SALES, "as_of_date", as_of, f"features --as-of {as_of}")
               .where(F.col("level") == "product"))
    out = pricing.inventory_suggestions(forecasts, history, settings["lead_time_days"], settings["service_level"])
    lake.replace_partition(out.withColumn("as_of_date", F.to_date(F.lit(as_of))), root, tables.GOLD_INVENTORY,
                           "as_of_date", as_of)
    n = lake.read_table(spark, root, tables.GOLD_INVENTORY).where(f"as_of_date = '{as_of}'").count()
    log.info(f"pricing inventory: {n:,} products, lead time {settings['lead_time_days']} days, service level "
          f"{settings['service_level']:.0%} -> {tables.GOLD_INVENTORY.id}")
    return {"products": n}


def run(spark: SparkSession, config: dict, as_of: str | None = None, holdout_weeks: int = 12) -> dict:
    if holdout_weeks < 1:
        raise ConfigError(f"--holdout-weeks must be at least 1, got {holdout_weeks}")
    as_of = parse_as_of(as_of) if as_of else None
    root, out = config["lake_root"], {}
    if lake.table_exists(spark, tables.BRONZE_DOMINICKS_OJ.path(root)):
        out["dominicks_oj"] = store_sales(spark, config, holdout_weeks)
        if lake.table_exists(spark, tables.BRONZE_DOMINICKS_STORES.path(root)):
            out["dominicks_stores"] = store_elasticities(spark, config)
        else:
            log.info("pricing: skipped store elasticities: no bronze/dominicks_stores "
                     "(run `ingest --source dominicks_stores`)")
    else:
        log.info("pricing: skipped store sales: no bronze/dominicks_oj (run `ingest --source dominicks_oj`)")
    if lake.table_exists(spark, tables.SILVER_EVENTS.path(root)):
        out["events"] = clickstream(spark, config, as_of)
    else:
        log.info("pricing: skipped clickstream elasticity: no silver/events (run `pipeline`)")
    if as_of and lake.table_exists(spark, tables.GOLD_FORECASTS.path(root)):
        out["inventory"] = inventory(spark, config, as_of)
    else:
        log.info("pricing: skipped inventory: it needs --as-of and gold/forecasts of that date (run `score`)")
    if not out:
        raise ConfigError("pricing found none of its inputs: see the lines above for the job to run first")
    return out


def main(argv=None) -> int:
    parser = job_parser("pricing", __doc__)
    parser.add_argument("--as-of", help="date of the forecasts to plan inventory from (and events cutoff)")
    parser.add_argument("--holdout-weeks", type=int, default=12, help="store sales weeks held out (default 12)")
    return run_job("pricing", parser, lambda spark, config, a: run(spark, config, a.as_of, a.holdout_weeks), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

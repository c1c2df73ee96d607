"""score: apply the latest (or a named) trained model to the features of a date; gold score tables.

  ./spark-submit.sh score --as-of 2019-12-01 [--task all|recommend|propensity|churn|segments|forecast]
                          [--run-id RUN_ID]

Needs `features --as-of DATE` and a `train` run of each task scored. Writes, each partitioned by
as_of_date and replaced on a re-run (idempotent), every row tagged with the model's run_id:
  gold/recommendations     top-k products per user (ALS; users ALS has not seen get the
                           most-popular list, source = 'popularity')
  gold/propensity_scores   P(purchase in the horizon) per user, with its decile (10 = highest);
                           from the logistic regression or, when it is the newest run (or named),
                           the Wide & Deep model of `train_deep`
  gold/churn_risk          P(no purchase in the horizon) per past buyer, with its decile
  gold/segments            RFM scores and cell, KMeans segment and its name, per buyer
  gold/forecasts           units per product and per category for each of the next days, with
                           seasonal naive, the recent level (last 7 days' mean), the band of
                           the model's backtest errors (forecast_low..forecast_high, 90 %) and
                           departs_recent_level: the band leaves out the recent level (check it)
--task two_stage (not part of `all`: heavier; needs a `train recommend` run with train.two_stage) writes
  gold/two_stage_recommendations   top-k products per user from the two-stage recommender (its
                           generators refitted as of the date, its ranker ordering them), each
                           with top_features: the 3 features that pushed it (SHAP contributions)
--task next_item (not part of `all`: it needs a `train_deep session_gru` or `session_attention`
  run; the newest, or --run-id) writes
  gold/next_item_recommendations   for each user active in the 7 days before the date, the
                           session model's top-k next products after their newest session
"""
from __future__ import annotations

import json
import logging
import sys

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import features, lake, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.dates import add_days
from ecomlake.deep import encode, forecast_windows, scoring, sequences
from ecomlake.errors import EcomlakeError
from ecomlake.models import classify, direct_forecast, forecast, ranker, recommend, segments, two_stage

log = logging.getLogger(__name__)

TASKS = ("recommend", "propensity", "churn", "segments", "forecast")
NEXT_ITEM_ACTIVE_DAYS = 7
OUTPUT = {"recommend": tables.GOLD_RECOMMENDATIONS, "propensity": tables.GOLD_PROPENSITY_SCORES,
          "churn": tables.GOLD_CHURN_RISK, "segments": tables.GOLD_SEGMENTS, "forecast": tables.GOLD_FORECASTS,
          "next_item": tables.GOLD_NEXT_ITEM, "two_stage": tables.GOLD_TWO_STAGE_RECOMMENDATIONS}


def _decile(df: DataFrame, column: str) -> Column:
    """1..10 by approximate deciles of column (9 cut points reach the driver, not the rows)."""
    edges = df.approxQuantile(column, [i / 10 for i in range(1, 10)], 1e-4)
    out = F.lit(1)
    for edge in edges:
        out = out + F.when(F.col(column) > edge, 1).otherwise(0)
    return out.cast("int")


def _tag(df: DataFrame, run: dict, as_of: str) -> DataFrame:
    return df.withColumn("run_id", F.lit(run["run_id"])).withColumn("as_of_date", F.to_date(F.lit(as_of)))


def score_recommend(spark, root, run, as_of, user_features) -> DataFrame:
    from pyspark.ml.recommendation import ALSModel

    k = run["params"]["k"]
    path = run["model_path"]
    model = ALSModel.load(f"{path}/als")
    user_index, item_index = spark.read.parquet(f"{path}/user_index"), spark.read.parquet(f"{path}/item_index")
    users = user_features.select("user_key")
    als = recommend.als_recommend(model, user_index, item_index, users, k).withColumn("source", F.lit("als"))
    interactions = lake.read_partition(spark, root, tables.GOLD_INTERACTIONS, "as_of_date", as_of,
                                       f"features --as-of {as_of}")
    unseen = users.join(user_index, "user_key", "left_anti")
    popular = recommend.popularity(interactions, unseen, k).withColumn("source", F.lit("popularity"))
    return als.unionByName(popular)


def score_two_stage(spark, root, run, as_of, user_features) -> DataFrame:
    """The two-stage recommender at as_of: its generators refitted on the interactions as of the
    date (at the settings the run recorded), its ranker (saved by `train recommend`) ordering their
    union; each item with the TOP_CONTRIBUTIONS features that pushed it (SHAP contributions)."""
    from xgboost.spark import SparkXGBRankerModel

    params, details = run["params"], run["details"]
    inter = lake.read_partition(spark, root, tables.GOLD_INTERACTIONS, "as_of_date", as_of,
                                f"features --as-of {as_of}").select("user_key", "product_id", "strength")
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    history = features.events_before(events, as_of)
    categories = recommend.item_categories(history)
    users = user_features.select("user_key").join(inter.select("user_key").distinct(), "user_key")
    als = params["als"]
    settings = two_stage.Generators(als["rank"], als["reg_param"], als["alpha"], params["als_max_iter"],
                                    params["ranker_seed"], params["ease_lambda"])
    depth = params["depth"]
    lists, _, user_index, item_index = two_stage.shop_lists(inter, categories, users, depth, settings)
    window_days = params.get("graph_window_days", 7)  # runs recorded before it was a param: the default
    rows = two_stage.shop_candidates(lists, inter, categories, history, depth, window_days)
    model = SparkXGBRankerModel.load(f"{details['ranker_path']}/ranker")
    return ranker.rerank(model, rows, details["feature_columns"], params["k"], explain=True)


def score_classifier(spark, root, run, as_of, user_features, task) -> DataFrame:
    from pyspark.ml import PipelineModel

    users = user_features if task == "propensity" else user_features.where(F.col("frequency") > 0)
    if run["model"] == "wide_deep":
        spec = json.loads(lake.read_text_file(spark, f"{run['model_path']}/spec.json"))
        prepared = classify.prepare(users, spec["categories"]).join(
            users.select("user_key", encode.CATEGORY_COLUMN), "user_key")
        scored = scoring.predict(encode.encode(prepared, spec, keep=("user_key",)), spec, keep=("user_key",))
        return scored.withColumn("decile", _decile(scored, "probability"))
    model = PipelineModel.load(run["model_path"])
    prepared = classify.prepare(users, run["details"]["categories"])
    scored = classify.predict(model, prepared, run["details"]["log_odds_shift"])
    return scored.withColumn("decile", _decile(scored, "probability"))


def score_segments(spark, root, run, as_of, user_features) -> DataFrame:
    from pyspark.ml import PipelineModel

    model = PipelineModel.load(run["model_path"])
    assigned = model.transform(segments.rfm_scores(segments.buyers(user_features), run["details"]["rfm_edges"]))
    names = spark.createDataFrame([(p["segment"], p["name"]) for p in run["details"]["profiles"]],
                                  "segment int, segment_name string")
    return (assigned.join(F.broadcast(names), "segment", "left")
            .select("user_key", *segments.RFM, "r_score", "f_score", "m_score", "rfm_cell", "segment", "segment_name"))


FORECAST_COLUMNS = {"level": "string", "series_key": "string", "forecast_date": "date", "forecast": "double",
                    "seasonal_naive": "double", "recent_level": "double", "forecast_low": "double",
                    "forecast_high": "double", "departs_recent_level": "boolean"}


def score_forecast(spark, root, run, as_of) -> DataFrame:
    """FORECAST_COLUMNS (the band and flag only from gbt_direct, null from the other models)."""
    scored = _forecast(spark, root, run, as_of)
    return scored.select(*[F.col(c) if c in scored.columns else F.lit(None).cast(t).alias(c)
                           for c, t in FORECAST_COLUMNS.items()])


def _flagged_series(scored: DataFrame) -> str:
    """A log line: how many series' forecasts leave their recent level, naming a few categories."""
    flagged = scored.where(F.col("departs_recent_level"))
    counts = {r["level"]: r["n"] for r in flagged.groupBy("level").agg(
        F.countDistinct("series_key").alias("n")).collect()}   # one row per level
    examples = [r["series_key"] for r in flagged.where(F.col("level") == "category").select("series_key")
                .distinct().orderBy("series_key").limit(5).collect()]
    return (f"{counts.get('category', 0)} categories and {counts.get('product', 0)} products have forecast days "
            f"whose backtest band leaves out their recent level (departs_recent_level)"
            + (f", e.g. {', '.join(examples)}" if examples else ""))


def _forecast(spark, root, run, as_of) -> DataFrame:
    from pyspark.ml import PipelineModel

    daily = lake.read_partition(spark, root, tables.GOLD_DAILY_SALES, "as_of_date", as_of, f"features --as-of {as_of}")
    if run["model"] == "lstm_forecaster":
        spec = json.loads(lake.read_text_file(spark, f"{run['model_path']}/spec.json"))
        windows = forecast_windows.windows(forecast_windows.series_arrays(daily, as_of), as_of, spec["history"],
                                           spec["horizon"], training=False)
        keep = ("level", "series_key", "origin_date", "scale",
                *[forecast_windows.x_name(i) for i in range(spec["history"])])
        return forecast_windows.explode_forecasts(scoring.predict(windows, spec, keep), spec)
    horizon = run["params"]["holdout_days"]
    if run["model"] == "gbt_direct":
        models = direct_forecast.load(run["model_path"], lambda path: lake.path_exists(spark, path))
        if not models:
            raise EcomlakeError(f"forecast run {run['run_id']} saved no model under {run['model_path']}")
        predicted = direct_forecast.predict(models, direct_forecast.forecast_rows(daily, as_of, horizon))
        banded = direct_forecast.with_band(predicted, run["details"].get("error_bands", []))
        return banded.withColumnRenamed("event_date", "forecast_date")
    out = None
    for level in run["params"]["levels"]:
        path = f"{run['model_path']}/{level}"
        if not lake.path_exists(spark, path):  # the level was skipped in training (too little history)
            continue
        model = PipelineModel.load(path)
        frame = forecast.forecast_frame(daily.where(F.col("level") == level), as_of, horizon)
        predicted = forecast.predict(model, frame)
        out = predicted if out is None else out.unionByName(predicted)
    if out is None:
        raise EcomlakeError(f"forecast run {run['run_id']} saved no model")
    return out.withColumnRenamed("event_date", "forecast_date")


def score_next_item(spark, root, run, as_of, gap_minutes) -> DataFrame:
    """The session model's top-k products after each recently active user's newest session (before
    as_of); a model that reads the user's history (session_attention) gets their earlier sessions."""
    from ecomlake import features

    spec = json.loads(lake.read_text_file(spark, f"{run['model_path']}/spec.json"))
    vocabulary = spark.read.parquet(f"{run['model_path']}/vocabulary")
    history_len = spec.get("history_len", 0)
    since = features.cutoff(add_days(as_of, -NEXT_ITEM_ACTIVE_DAYS))
    before = features.events_before(lake.read_table(spark, root, tables.SILVER_EVENTS), as_of)
    if history_len:
        active = before.where(F.col("event_time") >= since).select("user_key").distinct()
        sessions = sequences.with_user_history(
            sequences.session_sequences(before.join(active, "user_key"), vocabulary, gap_minutes, min_items=1),
            history_len).where(F.col("session_start") >= since)
    else:
        sessions = sequences.session_sequences(before.where(F.col("event_time") >= since), vocabulary,
                                               gap_minutes, min_items=1)
    prefixes = sequences.latest_session_prefixes(sessions, spec["max_len"], history_len)
    top = scoring.predict(prefixes, spec, ("user_key", "session_start"))
    return (top.select("user_key", "session_start", F.posexplode("predicted").alias("position", "item"))
            .join(F.broadcast(vocabulary), "item")
            .select("user_key", "session_start", (F.col("position") + 1).alias("rank"), "product_id"))


def run(spark: SparkSession, config: dict, as_of: str, task: str = "all", run_id: str | None = None) -> dict:
    as_of = parse_as_of(as_of)
    root = config["lake_root"]
    if run_id and task == "all":
        raise EcomlakeError("--run-id names one model: give --task too")
    wanted = TASKS if task == "all" else (task,)
    needs_users = set(wanted) - {"forecast", "next_item"}
    user_features = (lake.read_partition(spark, root, tables.GOLD_USER_FEATURES, "as_of_date", as_of,
                                         f"features --as-of {as_of}") if needs_users else None)
    counts = {}
    for name in wanted:
        model_run = (runs.find(spark, root, "recommend", run_id, model="two_stage") if name == "two_stage"
                     else runs.find(spark, root, name, run_id))
        if name == "recommend":
            scored = score_recommend(spark, root, model_run, as_of, user_features)
        elif name == "two_stage":
            scored = score_two_stage(spark, root, model_run, as_of, user_features)
        elif name in ("propensity", "churn"):
            scored = score_classifier(spark, root, model_run, as_of, user_features, name)
        elif name == "segments":
            scored = score_segments(spark, root, model_run, as_of, user_features)
        elif name == "next_item":
            scored = score_next_item(spark, root, model_run, as_of, config["sessionize"]["gap_minutes"])
        else:
            scored = score_forecast(spark, root, model_run, as_of)
        table = OUTPUT[name]
        # merge_schema: a table scored by an older version gains the new columns (forecast bands).
        lake.replace_partition(_tag(scored, model_run, as_of), root, table, "as_of_date", as_of, merge_schema=True)
        written = lake.read_table(spark, root, table).where(F.col("as_of_date") == F.lit(as_of).cast("date"))
        counts[table.id] = written.count()
        log.info(f"score {name}: run {model_run['run_id']} ({model_run['model']}, trained as of "
              f"{model_run['as_of_date']}) -> {table.id}: {counts[table.id]:,} rows")
        if name == "forecast":
            log.info(f"score forecast: {_flagged_series(written)}")
    return counts


def main(argv=None) -> int:
    parser = job_parser("score", __doc__)
    parser.add_argument("--as-of", required=True, help="date of the features to score (YYYY-MM-DD)")
    parser.add_argument("--task", default="all", choices=(*TASKS, "next_item", "two_stage", "all"),
                        help="which scores to write (all = every task but next_item)")
    parser.add_argument("--run-id", help="score with this run of gold/model_runs instead of the latest")
    return run_job("score", parser, lambda spark, config, a: run(spark, config, a.as_of, a.task, a.run_id), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

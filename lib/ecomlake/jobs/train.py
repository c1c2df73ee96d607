"""train: Spark ML baselines on the gold features, evaluated on held-out data, runs in gold/model_runs.

  ./spark-submit.sh train all --as-of 2019-11-17
  ./spark-submit.sh train recommend|propensity|churn|forecast|segments|elasticity --as-of DATE

Needs `features --as-of DATE` (labels need events for the whole horizon after DATE).
  recommend   ALS (implicit; rank/regParam/alpha tuned on the week before DATE) vs most-popular
              and item co-occurrence; Precision/Recall/NDCG/MAP/coverage @10 and @k on what users
              touch in the horizon after DATE; with train.two_stage (default) also EASE, category
              popularity and the two-stage ranker over all five (trained on past weeks)
  propensity  logistic regression (scaled, class-weighted) on user features -> purchase in the
              horizon; AUC, PR-AUC, log-loss, top-decile lift, calibration; vs recency; on
              generated data also the oracle AUC from the generator's ground truth
  churn       the same for past buyers -> no purchase in the horizon
  forecast    gbt_direct (gradient-boosted trees per level, horizon as a feature) against
              the linear lag model and seasonal naive; WAPE, RMSE, sMAPE on the last
              train.forecast_holdout_days days before DATE and in a rolling-origin backtest
              (train.forecast_backtest_folds windows), whose errors give the forecast band
  segments    RFM scores and KMeans segments with a profile per segment
  elasticity  log-log regression of conversion on price per category with 95 % intervals (vs the
              planted elasticities on generated data)
  movielens   ALS, EASE, most-popular and co-occurrence on MovieLens-100k (`ingest --source
              movielens100k`) with the Microsoft Recommenders benchmark protocol, then the two-stage
              ranker over their candidates and an EASE + ALS blend (not part of `all`)
  movielens_sequential  MovieLens-100k as a next-item task: each user's ratings in time order,
              the last held out, the one before for validation (ALS tuned on it), full ranking
              of every item the user has not rated; HR@10 and nDCG@10 of ALS, most-popular,
              co-occurrence and next-after-last transitions (not part of `all`)
Every model is saved with Spark ML persistence under <lake_root>/models/<task>/<run_id>/<attempt>:
a new directory per training, so a re-train (same run_id: its gold/model_runs row is replaced)
never writes over the model the existing row points to; the row is recorded after the model is
completely written.
"""
from __future__ import annotations

import functools
import json
import logging
import sys

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import config as cfg
from ecomlake import datasets, evaluation, features, lake, logs, runs, tables
from ecomlake import generate as gen
from ecomlake.cli import add_as_of_minus_days, exit_with, job_parser, parse_as_of, run_job, shifted_as_of
from ecomlake.dates import add_days
from ecomlake.errors import ConfigError, InputError
from ecomlake.models import (classify, direct_forecast, ease, elasticity, forecast, ranker, recommend, segments,
                            two_stage)

log = logging.getLogger(__name__)

TASKS = ("recommend", "propensity", "churn", "forecast", "segments", "elasticity")
MOVIELENS_TASKS = ("movielens", "movielens_sequential")  # public data, no --as-of, not part of `all`


def _features_hint(as_of: str) -> str:
    return f"features --as-of {as_of}"


def _print_metrics(task: str, results: list[dict]) -> None:
    log.info(f"train {task}:")
    for r in results:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(r["metrics"].items()))
        log.info(f"  {r['model']:<22} {shown}")


# ---- recommend -------------------------------------------------------------------------------


def _als_grid(tc: dict) -> dict:
    return {"ranks": tc["als_ranks"], "reg_params": tc["als_reg_params"], "alphas": tc["als_alphas"],
            "max_iter": tc["als_max_iter"], "seed": tc["seed"], **_als_blocks(tc)}


def _als_blocks(tc: dict) -> dict:
    """train.als_blocks as Spark ALS's user and item block counts (0: Spark's default, 10)."""
    blocks = tc["als_blocks"]
    return {"numUserBlocks": blocks, "numItemBlocks": blocks} if blocks else {}


def _movielens_interactions(spark: SparkSession, root: str):
    """Every MovieLens-100k rating as an implicit interaction (user_key, product_id, strength 1,
    rated_at), and the input version."""
    ratings = lake.read_table(spark, root, tables.BRONZE_MOVIELENS_RATINGS)
    versions = runs.input_versions(spark, root, [tables.BRONZE_MOVIELENS_RATINGS])
    return datasets.movielens_interactions(ratings), versions


def _movielens_recommenders(spark: SparkSession, tc: dict, seen: DataFrame, wanted: DataFrame, k: int,
                            best: dict, best_ease: dict) -> tuple[dict, int]:
    """ALS and EASE at their tuned points, most-popular and co-occurrence fitted on `seen`: the top
    k for the users of `wanted`, their seen items removed; and the catalogue size."""
    users, items = recommend.index_frames(spark, seen)
    als = recommend.fit_als(seen, users, items, best["rank"], best["reg_param"], best["alpha"],
                            tc["als_max_iter"], tc["seed"], **_als_blocks(tc))
    ease_items, _, ease_weights = ease.fit(seen, [best_ease["lambda"]], tc["ease_max_items"])
    ease_model = ease.EaseModel(ease_items, ease_weights[best_ease["lambda"]], best_ease["lambda"])
    candidates = {
        "als": recommend.als_recommend(als, users, items, wanted, k, seen),
        "ease": recommend.ease_recommend(ease_model, seen, wanted, k, seen),
        "popularity": recommend.popularity(seen, wanted, k, seen),
        "co_occurrence": recommend.co_occurrence(seen, wanted, k, seen),
    }
    return candidates, seen.select("product_id").distinct().count()


def _ranker_settings(tc: dict) -> dict:
    return {"trees": tc["ranker_trees"], "max_depth": tc["ranker_max_depth"],
            "learning_rate": tc["ranker_learning_rate"], "min_child_weight": tc["ranker_min_child_weight"],
            "seed": tc["seed"]}


def _ranker_params(tc: dict) -> dict:
    """What a two-stage run records of its settings."""
    return {"depth": tc["ranker_depth"], "folds": tc["ranker_folds"],
            **{f"ranker_{key}": value for key, value in _ranker_settings(tc).items()}}


def _feature_gains(model, feature_columns: list[str]) -> dict[str, float]:
    """The ranker's total gain per feature (XGBoost names the assembled vector's slots f0, f1...)."""
    gains = model.get_booster().get_score(importance_type="total_gain")
    return {name: round(gains.get(f"f{i}", 0.0), 1) for i, name in enumerate(feature_columns)}


MOVIELENS_RANKER_FEATURES = ["user_items", "item_users", "days_from_user"]


def _movielens_candidates(spark: SparkSession, tc: dict, seen: DataFrame, wanted: DataFrame, best: dict,
                          best_ease: dict) -> tuple[dict, DataFrame, int]:
    """Stage one on MovieLens: every generator's top train.ranker_depth for the users of `wanted`
    (seen items removed), their union with the ranker's features, and the catalogue size."""
    depth = tc["ranker_depth"]
    lists, catalogue = _movielens_recommenders(spark, tc, seen, wanted, depth, best, best_ease)
    rows = ranker.interaction_features(ranker.candidates(lists, depth), seen, "rated_at")
    return lists, rows, catalogue


def _movielens_ranker(spark: SparkSession, tc: dict, train_part: DataFrame, best: dict, best_ease: dict,
                      seed: int) -> tuple[object, list[str]]:
    """The two-stage ranker, trained on train.ranker_folds inner stratified splits of the training
    part (seeds seed + 1, + 2, ...): generators fitted on the inner training part propose
    candidates, the inner test part labels them. The test part is never seen."""
    worlds, blend_grid = [], []
    for fold in range(tc["ranker_folds"]):
        inner = recommend.stratified_split(train_part, 0.75, seed + 1 + fold)
        inner_train, inner_test = inner.where("_is_train").drop("_is_train"), inner.where("NOT _is_train")
        lists, rows, catalogue = _movielens_candidates(spark, tc, inner_train, inner_test, best, best_ease)
        labelled = ranker.with_labels(rows, inner_test).withColumn("fold", F.lit(fold))
        worlds.append(labelled.persist(StorageLevel.MEMORY_AND_DISK))
        log.info(f"  ranker fold {fold}: {worlds[-1].count()} candidates, "
                 f"{worlds[-1].where('label = 1').count()} relevant")
        if fold == 0:  # the EASE + ALS blend's weight, on the split EASE and ALS were tuned on
            blend_grid = _tune_blend(worlds[0], inner_test, catalogue, tc["blend_als_weights"])
    training = functools.reduce(DataFrame.unionByName, worlds)
    columns = ranker.generator_columns(sorted(lists)) + MOVIELENS_RANKER_FEATURES
    model = ranker.fit(training, columns, **_ranker_settings(tc))
    for world in worlds:
        world.unpersist()
    return model, columns, blend_grid


def _blend_weights(als_weight: float) -> dict[str, float]:
    return {"ease": 1.0 - als_weight, "als": als_weight}


def _tune_blend(rows: DataFrame, truth: DataFrame, catalogue: int, als_weights: list) -> list[dict]:
    """Validation NDCG@10 of the EASE + ALS blend at each of ALS's weights (EASE: 1 - w)."""
    grid = []
    for weight in als_weights:
        recs = ranker.blend(rows, _blend_weights(float(weight)), 10)
        ndcg = evaluation.ranking_metrics(recs, truth, 10, catalogue, "user_key", "product_id")["ndcg@10"]
        grid.append({"als_weight": float(weight), "ndcg@10": ndcg})
        log.info(f"  tuning the EASE + ALS blend: ALS weight {weight}: validation ndcg@10={ndcg:.4f}")
    return grid


def _ranking_metrics_per_model(candidates: dict[str, DataFrame], truth: DataFrame, ks: list[int],
                               catalogue: int) -> dict[str, dict]:
    """evaluation.ranking_metrics @ each of ks of each model's lists (user_key, product_id, rank),
    all models at once: Spark jobs per k, not per model and k; the lists are computed once."""
    every = functools.reduce(DataFrame.unionByName, [
        recs.select("user_key", "product_id", "rank", F.lit(name).alias("_model"))
        for name, recs in candidates.items()]).persist(StorageLevel.MEMORY_AND_DISK)
    out: dict[str, dict] = {name: {} for name in candidates}
    for k in sorted(set(ks)):
        measured = evaluation.ranking_metrics_per(every, truth, k, catalogue, "_model", "user_key", "product_id")
        for name in candidates:
            out[name].update(measured.get(name, evaluation.empty_ranking_metrics(k)))
    every.unpersist()
    return out


TUNED_MODELS = ("als", "ease", "two_stage", "ease_als_blend")  # MovieLens rows that are models, not baselines


def _tuned(model: str, best_als: dict, best_ease: dict) -> dict:
    """The tuned parameters a MovieLens model row records (none for the untuned baselines)."""
    if model == "als":
        return {key: best_als[key] for key in ("rank", "reg_param", "alpha")}
    return {"lambda": best_ease["lambda"]} if model == "ease" else {}


def _tuning(model: str, als_grid: list[dict], ease_grid: list[dict]) -> dict:
    return {"tuning": als_grid} if model == "als" else {"tuning": ease_grid} if model == "ease" else {}


def train_movielens(spark: SparkSession, config: dict) -> list[dict]:
    """MovieLens-100k with the Microsoft Recommenders benchmark protocol: every rating is an implicit
    interaction, per-user stratified 75/25 split (seed 42), k = 10, items seen in training removed."""
    root, tc = config["lake_root"], config["train"]
    k, seed = 10, 42
    inter, versions = _movielens_interactions(spark, root)
    split = recommend.stratified_split(inter, 0.75, seed).persist(StorageLevel.MEMORY_AND_DISK)
    train_part, test_part = split.where("_is_train").drop("_is_train"), split.where("NOT _is_train").drop("_is_train")
    # Tuning on a second stratified split of the training part only: the test part stays unseen.
    inner = recommend.stratified_split(train_part, 0.75, seed + 1)
    inner_train, inner_test = inner.where("_is_train").drop("_is_train"), inner.where("NOT _is_train").drop("_is_train")
    best, grid = recommend.tune_als(inner_train, inner_test, k, **_als_grid(tc), exclude=True)
    best_ease, ease_grid = recommend.tune_ease(inner_train, inner_test, k, tc["ease_lambdas"], tc["ease_max_items"],
                                               exclude=True)
    model, columns, blend_grid = _movielens_ranker(spark, tc, train_part, best, best_ease, seed)
    best_blend = max(blend_grid, key=lambda g: g["ndcg@10"])
    candidates, rows, catalogue = _movielens_candidates(spark, tc, train_part, test_part, best, best_ease)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    candidates["two_stage"] = ranker.rerank(model, rows, columns, k)
    candidates["ease_als_blend"] = ranker.blend(rows, _blend_weights(best_blend["als_weight"]), k)
    out = []
    params = {"protocol": "stratified 75/25 per user, seed 42, ratings as implicit, seen items removed", "k": k}
    measured = _ranking_metrics_per_model(candidates, test_part, [k], catalogue)
    measured["two_stage"]["candidate_recall"] = ranker.candidate_recall(rows, test_part)
    for name in candidates:
        details = _tuning(name, grid, ease_grid)
        extra = {}
        if name == "two_stage":
            details, extra = {"feature_total_gain": _feature_gains(model, columns)}, _ranker_params(tc)
        elif name == "ease_als_blend":
            details = {"tuning": blend_grid}
            extra = {"als_weight": best_blend["als_weight"], "ease_lambda": best_ease["lambda"],
                     **{f"als_{key}": best[key] for key in ("rank", "reg_param", "alpha")}}
        out.append(runs.model_run("recommend_movielens", name, None,
                                  {**params, **_tuned(name, best, best_ease), **extra},
                                  versions, measured[name], details, baseline=name not in TUNED_MODELS))
    rows.unpersist()
    split.unpersist()
    return out


def train_movielens_sequential(spark: SparkSession, config: dict) -> list[dict]:
    """MovieLens-100k, leave-last-out: HR@10 (= recall@10, one relevant item) and nDCG@10 over all
    items the user has not rated, for the last rating of every user; models see the rest."""
    root, tc = config["lake_root"], config["train"]
    k = 10
    inter, versions = _movielens_interactions(spark, root)
    split = recommend.leave_last_out(inter, "rated_at").persist(StorageLevel.MEMORY_AND_DISK)
    train_part = split.where(F.col("_from_end") >= 3).drop("_from_end")
    validation = split.where(F.col("_from_end") == 2).select("user_key", "product_id")
    history = split.where(F.col("_from_end") >= 2).drop("_from_end")
    test = split.where(F.col("_from_end") == 1).select("user_key", "product_id")
    best, grid = recommend.tune_als(train_part, validation, k, **_als_grid(tc), exclude=True)
    best_ease, ease_grid = recommend.tune_ease(train_part, validation, k, tc["ease_lambdas"], tc["ease_max_items"],
                                               exclude=True)
    candidates, catalogue = _movielens_recommenders(spark, tc, history, test, k, best, best_ease)
    candidates["next_after_last"] = recommend.next_after_last(history, "rated_at", test, k, history)
    params = {"protocol": "leave-last-out by time (validation: the one before), all unrated items ranked", "k": k}
    out = []
    measured = _ranking_metrics_per_model(candidates, test, [k], catalogue)
    for name in candidates:
        ranking = measured[name]
        metrics = {f"hr@{k}": ranking[f"recall@{k}"], f"ndcg@{k}": ranking[f"ndcg@{k}"],
                   f"coverage@{k}": ranking[f"coverage@{k}"], "users_evaluated": ranking["users_evaluated"]}
        out.append(runs.model_run("next_item_movielens", name, None, {**params, **_tuned(name, best, best_ease)},
                                  versions, metrics, _tuning(name, grid, ease_grid), baseline=name not in TUNED_MODELS))
    split.unpersist()
    return out


def _generators(tc: dict, best: dict, best_ease: dict | None) -> two_stage.Generators:
    return two_stage.Generators(best["rank"], best["reg_param"], best["alpha"], tc["als_max_iter"], tc["seed"],
                                best_ease["lambda"] if best_ease else None, tc["ease_max_items"], _als_blocks(tc))


def _shop_ranker(events: DataFrame, as_of: str, tc: dict, fc: dict, graph_window_days: int, best: dict,
                 best_ease: dict) -> tuple[object, list]:
    """The two-stage ranker on shop data, trained on train.ranker_folds weeks before as_of: for the
    week starting as_of - 7w, generators fitted on the interactions before it propose candidates and
    what users touched in it labels them."""
    weights, half_life, depth = dict(fc["interaction_weights"]), fc["interaction_half_life_days"], tc["ranker_depth"]
    worlds = []
    for fold in range(tc["ranker_folds"]):
        week = add_days(as_of, -7 * (fold + 1))
        inter = features.interactions(events, week, weights, half_life).persist(StorageLevel.MEMORY_AND_DISK)
        truth = recommend.truth_items(events, week, 7)
        users = truth.select("user_key").distinct().join(inter.select("user_key").distinct(), "user_key")
        history = features.events_before(events, week)
        categories = recommend.item_categories(history)
        lists, _, user_index, item_index = two_stage.shop_lists(inter, categories, users, depth,
                                                                _generators(tc, best, best_ease))
        rows = two_stage.shop_candidates(lists, inter, categories, history, depth, graph_window_days)
        labelled = ranker.with_labels(rows, truth).withColumn("fold", F.lit(fold)).persist(StorageLevel.MEMORY_AND_DISK)
        relevant = labelled.where("label = 1").count()
        log.info(f"  ranker week from {week}: {labelled.count()} candidates, {relevant} relevant")
        for df in (inter, user_index, item_index):
            df.unpersist()
        if relevant:
            worlds.append(labelled)
        else:
            labelled.unpersist()
    if not worlds:
        raise InputError(f"the two-stage ranker has nothing to learn from: no user touched a candidate in the "
                         f"{tc['ranker_folds']} week(s) before {as_of} (train.ranker_folds; or train.two_stage=false)")
    columns = two_stage.feature_columns(list(lists))
    model = ranker.fit(functools.reduce(DataFrame.unionByName, worlds), columns, **_ranker_settings(tc))
    for world in worlds:
        world.unpersist()
    return model, columns


def train_recommend(spark: SparkSession, config: dict, as_of: str, horizon: int) -> list[dict]:
    root, tc, fc = config["lake_root"], config["train"], config["features"]
    k = tc["recommend_k"]
    events = lake.read_table(spark, root, tables.SILVER_EVENTS)
    inter = lake.read_partition(spark, root, tables.GOLD_INTERACTIONS, "as_of_date", as_of, _features_hint(as_of))
    versions = runs.input_versions(spark, root, [tables.SILVER_EVENTS, tables.GOLD_INTERACTIONS])
    weights, half_life = dict(fc["interaction_weights"]), fc["interaction_half_life_days"]

    # Tuning: fit on interactions before as_of - 7 days, score on what users touch in that week.
    val_as_of = add_days(as_of, -7)
    val_inter = features.interactions(events, val_as_of, weights, half_life)
    val_truth = recommend.truth_items(events, val_as_of, 7)
    best, grid = recommend.tune_als(val_inter, val_truth, k, **_als_grid(tc))
    with_ranker = tc["two_stage"] and features.horizon_covered(events, as_of, horizon)
    if with_ranker:
        best_ease, ease_grid = recommend.tune_ease(val_inter, val_truth, k, tc["ease_lambdas"], tc["ease_max_items"])
        model, columns = _shop_ranker(events, as_of, tc, fc, config["graph"]["window_days"], best, best_ease)

    inter = inter.select("user_key", "product_id", "strength").persist(StorageLevel.MEMORY_AND_DISK)
    params = {"k": k, "horizon_days": horizon, "max_iter": tc["als_max_iter"], "seed": tc["seed"],
              "rank": best["rank"], "reg_param": best["reg_param"], "alpha": best["alpha"],
              **({"als_blocks": tc["als_blocks"]} if tc["als_blocks"] else {})}  # recorded only when set
    results = {"als": {}, "popularity": {}, "co_occurrence": {}}
    depth = max(k, tc["ranker_depth"]) if with_ranker else k
    if features.horizon_covered(events, as_of, horizon):
        truth = recommend.truth_items(events, as_of, horizon)
        known = truth.join(inter.select("user_key").distinct(), "user_key").persist(StorageLevel.MEMORY_AND_DISK)
        catalogue = inter.select("product_id").distinct().count()
        history = features.events_before(events, as_of)
        categories = recommend.item_categories(history)
        candidates, als, user_index, item_index = two_stage.shop_lists(
            inter, categories, known, depth, _generators(tc, best, best_ease if with_ranker else None))
        if not with_ranker:
            candidates = {name: candidates[name] for name in results}
        else:
            rows = two_stage.shop_candidates(candidates, inter, categories, history, tc["ranker_depth"],
                                             config["graph"]["window_days"])
            rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
            candidates["two_stage"] = ranker.rerank(model, rows, columns, k)
        results = _ranking_metrics_per_model(candidates, known, [10, k], catalogue)
        if with_ranker:
            results["two_stage"]["candidate_recall"] = ranker.candidate_recall(rows, known)
            rows.unpersist()
        known.unpersist()
    else:
        log.info(f"train recommend: no test metrics: events do not cover {horizon} days after {as_of}")
        user_index, item_index = recommend.index_frames(spark, inter)
        user_index.persist(StorageLevel.MEMORY_AND_DISK)
        item_index.persist(StorageLevel.MEMORY_AND_DISK)
        als = recommend.fit_als(inter, user_index, item_index, best["rank"], best["reg_param"], best["alpha"],
                                tc["als_max_iter"], tc["seed"], **_als_blocks(tc))
    run = runs.model_run("recommend", "als", as_of, params, versions, results["als"], {"tuning": grid})
    path = runs.new_attempt_dir(root, "recommend", run["run_id"])
    als.write().save(f"{path}/als")
    user_index.write.parquet(f"{path}/user_index")
    item_index.write.parquet(f"{path}/item_index")
    run["model_path"] = path
    baselines = [name for name in results if name not in ("als", "ease", "two_stage")]
    out = [run] + [runs.model_run("recommend", name, as_of, {"k": k, "horizon_days": horizon}, versions, results[name],
                                  baseline=True) for name in baselines]
    if with_ranker:
        out.append(runs.model_run("recommend", "ease", as_of, {"k": k, "horizon_days": horizon,
                                                               "lambda": best_ease["lambda"]},
                                  versions, results["ease"], {"tuning": ease_grid}))
        stage_params = {"k": k, "horizon_days": horizon, **_ranker_params(tc),
                        "als": {key: best[key] for key in ("rank", "reg_param", "alpha")}, "als_max_iter": tc["als_max_iter"],
                        "ease_lambda": best_ease["lambda"], "graph_window_days": config["graph"]["window_days"]}
        stage_run = runs.model_run("recommend", "two_stage", as_of, stage_params, versions, results["two_stage"])
        # The ranker's path is in details, not model_path: runs.find(task "recommend") keeps meaning ALS.
        stage_path = runs.new_attempt_dir(root, "recommend_two_stage", stage_run["run_id"])
        model.write().save(f"{stage_path}/ranker")
        stage_run["details"] = {"ranker_path": stage_path, "feature_columns": columns,
                                "feature_total_gain": _feature_gains(model, columns)}
        out.append(stage_run)
    for df in (inter, user_index, item_index):
        df.unpersist()
    return out


# ---- propensity and churn --------------------------------------------------------------------


def train_classifier(spark: SparkSession, config: dict, as_of: str, task: str) -> list[dict]:
    root, seed = config["lake_root"], config["train"]["seed"]
    hint = f"{_features_hint(as_of)} (with events covering the label horizon)"
    uf = lake.read_partition(spark, root, tables.GOLD_USER_FEATURES, "as_of_date", as_of, hint)
    labels = lake.read_partition(spark, root, tables.GOLD_USER_LABELS, "as_of_date", as_of, hint)
    versions = runs.input_versions(spark, root, [tables.GOLD_USER_FEATURES, tables.GOLD_USER_LABELS])
    horizon = labels.select("horizon_days").head()[0]
    label_column = "purchased_next" if task == "propensity" else "churned"
    labels = labels.where(F.col(label_column).isNotNull()).select("user_key", F.col(label_column).alias("label"))
    categories = classify.top_categories(uf)
    data = (classify.prepare(uf, categories).join(labels, "user_key")
            .withColumn("_test", classify.holdout(F.col("user_key"), seed))
            .persist(StorageLevel.MEMORY_AND_DISK))
    train, test = data.where(~F.col("_test")), data.where(F.col("_test"))
    try:
        model, shift = classify.fit(train, "label", categories)
    except ValueError as exc:
        raise InputError(f"train {task}: {exc}") from None
    predicted = classify.predict(model, test, shift).join(test.select("user_key", "label"), "user_key")
    predicted = predicted.persist(StorageLevel.MEMORY_AND_DISK)
    lr_metrics = evaluation.binary_metrics(predicted, "label", "probability")
    details = {"calibration": evaluation.calibration_table(predicted, "label", "probability"),
               "coefficients": classify.coefficients(model, categories), "categories": categories,
               "log_odds_shift": shift}
    # Recency baseline: recently active users buy (propensity); long-gone buyers churn.
    sign = -1.0 if task == "propensity" else 1.0
    baseline = test.select("label", (F.lit(sign) * F.col("recency_days")).alias("score"))
    base_metrics = evaluation.binary_metrics(baseline, probability=False)
    if task == "propensity":
        auc = gen.oracle_auc(spark, config["generate"]["output"], cfg.pseudonymisation_key(config), predicted, as_of,
                             horizon)
        if auc is not None:
            lr_metrics["oracle_auc"] = auc
            base_metrics["oracle_auc"] = auc
    params = {"horizon_days": horizon, "seed": seed, "reg_param": 0.01, "class_weights": "balanced",
              "test_fraction": 0.2}
    run = runs.model_run(task, "logistic_regression", as_of, params, versions, lr_metrics, details)
    path = runs.new_attempt_dir(root, task, run["run_id"])
    model.write().save(path)
    run["model_path"] = path
    data.unpersist()
    predicted.unpersist()
    return [run, runs.model_run(task, "recency", as_of, {"horizon_days": horizon, "seed": seed}, versions,
                                base_metrics, baseline=True)]


# ---- forecast --------------------------------------------------------------------------------


def train_forecast(spark: SparkSession, config: dict, as_of: str) -> list[dict]:
    """gbt_direct (the model `score` uses) against the linear lag model and seasonal naive: on the
    hold-out (the last forecast_holdout_days before as_of) and in a rolling-origin backtest (the
    hold-out and the windows a week, two weeks... earlier), every model refitted before each origin
    and compared on the same series and days. The saved models are refitted on all history."""
    root, tc = config["lake_root"], config["train"]
    holdout, folds = tc["forecast_holdout_days"], tc["forecast_backtest_folds"]
    if not 1 <= holdout <= forecast.MAX_HORIZON_DAYS:
        raise ConfigError(f"train.forecast_holdout_days must be 1..{forecast.MAX_HORIZON_DAYS}, got {holdout}")
    daily = lake.read_partition(spark, root, tables.GOLD_DAILY_SALES, "as_of_date", as_of, _features_hint(as_of))
    daily = daily.persist(StorageLevel.MEMORY_AND_DISK)
    versions = runs.input_versions(spark, root, [tables.GOLD_DAILY_SALES])
    origins = direct_forecast.backtest_origins(as_of, holdout, folds)
    params = {"holdout_days": holdout, "origin": origins[0], "levels": ["category", "product"]}
    gbt_params = {**params, "backtest_origins": origins, "max_iter": tc["forecast_gbt_max_iter"], "seed": tc["seed"]}
    names = ("gbt_direct", "linear_regression", "seasonal_naive")
    metrics: dict[str, dict] = {name: {} for name in names}
    backtest = []
    for fold, origin in enumerate(origins):
        predicted = _forecast_fold(daily, origin, holdout, tc)
        if predicted is None:
            log.info(f"train forecast: backtest window from {origin} skipped: the models cannot all be trained "
                     f"before it (gbt_direct needs {direct_forecast.MIN_HISTORY_DAYS} days of history, "
                     f"linear_regression 28-day lags)")
            continue
        predicted = predicted.persist(StorageLevel.MEMORY_AND_DISK)
        for level in ("category", "product"):
            rows = predicted.where(F.col("level") == level)
            for name in names:
                fold_metrics = evaluation.forecast_metrics(rows, "actual", name)
                if fold == 0:  # the hold-out: the metrics every earlier run recorded
                    metrics[name].update({f"{level}_{k}": v for k, v in fold_metrics.items()})
        backtest.append(predicted)
    if not metrics["gbt_direct"]:
        log.warning(f"train forecast: no series has {direct_forecast.MIN_HISTORY_DAYS} days of sales history before "
                    f"{origins[0]}: nothing trained (use a later --as-of)")
        daily.unpersist()
        return []
    pooled = functools.reduce(DataFrame.unionByName, backtest)
    for level in ("category", "product"):
        rows = pooled.where(F.col("level") == level)
        for name in names:
            metrics[name].update({f"backtest_{level}_{k}": v for k, v in
                                  evaluation.forecast_metrics(rows, "actual", name).items()})
    # The band `score` puts around each forecast: the spread of gbt_direct's backtest errors.
    bands = direct_forecast.error_bands(pooled, forecast="gbt_direct")
    gbt = runs.model_run("forecast", "gbt_direct", as_of, gbt_params, versions, metrics["gbt_direct"],
                         {"features": list(direct_forecast.FEATURES), "error_bands": bands})
    linear = runs.model_run("forecast", "linear_regression", as_of, params, versions, metrics["linear_regression"],
                            baseline=True)
    # The saved models are refitted on all history up to as_of, for forecasts after it.
    gbt["model_path"] = runs.new_attempt_dir(root, "forecast", gbt["run_id"])
    direct_forecast.save(direct_forecast.fit(direct_forecast.training_rows(daily, as_of, holdout), tc["seed"],
                                             tc["forecast_gbt_max_iter"]), gbt["model_path"])
    linear["model_path"] = runs.new_attempt_dir(root, "forecast", linear["run_id"])
    for level in ("category", "product"):
        train = forecast.training_rows(daily.where(F.col("level") == level), as_of)
        if train.limit(1).count():
            forecast.fit(train).write().save(f"{linear['model_path']}/{level}")
    for predicted in backtest:
        predicted.unpersist()
    daily.unpersist()
    return [gbt, linear, runs.model_run("forecast", "seasonal_naive", as_of, params, versions,
                                        metrics["seasonal_naive"], baseline=True)]


def _forecast_fold(daily: DataFrame, origin: str, horizon: int, tc: dict) -> DataFrame | None:
    """level, series_key, event_date, actual and each model's forecast (gbt_direct,
    linear_regression, seasonal_naive) for the `horizon` days from `origin`, every model fitted on
    the days before it; only series and days all three forecast. None when a model has no
    training rows (checked before any model is fitted)."""
    keys = ["level", "series_key", "event_date"]
    linear = None
    for level in ("category", "product"):
        series = daily.where(F.col("level") == level)
        level_train = forecast.training_rows(series, origin)
        if level_train.limit(1).count() == 0:
            continue
        part = forecast.predict(forecast.fit(level_train), forecast.forecast_frame(series, origin, horizon))
        linear = part if linear is None else linear.unionByName(part)
    train = direct_forecast.training_rows(daily, origin, horizon)
    if linear is None or train.limit(1).count() == 0:
        return None
    gbt = direct_forecast.predict(direct_forecast.fit(train, tc["seed"], tc["forecast_gbt_max_iter"]),
                                  direct_forecast.forecast_rows(daily, origin, horizon))
    actual = daily.where(F.col("event_date") >= F.lit(origin).cast("date")).select(
        *keys, F.col("units").cast("double").alias("actual"))
    return (gbt.select(*keys, "horizon", "scale", F.col("forecast").alias("gbt_direct"), "seasonal_naive")
            .join(actual, keys)
            .join(linear.select(*keys, F.col("forecast").alias("linear_regression")), keys))


# ---- segments and elasticity -----------------------------------------------------------------


def train_segments(spark: SparkSession, config: dict, as_of: str) -> list[dict]:
    from pyspark.ml.evaluation import ClusteringEvaluator

    root, tc = config["lake_root"], config["train"]
    uf = lake.read_partition(spark, root, tables.GOLD_USER_FEATURES, "as_of_date", as_of, _features_hint(as_of))
    versions = runs.input_versions(spark, root, [tables.GOLD_USER_FEATURES])
    buyers = segments.buyers(uf).persist(StorageLevel.MEMORY_AND_DISK)
    if buyers.count() < tc["segments_k"] * 2:
        raise InputError(f"train segments: too few buyers before {as_of} for {tc['segments_k']} segments")
    edges = segments.quintile_edges(buyers)
    model = segments.fit(buyers, tc["segments_k"], tc["seed"])
    assigned = model.transform(segments.rfm_scores(buyers, edges))
    silhouette = ClusteringEvaluator(featuresCol="_features", predictionCol="segment").evaluate(assigned)
    profiles = segments.profiles(assigned)
    params = {"k": tc["segments_k"], "seed": tc["seed"]}
    run = runs.model_run("segments", "rfm_kmeans", as_of, params, versions,
                         {"silhouette": silhouette, "customers": float(sum(p["customers"] for p in profiles))},
                         {"profiles": profiles, "rfm_edges": edges})
    path = runs.new_attempt_dir(root, "segments", run["run_id"])
    model.write().save(path)
    run["model_path"] = path
    buyers.unpersist()
    log.info("  segments: " + "; ".join(f"{p['segment']}: {p['name']} ({p['customers']})" for p in profiles))
    return [run]


def train_elasticity(spark: SparkSession, config: dict, as_of: str) -> list[dict]:
    root = config["lake_root"]
    events = features.events_before(lake.read_table(spark, root, tables.SILVER_EVENTS), as_of)
    versions = runs.input_versions(spark, root, [tables.SILVER_EVENTS])
    estimates = [r.asDict() for r in elasticity.elasticities(elasticity.price_bins(events)).orderBy("category_code").collect()]
    fitted = [e for e in estimates if _finite(e["elasticity"])]  # too few bins: no estimate
    planted_text = lake.read_text_file(spark, f"{config['generate']['output']}/_ground_truth/categories.json")
    metrics = {"categories": float(len(fitted))}
    if planted_text:
        planted = {(c["category_code"] or "unknown"): c["elasticity"] for c in json.loads(planted_text)}
        compared = [e for e in fitted if e["category_code"] in planted]
        for e in compared:
            e["planted"] = planted[e["category_code"]]
        if compared:
            metrics["mean_abs_error_vs_planted"] = sum(abs(e["elasticity"] - e["planted"]) for e in compared) / len(compared)
            metrics["planted_inside_ci_share"] = sum(e["ci_low"] <= e["planted"] <= e["ci_high"] for e in compared) / len(compared)
    for e in estimates:
        shown = (f"{e['elasticity']:>7.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}]" if _finite(e["elasticity"])
                 else f"no estimate ({e['bins']} price bins)")
        log.info(f"  elasticity {e['category_code']:<32} {shown}" + (f" planted {e['planted']:.2f}" if "planted" in e else ""))
    return [runs.model_run("elasticity", "log_log_wls", as_of, {"min_views": 30, "bin_width_log_price": 0.1}, versions,
                           metrics, {"estimates": estimates})]


def _finite(value) -> bool:
    return value is not None and value == value  # NaN != NaN


# ---- the job ---------------------------------------------------------------------------------


def run(spark: SparkSession, config: dict, task: str, as_of: str | None, horizon_days: int | None = None) -> list[dict]:
    if task not in MOVIELENS_TASKS:
        if not as_of:
            raise ConfigError(f"train {task} needs --as-of DATE (the cutoff of the features to train on)")
        as_of = parse_as_of(as_of)
    root = config["lake_root"]
    horizon = horizon_days if horizon_days is not None else config["features"]["label_horizon_days"]
    if spark.sparkContext.getCheckpointDir() is None:
        # ALS's lineage grows with iterations; without checkpoints it overflows the stack.
        spark.sparkContext.setCheckpointDir(f"{root.rstrip('/')}/_checkpoints")
    steps = {
        "recommend": lambda: train_recommend(spark, config, as_of, horizon),
        "propensity": lambda: train_classifier(spark, config, as_of, "propensity"),
        "churn": lambda: train_classifier(spark, config, as_of, "churn"),
        "forecast": lambda: train_forecast(spark, config, as_of),
        "segments": lambda: train_segments(spark, config, as_of),
        "elasticity": lambda: train_elasticity(spark, config, as_of),
        "movielens": lambda: train_movielens(spark, config),
        "movielens_sequential": lambda: train_movielens_sequential(spark, config),
    }
    recorded = []
    for name in (TASKS if task == "all" else (task,)):
        with logs.log_step(name, log):
            results = steps[name]()
            runs.record(spark, root, results)
            _print_metrics(name, results)
        recorded += results
    return recorded


def main(argv=None) -> int:
    parser = job_parser("train", __doc__)
    parser.add_argument("task", choices=(*TASKS, "all", *MOVIELENS_TASKS), help="which model to train")
    parser.add_argument("--as-of", help="cutoff date of the features to train on (YYYY-MM-DD); "
                                        "not used by the movielens tasks")
    add_as_of_minus_days(parser)
    parser.add_argument("--horizon-days", type=int, help="recommendation test horizon (default: features.label_horizon_days)")
    return run_job("train", parser, lambda spark, config, a: run(
        spark, config, a.task, shifted_as_of(a.as_of, a.as_of_minus_days), a.horizon_days), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

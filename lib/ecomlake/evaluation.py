"""Model metrics, computed in Spark (joins and aggregates; only the final numbers reach the driver).

Ranking (per user, averaged over evaluated users; a user's relevant items are `truth`):
  precision@k = hits in the top k / k
  recall@k    = hits in the top k / relevant items
  ndcg@k      = sum over hits of 1 / log2(rank + 1), divided by the ideal DCG of min(relevant, k) hits
  map@k       = sum over hits of precision at the hit's rank, divided by min(relevant, k)
  map_over_relevant@k = the same sum divided by all relevant items (Microsoft Recommenders' map_at_k)
  coverage@k  = distinct items recommended in any top k / catalogue size
Binary: AUC, PR-AUC (Spark's BinaryClassificationEvaluator), log-loss, base rate, lift in the
top decile (positive rate among the highest-scored 10 % / base rate), calibration by probability decile.
Next item (session models): Recall@k = share of examples whose target is in the k predictions;
MRR@k = mean of 1 / (rank of the target), 0 when it is not in the top k.
Regression (forecasts): WAPE = sum |y - f| / sum |y|, RMSE, sMAPE = mean 2|y - f| / (|y| + |f|)
(a term is 0 when both are 0).
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def ranking_metrics(recommendations: DataFrame, truth: DataFrame, k: int, catalogue_size: int,
                    user: str = "user", item: str = "item", rank: str = "rank") -> dict[str, float]:
    """Metrics @k over users that are in both `truth` and `recommendations` (rank 1 = best)."""
    one = recommendations.withColumn("_group", F.lit(0))
    return ranking_metrics_per(one, truth, k, catalogue_size, "_group", user, item, rank).get(0, empty_ranking_metrics(k))


def empty_ranking_metrics(k: int) -> dict[str, float]:
    return {f"{m}@{k}": 0.0 for m in ("precision", "recall", "ndcg", "map", "map_over_relevant", "coverage")} | {
        "users_evaluated": 0.0}


def ranking_metrics_per(recommendations: DataFrame, truth: DataFrame, k: int, catalogue_size: int, group: str,
                        user: str = "user", item: str = "item", rank: str = "rank") -> dict:
    """ranking_metrics of every value of `group` (a column of recommendations: e.g. the model) in
    one pass -> {group value: metrics}; one row per group reaches the driver."""
    top = recommendations.where(F.col(rank) <= k).select(group, user, item, rank)
    relevant = truth.select(user, item).distinct()
    n_relevant = relevant.groupBy(user).agg(F.count(F.lit(1)).alias("n_relevant"))
    evaluated = top.select(group, user).distinct().join(n_relevant, user)
    hit_order = Window.partitionBy(group, user).orderBy(rank)
    hits = (top.join(relevant, [user, item])
            .withColumn("hits_so_far", F.row_number().over(hit_order))
            .groupBy(group, user)
            .agg(F.count(F.lit(1)).alias("hits"),
                 F.sum(1.0 / F.log2(F.col(rank) + 1.0)).alias("dcg"),
                 F.sum(F.col("hits_so_far") / F.col(rank)).alias("sum_precision")))
    ideal = F.aggregate(F.sequence(F.lit(1), F.least(F.col("n_relevant"), F.lit(k))), F.lit(0.0),
                        lambda acc, i: acc + 1.0 / F.log2(i + 1.0))
    per_user = (evaluated.join(hits, [group, user], "left").fillna({"hits": 0, "dcg": 0.0, "sum_precision": 0.0})
                .select(group, (F.col("hits") / k).alias("precision"),
                        (F.col("hits") / F.col("n_relevant")).alias("recall"),
                        (F.col("dcg") / ideal).alias("ndcg"),
                        (F.col("sum_precision") / F.least(F.col("n_relevant"), F.lit(k))).alias("ap"),
                        (F.col("sum_precision") / F.col("n_relevant")).alias("ap_over_relevant")))
    rows = per_user.groupBy(group).agg(
        F.count(F.lit(1)).alias("users"), F.avg("precision").alias("precision"),
        F.avg("recall").alias("recall"), F.avg("ndcg").alias("ndcg"),
        F.avg("ap").alias("map"), F.avg("ap_over_relevant").alias("map_over_relevant")).collect()  # one per group
    distinct_items = {r[group]: r["items"] for r in
                      top.groupBy(group).agg(F.countDistinct(item).alias("items")).collect()}
    by_group = {row[group]: row for row in rows}
    out = {}
    for value in {*by_group, *distinct_items}:
        row = by_group.get(value)
        out[value] = {f"{name}@{k}": (row[name] or 0.0) if row else 0.0
                      for name in ("precision", "recall", "ndcg", "map", "map_over_relevant")} | {
            f"coverage@{k}": distinct_items.get(value, 0) / catalogue_size if catalogue_size else 0.0,
            "users_evaluated": float(row["users"]) if row else 0.0}
    return out


def binary_metrics(scored: DataFrame, label: str = "label", score: str = "score",
                   probability: bool = True) -> dict[str, float]:
    """AUC, PR-AUC, base rate, top-decile lift and, for probabilities, log-loss."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    data = scored.select(F.col(label).cast("double").alias("label"), F.col(score).cast("double").alias("score"))
    evaluator = BinaryClassificationEvaluator(rawPredictionCol="score", labelCol="label")
    out = {
        "auc": evaluator.setMetricName("areaUnderROC").evaluate(data),
        "pr_auc": evaluator.setMetricName("areaUnderPR").evaluate(data),
    }
    stats = data.agg(F.count(F.lit(1)).alias("n"), F.avg("label").alias("base_rate")).head()
    out["n"] = float(stats["n"])
    out["base_rate"] = stats["base_rate"] or 0.0
    out["lift_top_decile"] = top_decile_lift(data, out["base_rate"])
    if probability:
        p = F.least(F.greatest(F.col("score"), F.lit(1e-15)), F.lit(1 - 1e-15))
        out["log_loss"] = data.agg(F.avg(-(F.col("label") * F.log(p) + (1 - F.col("label")) * F.log(1 - p)))).head()[0]
    return out


def top_decile_lift(data: DataFrame, base_rate: float) -> float:
    """Positive rate among rows scored at or above the 90th percentile (approxQuantile, relative
    error 1e-4; ties at the threshold are included) / base rate."""
    if not base_rate:
        return 0.0
    threshold = data.approxQuantile("score", [0.9], 1e-4)[0]
    return (data.where(F.col("score") >= threshold).agg(F.avg("label")).head()[0] or 0.0) / base_rate


def calibration_table(scored: DataFrame, label: str = "label", probability: str = "probability",
                      bins: int = 10) -> list[dict]:
    """Per probability bin [i/bins, (i+1)/bins): rows, mean predicted, observed positive rate."""
    binned = scored.withColumn("bin", F.least(F.floor(F.col(probability) * bins), F.lit(bins - 1)).cast("int"))
    rows = (binned.groupBy("bin")
            .agg(F.count(F.lit(1)).alias("rows"), F.avg(probability).alias("mean_predicted"),
                 F.avg(F.col(label).cast("double")).alias("observed_rate"))
            .orderBy("bin").collect())  # at most `bins` rows
    return [{"bin": f"{r['bin'] / bins:.1f}-{(r['bin'] + 1) / bins:.1f}", "rows": r["rows"],
             "mean_predicted": round(r["mean_predicted"], 4), "observed_rate": round(r["observed_rate"], 4)}
            for r in rows]


def forecast_metrics(df: DataFrame, actual: str = "actual", forecast: str = "forecast") -> dict[str, float]:
    y, f = F.col(actual).cast("double"), F.col(forecast).cast("double")
    denominator = F.abs(y) + F.abs(f)
    row = df.agg(
        F.sum(F.abs(y - f)).alias("abs_error"), F.sum(F.abs(y)).alias("abs_actual"),
        F.sqrt(F.avg((y - f) * (y - f))).alias("rmse"),
        F.avg(F.when(denominator == 0, 0.0).otherwise(2 * F.abs(y - f) / denominator)).alias("smape"),
        F.count(F.lit(1)).alias("n"),
    ).head()
    wape = row["abs_error"] / row["abs_actual"] if row["abs_actual"] else float("nan")
    return {"wape": wape, "rmse": row["rmse"], "smape": row["smape"], "n": float(row["n"])}


def next_item_metrics(df: DataFrame, k: int, predicted: str = "predicted", target: str = "target") -> dict[str, float]:
    """Recall@k, MRR@k and nDCG@k (one relevant item: 1 / log2(1 + its rank)) of `predicted`
    (array, best first; null = no prediction) against `target`."""
    # PySpark 3.5's array_position takes a literal value; the SQL function takes a column.
    position = F.coalesce(F.expr(f"array_position(slice(`{predicted}`, 1, {int(k)}), `{target}`)"), F.lit(0))
    row = df.agg(F.count(F.lit(1)).alias("n"),
                 F.avg(F.when(position > 0, 1.0).otherwise(0.0)).alias("recall"),
                 F.avg(F.when(position > 0, 1.0 / position).otherwise(0.0)).alias("mrr"),
                 F.avg(F.when(position > 0, 1.0 / F.log2(position + 1)).otherwise(0.0)).alias("ndcg")).head()
    return {f"recall@{k}": row["recall"] or 0.0, f"mrr@{k}": row["mrr"] or 0.0, f"ndcg@{k}": row["ndcg"] or 0.0,
            "examples": float(row["n"])}


def classification_metrics(predicted: DataFrame, label: str, prediction: str = "prediction") -> dict[str, float]:
    """Accuracy, macro-F1 (every class weighs the same: the rare unhappy classes count) and the
    accuracy and macro-F1 of always predicting the most frequent class, from one per-class count."""
    pairs = predicted.groupBy(F.col(label).alias("y"), F.col(prediction).alias("p")).count().collect()  # classes^2
    classes = sorted({r["y"] for r in pairs} | {r["p"] for r in pairs})
    total = sum(r["count"] for r in pairs)
    true = {c: sum(r["count"] for r in pairs if r["y"] == c) for c in classes}
    predicted_n = {c: sum(r["count"] for r in pairs if r["p"] == c) for c in classes}
    correct = {c: sum(r["count"] for r in pairs if r["y"] == c and r["p"] == c) for c in classes}

    def f1(c):
        return 2 * correct[c] / (true[c] + predicted_n[c]) if true[c] + predicted_n[c] else 0.0

    label_classes = [c for c in classes if true[c]]
    majority = max(label_classes, key=lambda c: true[c])
    majority_f1 = 2 * true[majority] / (true[majority] + total) / len(label_classes)
    return {"accuracy": sum(correct.values()) / total if total else 0.0,
            "macro_f1": sum(f1(c) for c in label_classes) / len(label_classes) if label_classes else 0.0,
            "majority_accuracy": true[majority] / total if total else 0.0,
            "majority_macro_f1": majority_f1, "n": float(total)}

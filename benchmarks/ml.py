"""ML benchmark: fit time per model on generated data, and Spark ALS against the `implicit` library.

  .venv/bin/python benchmarks/ml.py --events 1000000 [--workdir /tmp/ecomlake-bench-ml]

Generates N events and runs the pipeline and `features` (as of 2019-11-17) unless the workdir
already holds them, then times `train <task>` for every task with one ALS configuration (rank 32,
regParam 0.1, alpha 1, 10 iterations), and fits `implicit`'s ALS with the same parameters on the
same gold/interactions, scoring both on the same held-out users with the same metrics.
With --als-grid it only fits Spark ALS under several of its own settings (blocks, storage levels,
checkpointing; ALS_SETTINGS) and implicit on the same cached pairs: fit seconds and NDCG@10 each.
Not a test: numbers (the interactions are brought to the driver for `implicit`, by design).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake import config as cfg  # noqa: E402
from ecomlake import evaluation, lake, tables  # noqa: E402
from ecomlake.jobs import features, pipeline, train  # noqa: E402
from ecomlake.models import recommend  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402

AS_OF, HORIZON = "2019-11-17", 14
HEADLINE_METRICS = {"ndcg@10", "precision@10", "auc", "oracle_auc", "category_wape", "category_rmse",
                    "product_wape", "product_rmse", "backtest_category_wape", "silhouette",
                    "mean_abs_error_vs_planted", "planted_inside_ci_share"}
ALS = {"rank": 32, "reg_param": 0.1, "alpha": 1.0, "max_iter": 10}


def implicit_als(spark, interactions, truth_users, k):
    """Fit implicit's ALS on the same interactions; return (fit seconds, top-k recs as a Spark DataFrame)."""
    import numpy as np
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    pdf = interactions.select("user_key", "product_id", "strength").toPandas()
    users, user_codes = np.unique(pdf["user_key"].to_numpy(), return_inverse=True)
    items, item_codes = np.unique(pdf["product_id"].to_numpy(), return_inverse=True)
    matrix = sp.csr_matrix((pdf["strength"].to_numpy(dtype=np.float32), (user_codes, item_codes)),
                           shape=(len(users), len(items)))
    model = AlternatingLeastSquares(factors=ALS["rank"], regularization=ALS["reg_param"], alpha=ALS["alpha"],
                                    iterations=ALS["max_iter"], random_state=7, use_gpu=False)
    started = time.time()
    model.fit(matrix, show_progress=False)
    seconds = time.time() - started
    wanted = set(r.user_key for r in truth_users.collect())
    rows_idx = np.array([i for i, u in enumerate(users) if u in wanted])
    ids, scores = model.recommend(rows_idx, matrix[rows_idx], N=k, filter_already_liked_items=False)
    recs = [(int(users[u]), int(items[ids[j, r]]), r + 1, float(scores[j, r]))
            for j, u in enumerate(rows_idx) for r in range(ids.shape[1])]
    return seconds, spark.createDataFrame(recs, "user_key long, product_id long, rank int, score double")


# Spark ALS's own settings (Spark's defaults first): blocks per side, where the factor blocks live
# between iterations, and the checkpoint that cuts the lineage (the benchmark sets a checkpoint folder).
ALS_SETTINGS = {
    "Spark defaults (10 x 10 blocks, MEMORY_AND_DISK, checkpoint every 10)": {},
    "2 x 2 blocks": {"numUserBlocks": 2, "numItemBlocks": 2},
    "4 x 4 blocks": {"numUserBlocks": 4, "numItemBlocks": 4},
    "20 x 20 blocks": {"numUserBlocks": 20, "numItemBlocks": 20},
    "4 x 4 blocks, MEMORY_ONLY": {"numUserBlocks": 4, "numItemBlocks": 4, "intermediateStorageLevel": "MEMORY_ONLY",
                                  "finalStorageLevel": "MEMORY_ONLY"},
    "4 x 4 blocks, MEMORY_ONLY, no checkpoint": {"numUserBlocks": 4, "numItemBlocks": 4,
                                                 "intermediateStorageLevel": "MEMORY_ONLY",
                                                 "finalStorageLevel": "MEMORY_ONLY", "checkpointInterval": -1},
}


def als_grid(spark, config: dict, events: int) -> None:
    """Fit seconds and NDCG@10 of Spark ALS under each of ALS_SETTINGS, and of implicit, on the same
    pairs. The input is indexed and cached first, so every fit times ALS alone."""
    inter = lake.read_partition(spark, config["lake_root"], tables.GOLD_INTERACTIONS, "as_of_date", AS_OF, "features")
    events_table = lake.read_table(spark, config["lake_root"], tables.SILVER_EVENTS)
    truth = recommend.truth_items(events_table, AS_OF, HORIZON).join(inter.select("user_key").distinct(), "user_key").cache()
    users, items = recommend.index_frames(spark, inter)
    users, items = users.cache(), items.cache()
    inter = inter.select("user_key", "product_id", "strength").cache()
    k, catalogue, pairs = 20, inter.select("product_id").distinct().count(), inter.count()
    users.count(), items.count(), truth.count()
    results = {"events": events, "pairs": pairs, "als": ALS, "settings": {}}
    print(f"\n== Spark ALS settings, {pairs:,} pairs, {ALS} ==")
    for name, options in ALS_SETTINGS.items():
        started = time.time()
        model = recommend.fit_als(inter, users, items, ALS["rank"], ALS["reg_param"], ALS["alpha"], ALS["max_iter"], 7,
                                  **options)
        seconds = time.time() - started
        recs = recommend.als_recommend(model, users, items, truth, k)
        ndcg = evaluation.ranking_metrics(recs, truth, 10, catalogue, "user_key", "product_id")["ndcg@10"]
        results["settings"][name] = {"options": options, "fit_seconds": seconds, "ndcg@10": ndcg}
        print(f"  {name:<48} fit {seconds:6.1f} s  NDCG@10 {ndcg:.4f}", flush=True)
    implicit_seconds, implicit_recs = implicit_als(spark, inter, truth.select("user_key").distinct(), k)
    ndcg = evaluation.ranking_metrics(implicit_recs, truth, 10, catalogue, "user_key", "product_id")["ndcg@10"]
    results["implicit"] = {"fit_seconds": implicit_seconds, "ndcg@10": ndcg}
    best = min(results["settings"].values(), key=lambda r: r["fit_seconds"])
    default = next(iter(results["settings"].values()))
    print(f"  {'implicit ' + version('implicit'):<48} fit {implicit_seconds:6.1f} s  NDCG@10 {ndcg:.4f}")
    print(f"  Spark / implicit: defaults {default['fit_seconds'] / implicit_seconds:.1f}x, "
          f"best setting {best['fit_seconds'] / implicit_seconds:.1f}x")
    out = Path(__file__).with_name(f"results-als-{events}.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"\nraw numbers: {out}")
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="/tmp/ecomlake-bench-ml")
    parser.add_argument("--als-grid", action="store_true",
                        help="only Spark ALS's own settings (blocks, storage levels, checkpoints) against implicit")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    root = Path(args.workdir) / f"n{args.events}"
    config = cfg.load("local", overrides=[
        f"generate.output={root}/raw", f"train.als_ranks=[{ALS['rank']}]", f"train.als_reg_params=[{ALS['reg_param']}]",
        f"train.als_alphas=[{ALS['alpha']}]", f"train.als_max_iter={ALS['max_iter']}"], lake=str(root / "lake"))
    spark = get_spark(config, "bench-ml")
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(str(root / "checkpoints"))
    if not lake.table_exists(spark, tables.GOLD_INTERACTIONS.path(config["lake_root"])):
        pipeline.run(spark, config, events=args.events)
        features.run(spark, config, AS_OF)
    if args.als_grid:
        return als_grid(spark, config, args.events)
    results = {"events": args.events, "train_seconds": {}, "metrics": {}}
    print(f"\n== fit time per model, {args.events:,} generated events, as of {AS_OF} ==")
    for task in train.TASKS:
        started = time.time()
        for run in train.run(spark, config, task, AS_OF):
            results["metrics"][f"{task}/{run['model']}"] = {k: v for k, v in run["metrics"].items()
                                                             if k in HEADLINE_METRICS}
        results["train_seconds"][task] = time.time() - started
    for task, seconds in results["train_seconds"].items():
        print(f"  train {task:<12} {seconds:8.1f} s")
    print("\n== held-out metrics of every model ==")
    for name, metrics in results["metrics"].items():
        print(f"  {name:<36} " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))

    inter = lake.read_partition(spark, config["lake_root"], tables.GOLD_INTERACTIONS, "as_of_date", AS_OF, "features")
    events = lake.read_table(spark, config["lake_root"], tables.SILVER_EVENTS)
    truth = recommend.truth_items(events, AS_OF, HORIZON).join(inter.select("user_key").distinct(), "user_key").cache()
    k, catalogue = 20, inter.select("product_id").distinct().count()
    users, items = recommend.index_frames(spark, inter)
    started = time.time()
    model = recommend.fit_als(inter, users, items, ALS["rank"], ALS["reg_param"], ALS["alpha"], ALS["max_iter"], 7)
    spark_seconds = time.time() - started
    spark_recs = recommend.als_recommend(model, users, items, truth, k)
    implicit_seconds, implicit_recs = implicit_als(spark, inter, truth.select("user_key").distinct(), k)
    print(f"\n== ALS, same interactions ({inter.count():,} pairs) and parameters {ALS} ==")
    print(f"  fit: Spark ML {spark_seconds:.1f} s, implicit {implicit_seconds:.1f} s, ratio {spark_seconds / implicit_seconds:.1f}x")
    for name, recs in (("spark", spark_recs), ("implicit", implicit_recs)):
        m = {**evaluation.ranking_metrics(recs, truth, 10, catalogue, "user_key", "product_id"),
             **evaluation.ranking_metrics(recs, truth, k, catalogue, "user_key", "product_id")}
        results[f"als_{name}"] = m
        print(f"  {name:<9} " + ", ".join(f"{key}={value:.4f}" for key, value in sorted(m.items())))
    results["als_fit_seconds"] = {"spark": spark_seconds, "implicit": implicit_seconds}
    out = Path(__file__).with_name(f"results-ml-{args.events}.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"\nraw numbers: {out}")
    spark.stop()


if __name__ == "__main__":
    main()

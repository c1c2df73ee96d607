"""The stacked review model's two settings, chosen without the test reviews.

  .venv/bin/python benchmarks/review_stack.py [--lake lakehouse]

On bronze/clothing_reviews (`ingest --source clothing_reviews`), with the `sentiment` job's split:
embeds every training review with MiniLM (~5 min on 2 cores), splits the training reviews again
by a hash of review_id (80 % inner training, 20 % validation) and prints the validation AUC of
`stacked_pipeline` for each embedding weight and penalty of the grid. The job's constants
(ecomlake.models.sentiment.STACK_EMBEDDING_WEIGHT, STACK_REG_PARAM) are the best row.
Not a test: numbers, written to benchmarks/results-review-stack.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake import config as cfg  # noqa: E402
from ecomlake import lake, tables  # noqa: E402
from ecomlake.models import sentiment  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402

log = logging.getLogger("bench-review-stack")
WEIGHTS = (1.0, 0.1, 0.01, 0.003)
REG_PARAMS = (1e-5, 3e-5, 1e-4)


def main() -> None:
    from pyspark import StorageLevel
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.sql import functions as F

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lakehouse")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = cfg.load("local", overrides=["spark.conf.spark.ui.enabled=false"], lake=args.lake)
    spark = get_spark(config, "bench-review-stack")
    seed, settings = config["train"]["seed"], config["sentiment"]
    reviews = sentiment.prepare(lake.read_table(spark, config["lake_root"], tables.BRONZE_CLOTHING_REVIEWS),
                                seed, settings["test_fraction"])
    train = reviews.where(~F.col("is_test"))
    started = time.time()
    embedded = sentiment.embedding_features(sentiment.embed(train.repartition(
        spark.sparkContext.defaultParallelism * 2))).persist(StorageLevel.MEMORY_AND_DISK)
    n = embedded.count()
    log.info(f"{n:,} training reviews embedded in {time.time() - started:.0f} s")
    inner = F.pmod(F.xxhash64(F.lit(seed + 1), "review_id"), F.lit(5)) == 0
    fit_rows, validation = embedded.where(~inner), embedded.where(inner)
    evaluator = BinaryClassificationEvaluator(labelCol="recommended", rawPredictionCol="rawPrediction")
    rows = []
    for weight, reg in itertools.product(WEIGHTS, REG_PARAMS):
        sentiment.STACK_EMBEDDING_WEIGHT, sentiment.STACK_REG_PARAM = weight, reg
        model = sentiment.stacked_pipeline("recommended", settings["vocabulary_size"]).fit(fit_rows)
        auc = evaluator.evaluate(model.transform(validation))
        rows.append({"embedding_weight": weight, "reg_param": reg, "validation_auc": round(auc, 4)})
        log.info(f"embedding weight {weight:<6} penalty {reg:<7} validation AUC {auc:.4f}")
    best = max(rows, key=lambda r: r["validation_auc"])
    log.info(f"best: embedding weight {best['embedding_weight']}, penalty {best['reg_param']} "
             f"(validation AUC {best['validation_auc']:.4f})")
    out = Path(__file__).with_name("results-review-stack.json")
    out.write_text(json.dumps({"training_reviews": n, "grid": rows, "best": best}, indent=2) + "\n")
    spark.stop()


if __name__ == "__main__":
    main()

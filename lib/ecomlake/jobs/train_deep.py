"""train_deep: deep models through Petastorm and Horovod, compared with the Spark ML baselines.

  ./spark-submit.sh train_deep wide_deep --as-of 2019-11-17 [--num-proc 2] [--launcher spark|horovodrun]
                    [--epochs 8] [--batch-size 256] [--learning-rate 0.002] [--resume]

wide_deep: Wide & Deep purchase propensity on gold/user_features + gold/user_labels (the same
features, label and 20 % user hold-out as `train propensity`). Spark encodes the rows (numeric
columns standardised with training-set statistics, top category through a vocabulary; the spec
is saved as spec.json beside the model) and writes Parquet; each Horovod worker reads its own
shard with Petastorm; rank 0 writes checkpoints and the model. The hold-out users are scored back
in Spark (mapInPandas) and the run is recorded in gold/model_runs (task propensity, model
wide_deep) next to the logistic regression, the recency baseline and the oracle AUC.
--launcher spark (default) runs the workers as Spark tasks (horovod.spark.run); horovodrun starts
local processes. --resume continues from the run's last checkpoint instead of starting over.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import evaluation, lake, runs, tables
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.deep import distributed, encode, scoring
from ecomlake.errors import ConfigError, InputError
from ecomlake.jobs.features import parse_as_of
from ecomlake.jobs.train import oracle_auc
from ecomlake.models import classify

MODELS = ("wide_deep",)


def _local_dir(path: str) -> str:
    if "://" in path and not path.startswith("file://"):
        raise ConfigError(f"train_deep keeps checkpoints on a shared local/NFS/DBFS-fuse path; got {path}")
    return path[len("file://"):] if path.startswith("file://") else path


def prepare_data(spark: SparkSession, config: dict, as_of: str, out_dir: str, num_files: int) -> tuple[dict, dict]:
    """Encode train and hold-out rows, write them as Parquet; returns (spec, row counts)."""
    root, seed = config["lake_root"], config["train"]["seed"]
    hint = f"features --as-of {as_of} (with events covering the label horizon)"
    uf = lake.read_partition(spark, root, tables.GOLD_USER_FEATURES, "as_of_date", as_of, hint)
    labels = lake.read_partition(spark, root, tables.GOLD_USER_LABELS, "as_of_date", as_of, hint)
    categories = classify.top_categories(uf)
    data = (classify.prepare(uf, categories)
            .join(uf.select("user_key", encode.CATEGORY_COLUMN), "user_key")
            .join(labels.select("user_key", F.col("purchased_next").cast("float").alias("label")), "user_key")
            .withColumn("_test", classify.holdout(F.col("user_key"), seed))
            .withColumn("row_id", F.xxhash64(F.lit(seed), "user_key"))
            .persist(StorageLevel.MEMORY_AND_DISK))
    train = data.where(~F.col("_test"))
    vocabulary = classify.top_categories(uf, n=50)
    spec = encode.build_spec(train, classify.feature_columns(categories), vocabulary)
    counts = {}
    for name, part in (("train", train), ("test", data.where(F.col("_test")))):
        # Enough files (row groups) that every worker gets a shard, in a stable order.
        (encode.encode(part, spec, keep=("row_id", "user_key", "label"))
         .repartition(num_files, "row_id").sortWithinPartitions("row_id")
         .write.mode("overwrite").parquet(f"{out_dir}/{name}"))
        counts[name] = spark.read.parquet(f"{out_dir}/{name}").count()
    data.unpersist()
    spec["categories"] = categories
    return spec, counts


def run(spark: SparkSession, config: dict, model_name: str, as_of: str, num_proc: int | None = None,
        launcher: str = "spark", epochs: int = 8, batch_size: int = 256, learning_rate: float = 0.002,
        resume: bool = False, audit_shards: bool = False) -> dict:
    if model_name not in MODELS:
        raise ConfigError(f"unknown deep model '{model_name}'; models: {', '.join(MODELS)}")
    as_of = parse_as_of(as_of)
    root = config["lake_root"]
    num_proc = num_proc or os.cpu_count() or 1
    if num_proc < 1 or epochs < 1 or batch_size < 1:
        raise ConfigError("--num-proc, --epochs and --batch-size must be positive")
    params = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "warmup_epochs": 1,
              "seed": config["train"]["seed"], "test_fraction": 0.2}
    versions = runs.input_versions(spark, root, [tables.GOLD_USER_FEATURES, tables.GOLD_USER_LABELS])
    run_record = {"run_id": runs.make_run_id("propensity", model_name, as_of, params)}
    model_dir = _local_dir(runs.model_dir(root, "propensity", run_record["run_id"]))
    checkpoint_dir = f"{model_dir}/checkpoints"
    if not resume:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    elif distributed.last_checkpoint_epoch(checkpoint_dir) == 0:
        raise InputError(f"--resume: no checkpoint in {checkpoint_dir}; run without --resume first")
    spec, counts = prepare_data(spark, config, as_of, f"{model_dir}/data", num_files=max(4, 2 * num_proc))
    if counts["train"] < batch_size * num_proc:
        raise InputError(f"{counts['train']} training rows are fewer than one batch per worker "
                         f"({batch_size} x {num_proc}): lower --batch-size")
    spec.update(params)
    spec.update({"train_url": f"file://{model_dir}/data/train", "train_rows": counts["train"],
                 "checkpoint_dir": checkpoint_dir, "model_path": f"{model_dir}/model.h5",
                 "threads": max(1, (os.cpu_count() or 1) // num_proc), "audit_shards": audit_shards})
    with open(f"{model_dir}/spec.json", "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
    results = distributed.launch(spec, num_proc, launcher)

    test = spark.read.parquet(f"{model_dir}/data/test")
    scored = scoring.keras_probabilities(test, spec["model_path"], spec, keep=("user_key", "label")).persist()
    metrics = evaluation.binary_metrics(scored, "label", "probability")
    horizon = lake.read_partition(spark, root, tables.GOLD_USER_LABELS, "as_of_date", as_of, "features") \
        .select("horizon_days").head()[0]
    auc = oracle_auc(spark, config, scored, as_of, horizon)
    if auc is not None:
        metrics["oracle_auc"] = auc
    history = results[0]["history"]
    record = {
        **run_record, "task": "propensity", "model": model_name, "is_baseline": False, "as_of": as_of,
        "params": params, "metrics": metrics, "input_versions": versions, "model_path": model_dir,
        "details": {"workers": len(results), "launcher": launcher, "train_rows": counts["train"],
                    "test_rows": counts["test"], "history": history,
                    "initial_epoch": results[0]["initial_epoch"],
                    "calibration": evaluation.calibration_table(scored, "label", "probability"),
                    "weights_identical_on_all_ranks": len({r["weights_sha1"] for r in results}) == 1},
    }
    runs.record(spark, root, [record])
    scored.unpersist()
    losses = history.get("loss", [])
    print(f"train_deep {model_name}: {len(results)} workers ({launcher}), epochs {results[0]['initial_epoch']}"
          f"->{epochs}, loss {losses[0] if losses else float('nan'):.4f} -> {losses[-1] if losses else float('nan'):.4f}; "
          + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return {"record": record, "workers": results, "spec": spec}


def main(argv=None) -> int:
    parser = job_parser("train_deep", __doc__)
    parser.add_argument("model", choices=MODELS, help="which deep model to train")
    parser.add_argument("--as-of", required=True, help="cutoff date of the features to train on")
    parser.add_argument("--num-proc", type=int, help="Horovod workers (default: the machine's cores)")
    parser.add_argument("--launcher", choices=("spark", "horovodrun"), default="spark")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256, help="per worker")
    parser.add_argument("--learning-rate", type=float, default=0.002, help="per worker (scaled by workers)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    return run_job("train_deep", parser, lambda spark, config, a: run(
        spark, config, a.model, a.as_of, a.num_proc, a.launcher, a.epochs, a.batch_size, a.learning_rate,
        a.resume), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

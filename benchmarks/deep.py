"""Deep-path benchmark: input rows/s and Horovod training samples/s for the Wide & Deep model.

  .venv/bin/python benchmarks/deep.py [--rows 1000000] [--batch-sizes 512,4096,16384] [--hidden 512,256]

1. Writes an encoded training set like train_deep's (row_id, label, category, 40 float columns) with
   Spark, then reads it once into TensorFlow with Petastorm (make_batch_reader ->
   make_petastorm_dataset) and once with pyarrow (Parquet row groups -> tf.data.from_tensor_slices):
   rows/s each.
2. Trains Wide & Deep with 1 and 2 Horovod workers (horovodrun launcher, Gloo; each worker gets
   cores / workers threads) at each batch size: samples/s over the epochs after the first (warm),
   the 2-worker / 1-worker ratio, and whether training is input-bound (epoch time with the real
   Petastorm input vs the same batches replayed from memory).
3. Explains the ratio with one more run per batch size, 1 worker on 1 thread: TensorFlow's own
   speed-up from a second thread (1 worker, 2 threads / 1 thread), Horovod's per-core scaling
   (2 workers x 1 thread / 1 worker x 1 thread) and so the best ratio 2 workers could reach against
   a 2-thread worker with perfect Horovod scaling (2 x one-thread rate / two-thread rate).
Not a test: numbers (raw JSON next to this file).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake.deep import distributed  # noqa: E402
from ecomlake.deep.encode import numeric_name  # noqa: E402

N_NUMERIC = 40


def write_training_set(rows: int, out: Path) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (SparkSession.builder.master("local[2]").appName("bench-deep-data")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    numeric = [F.randn(seed=i).cast("float").alias(numeric_name(i)) for i in range(N_NUMERIC)]
    df = spark.range(rows).select(F.col("id").alias("row_id"), (F.col("id") % 20).cast("int").alias("category"), *numeric)
    logit = sum(F.col(numeric_name(i)) * (0.5 if i % 2 else -0.3) for i in range(8))
    df = df.withColumn("label", (F.rand(seed=99) < 1 / (1 + F.exp(-logit))).cast("float"))
    df.repartition(16).write.mode("overwrite").parquet(str(out))
    spark.stop()


def petastorm_rows_per_second(url: str) -> float:
    import tensorflow as tf
    from petastorm import make_batch_reader
    from petastorm.tf_utils import make_petastorm_dataset

    started, rows = time.perf_counter(), 0
    with make_batch_reader(url, num_epochs=1, workers_count=2) as reader:
        for batch in make_petastorm_dataset(reader):
            rows += int(tf.shape(batch.label)[0])
    return rows / (time.perf_counter() - started)


def pyarrow_rows_per_second(path: Path) -> float:
    import pyarrow.parquet as pq
    import tensorflow as tf

    started, rows = time.perf_counter(), 0
    for file in sorted(path.glob("*.parquet")):
        pf = pq.ParquetFile(str(file))
        for g in range(pf.num_row_groups):
            table = pf.read_row_group(g)
            columns = {name: table.column(name).to_numpy() for name in table.column_names}
            # one tf.data element per row group, like Petastorm's batch reader
            for batch in tf.data.Dataset.from_tensors(columns):
                rows += int(tf.shape(batch["label"])[0])
    return rows / (time.perf_counter() - started)


def train_once(url, rows, workers, batch, hidden, workdir, cache_input, threads=None, epochs=3):
    threads = threads or max(1, (os.cpu_count() or 2) // workers)
    run_dir = workdir / f"w{workers}-t{threads}-b{batch}-{'mem' if cache_input else 'io'}"
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = {"numeric_columns": [f"x{i}" for i in range(N_NUMERIC)], "vocabulary": [f"c{i}" for i in range(20)],
            "train_url": url, "train_rows": rows, "epochs": epochs, "batch_size": batch, "learning_rate": 0.001,
            "warmup_epochs": 1, "seed": 7, "threads": threads,
            "hidden": hidden, "cache_input": cache_input, "reader_threads": 1,
            "checkpoint_dir": str(run_dir / "ckpt"), "model_path": str(run_dir / "model.h5")}
    results = distributed.launch(spec, workers, "horovodrun")
    steps = results[0]["steps_per_epoch"]
    warm = results[0]["epoch_seconds"][1:]  # the first epoch pays for graph tracing and reader start-up
    return steps * batch * workers * len(warm) / sum(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", default="512,4096,16384")
    parser.add_argument("--hidden", default="512,256", help="deep-part layer sizes")
    parser.add_argument("--workdir", default="/tmp/ecomlake-bench-deep")
    parser.add_argument("--input-only", action="store_true", help="measure only the input rates")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = Path(args.workdir)
    data = workdir / f"train-{args.rows}"
    if not data.exists():
        write_training_set(args.rows, data)
    url = f"file://{data}"
    hidden = [int(x) for x in args.hidden.split(",")]
    results: dict = {"rows": args.rows, "hidden": hidden, "cores": os.cpu_count()}
    results["input_rows_per_s"] = {"petastorm": petastorm_rows_per_second(url), "pyarrow": pyarrow_rows_per_second(data)}
    print(f"input: Petastorm {results['input_rows_per_s']['petastorm']:,.0f} rows/s, "
          f"pyarrow -> tf.data {results['input_rows_per_s']['pyarrow']:,.0f} rows/s", flush=True)
    results["training"] = []
    if args.input_only:
        return
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        one = train_once(url, args.rows, 1, batch, hidden, workdir, False)
        two = train_once(url, args.rows, 2, batch, hidden, workdir, False)
        memory = train_once(url, args.rows, 1, batch, hidden, workdir, True)
        one_thread = train_once(url, args.rows, 1, batch, hidden, workdir, False, threads=1)
        row = {"batch": batch, "one_worker": one, "two_workers": two, "ratio": two / one, "one_worker_in_memory": memory,
               "one_worker_one_thread": one_thread, "tf_two_thread_speedup": one / one_thread,
               "horovod_per_core_ratio": two / one_thread, "ratio_ceiling": 2 * one_thread / one}
        results["training"].append(row)
        print(f"batch {batch:>6}: 1 worker {one:>9,.0f} samples/s, 2 workers {two:>9,.0f} samples/s "
              f"(x{two / one:.2f}); 1 worker, input from memory {memory:>9,.0f} samples/s "
              f"({'input-bound' if memory > 1.2 * one else 'not input-bound'})", flush=True)
        print(f"              1 worker on 1 thread {one_thread:>9,.0f} samples/s: TensorFlow's 2nd thread "
              f"x{one / one_thread:.2f}, 2 workers / 1-thread worker x{two / one_thread:.2f}, so with "
              f"perfect Horovod scaling 2 workers reach at most x{2 * one_thread / one:.2f} of a 2-thread worker",
              flush=True)
    out = Path(__file__).with_name(f"results-deep-{args.rows}.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"raw numbers: {out}")


if __name__ == "__main__":
    main()

"""Deep-path benchmark: where the Petastorm input and Horovod's two workers lose time, Wide & Deep.

  .venv/bin/python benchmarks/deep.py [--rows 400000] [--batch-sizes 4096,16384] [--hidden 512,256]

1. Writes an encoded training set the way train_deep writes its shards (runner.write_shards:
   max(4, 2 x workers) files, one row group each; row_id, label, category, 40 float columns).
2. Input, one reader over all files, after its first element (steady state; medians of 3), per stage: the
   reader into tf.data elements, + stacking the columns into model inputs, + the row shuffle,
   + rebatch to 4,096: rows/s and CPU seconds per pass over the data, for stock Petastorm
   0.13.1, Petastorm with ecomlake's reader fixes (deep.petastorm_fixes) and a plain pyarrow
   reader of the same row groups (tf.data.from_generator). Also a profile of the stock reader
   (where its time goes) and each reader's start-up time.
3. Training at each batch size (Horovod through horovodrun, Gloo; samples/s over the epochs
   after the first):
   - one worker on 2 threads with the Petastorm input (fixed and stock) and with the same batches
     replayed from memory (how much the input holds training back; medians of --repeats runs);
   - one worker on 1 thread; two such workers run at the same time as independent jobs (what
     2 one-thread processes reach on this machine without any communication: the ceiling);
   - two one-thread Horovod workers with Horovod's defaults and with ecomlake's tuning
     (deep.horovod_*): their rate against one one-thread worker and against the ceiling.
Not a test: numbers (raw JSON next to this file).
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import glob
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake import config as cfg  # noqa: E402
from ecomlake.deep import distributed, petastorm_fixes  # noqa: E402
from ecomlake.deep.architecture import for_model  # noqa: E402
from ecomlake.deep.encode import numeric_name  # noqa: E402

N_NUMERIC = 40
WORKERS = 2
INPUT_BATCH = 4096
STAGES = ("reader -> tf.data", "+ stack columns", "+ shuffle rows", "+ rebatch")


def spec_for(url: str, rows: int) -> dict:
    return {"model": "wide_deep", "numeric_columns": [f"x{i}" for i in range(N_NUMERIC)],
            "vocabulary": [f"c{i}" for i in range(20)], "train_url": url, "train_rows": rows, "seed": 7}


def write_training_set(rows: int, out: Path) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from ecomlake.deep.runner import write_shards

    spark = (SparkSession.builder.master("local[2]").appName("bench-deep-data")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    numeric = [F.randn(seed=i).cast("float").alias(numeric_name(i)) for i in range(N_NUMERIC)]
    df = spark.range(rows).select(F.col("id").alias("row_id"), (F.col("id") % 20).cast("int").alias("category"), *numeric)
    logit = sum(F.col(numeric_name(i)) * (0.5 if i % 2 else -0.3) for i in range(8))
    df = df.withColumn("label", (F.rand(seed=99) < 1 / (1 + F.exp(-logit))).cast("float"))
    write_shards(df, str(out), max(4, 2 * WORKERS))
    spark.stop()


def pyarrow_elements(path: Path, columns: list[str]):
    """Row groups of the same files, read with pyarrow in shuffled order, as tf.data elements
    shaped like Petastorm's (a namedtuple of one array per column)."""
    import collections

    import numpy as np
    import pyarrow.parquet as pq
    import tensorflow as tf

    groups = [(f, g) for f in sorted(glob.glob(f"{path}/*.parquet")) for g in range(pq.ParquetFile(f).num_row_groups)]
    dtypes = {f.name: f.type.to_pandas_dtype() for f in pq.read_schema(groups[0][0])}

    def generate():
        rng = np.random.default_rng(7)
        while True:
            for i in rng.permutation(len(groups)):
                file, group = groups[i]
                table = pq.ParquetFile(file).read_row_group(group, columns=columns)
                yield tuple(table.column(c).to_numpy() for c in columns)

    row = collections.namedtuple("Row", columns)
    signature = tuple(tf.TensorSpec([None], tf.as_dtype(dtypes[c])) for c in columns)
    return tf.data.Dataset.from_generator(generate, output_signature=signature).map(lambda *t: row(*t))


def input_stages(path: Path, rows: int, source: str, passes: int = 20) -> dict:
    """rows/s and CPU s per pass at each stage of train_worker's input pipeline, one source."""
    import tensorflow as tf
    from petastorm import make_batch_reader
    from petastorm.tf_utils import make_petastorm_dataset

    spec = spec_for(f"file://{path}", rows)
    architecture = for_model(spec)
    columns = architecture.columns(spec)
    (petastorm_fixes.apply if source == "petastorm_fixed" else petastorm_fixes.remove)()
    result, n_groups = {}, len(glob.glob(f"{path}/*.parquet"))
    for depth, stage in enumerate(STAGES):
        started = time.perf_counter()
        reader = (make_batch_reader(spec["train_url"], num_epochs=None, schema_fields=columns, shuffle_row_groups=True,
                                    seed=7, workers_count=1) if source != "pyarrow" else contextlib.nullcontext())
        with reader:
            dataset = make_petastorm_dataset(reader) if source != "pyarrow" else pyarrow_elements(path, columns)
            if depth >= 1:
                dataset = dataset.map(lambda batch: architecture.to_xy(batch, spec))
            if depth >= 2:
                def shuffle_rows(x, y):
                    order = tf.random.shuffle(tf.range(tf.shape(y)[0]), seed=7)
                    return tf.nest.map_structure(lambda t: tf.gather(t, order), (x, y))
                dataset = dataset.map(shuffle_rows)
            if depth >= 3:
                dataset = dataset.rebatch(INPUT_BATCH)
            elements = iter(dataset.prefetch(2))
            next(elements)
            startup = time.perf_counter() - started
            per_pass = rows // INPUT_BATCH if depth >= 3 else n_groups
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(passes * per_pass):
                next(elements)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows_per_pass = per_pass * INPUT_BATCH if depth >= 3 else rows  # rebatch drops the last partial batch
        result[stage] = {"rows_per_s": passes * rows_per_pass / wall, "cpu_s_per_pass": cpu / passes, "startup_s": startup}
    petastorm_fixes.remove()
    return result


def reader_profile(path: Path, rows: int, passes: int = 10) -> dict:
    """Shares of the stock Petastorm reader's time (pool type dummy: all in this thread)."""
    from petastorm import make_batch_reader

    petastorm_fixes.remove()
    spec = spec_for(f"file://{path}", rows)
    columns = for_model(spec).columns(spec)
    n_groups = len(glob.glob(f"{path}/*.parquet"))
    with make_batch_reader(spec["train_url"], num_epochs=None, schema_fields=columns, reader_pool_type="dummy") as reader:
        batches = iter(reader)
        next(batches)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(passes * n_groups):
            next(batches)
        profile.disable()
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, primitive, own time, cumulative, callers)
    total = sum(own for _, _, own, _, _ in stats.values())

    def share(fragment: str, cumulative: bool = False) -> float:
        return sum(v[3] if cumulative else v[2] for k, v in stats.items() if fragment in k[2]) / total

    return {"read Parquet pages (read_row_group)": share("'read_row_group'"),
            "copy in unchanged order (Table.take, pyarrow.compute)": share("call_function"),
            "columns through pandas (to_pandas)": share("'to_pandas'", cumulative=True)}


def allreduce_worker(n_floats: int, tuning: dict, steps: int) -> float:
    """Milliseconds per allreduce of n_floats float32 between the Horovod workers, nothing else running."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    distributed.drop_launcher_placeholders(os.environ)
    os.environ.update(distributed.horovod_environment(tuning))
    tf.config.threading.set_intra_op_parallelism_threads(1)
    hvd.init()
    gradient = tf.ones([n_floats])
    compression = distributed.optimizer_options(tuning, hvd)["compression"]
    for _ in range(10):
        hvd.allreduce(gradient, name="warm", compression=compression)
    started = time.perf_counter()
    for _ in range(steps):
        hvd.allreduce(gradient, name="timed", compression=compression)
    return 1000 * (time.perf_counter() - started) / steps


def allreduce_ms(n_floats: int, tuning: dict, steps: int = 300) -> float:
    import horovod.runner

    results = horovod.runner.run(allreduce_worker, args=(n_floats, tuning, steps), np=WORKERS,
                                 hosts=f"localhost:{WORKERS}", use_gloo=True, verbose=0)
    return max(results)


def gradient_floats(hidden: list[int]) -> int:
    spec = {**spec_for("", 0), "hidden": hidden}
    return int(for_model(spec).build(spec).count_params())


def train_once(url: str, rows: int, workers: int, batch: int, hidden: list[int], workdir: Path, *, threads: int,
               cache_input: bool = False, tuning: dict | None = None, fixes: bool = True, epochs: int = 6,
               tag: str = "") -> float:
    run_dir = workdir / f"w{workers}-t{threads}-b{batch}-{'mem' if cache_input else 'io'}{tag}"
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = {**spec_for(url, rows), "epochs": epochs, "batch_size": batch, "learning_rate": 0.001,
            "warmup_epochs": 1, "threads": threads, "hidden": hidden, "cache_input": cache_input, "reader_threads": 1,
            "horovod": tuning or {}, "petastorm_fixes": fixes,
            "checkpoint_dir": str(run_dir / "ckpt"), "model_path": str(run_dir / "model.h5")}
    results = distributed.launch(spec, workers, "horovodrun")
    steps = results[0]["steps_per_epoch"]
    warm = results[0]["epoch_seconds"][1:]  # the first epoch pays for graph tracing and reader start-up
    return steps * batch * workers * len(warm) / sum(warm)


def train_concurrently(copies: int, kwargs: dict) -> list[float]:
    """`copies` independent one-worker trainings started at the same time (separate processes)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        outputs = [Path(folder) / f"copy{i}.out" for i in range(copies)]
        procs = []
        for i, output in enumerate(outputs):
            with open(output, "w") as out:  # files, not pipes: a full pipe would stall one copy
                procs.append(subprocess.Popen([sys.executable, __file__, "--one-run",
                                               json.dumps({**kwargs, "tag": f"-copy{i}"})],
                                              stdout=out, stderr=subprocess.DEVNULL, text=True))
        for proc in procs:
            if proc.wait():
                raise RuntimeError(f"a concurrent training run failed (exit {proc.returncode})")
        return [float(output.read_text().strip().splitlines()[-1]) for output in outputs]


def one_run(arguments: str) -> None:
    kwargs = json.loads(arguments)
    kwargs["workdir"] = Path(kwargs["workdir"])
    print(train_once(**kwargs), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--batch-sizes", default="4096,16384")
    parser.add_argument("--hidden", default="512,256", help="deep-part layer sizes")
    parser.add_argument("--epochs", type=int, default=6, help="per training run; the first is not timed")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each one-worker input comparison")
    parser.add_argument("--workdir", default="/tmp/ecomlake-bench-deep")
    parser.add_argument("--input-only", action="store_true", help="measure only the input")
    parser.add_argument("--one-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.one_run:
        return one_run(args.one_run)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # Petastorm on pyarrow's legacy dataset API
    workdir = Path(args.workdir)
    data = workdir / f"shards-{args.rows}"
    if not data.exists():
        write_training_set(args.rows, data)
    url = f"file://{data}"
    hidden = [int(x) for x in args.hidden.split(",")]
    results: dict = {"rows": args.rows, "hidden": hidden, "cores": os.cpu_count(), "epochs": args.epochs,
                     "row_groups": len(glob.glob(f"{data}/*.parquet"))}

    results["stock_reader_profile"] = reader_profile(data, args.rows)
    print("stock Petastorm reader, share of its time: " + ", ".join(
        f"{k} {v:.0%}" for k, v in results["stock_reader_profile"].items()), flush=True)
    sources = ("petastorm_stock", "petastorm_fixed", "pyarrow")
    repeats: dict = {source: [] for source in sources}
    for _ in range(3):  # interleaved, medians: one pass takes a fraction of a second
        for source in sources:
            repeats[source].append(input_stages(data, args.rows, source))
    results["input"] = {source: {stage: {field: statistics.median(r[stage][field] for r in repeats[source])
                                         for field in ("rows_per_s", "cpu_s_per_pass", "startup_s")}
                                 for stage in STAGES} for source in sources}
    print(f"input ({results['row_groups']} row groups of {args.rows // results['row_groups']:,} rows), rows/s "
          f"[CPU s per pass]:", flush=True)
    print(f"  {'stage':<20} {'Petastorm stock':>24} {'Petastorm fixed':>24} {'pyarrow':>24}  fixed/pyarrow", flush=True)
    for stage in STAGES:
        cells = [results["input"][s][stage] for s in ("petastorm_stock", "petastorm_fixed", "pyarrow")]
        print(f"  {stage:<20} " + " ".join(f"{c['rows_per_s']:>14,.0f} [{c['cpu_s_per_pass']:.3f}]" for c in cells)
              + f"  {cells[1]['rows_per_s'] / cells[2]['rows_per_s']:.0%}", flush=True)
    print("  start-up to the first element: " + ", ".join(
        f"{s} {results['input'][s][STAGES[0]]['startup_s']:.2f} s" for s in results["input"]), flush=True)
    results["training"] = []
    if args.input_only:
        return write_results(results)

    tuned = cfg.horovod_tuning(cfg.defaults())
    results["horovod_tuning"] = tuned
    floats = gradient_floats(hidden)
    results["allreduce"] = {"gradient_floats": floats, "ms_one_float": allreduce_ms(1, {}),
                            "ms_horovod_defaults": allreduce_ms(floats, {}), "ms_tuned": allreduce_ms(floats, tuned),
                            "ms_tuned_fp16": allreduce_ms(floats, {**tuned, "compression": "fp16"})}
    print("one allreduce between 2 workers, nothing else running: 1 float {ms_one_float:.2f} ms; the model's "
          "{gradient_floats:,} gradients {ms_horovod_defaults:.2f} ms (Horovod's defaults), {ms_tuned:.2f} ms "
          "(tuned), {ms_tuned_fp16:.2f} ms (tuned, fp16 on the wire)".format(**results["allreduce"]), flush=True)
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        common = {"url": url, "rows": args.rows, "batch": batch, "hidden": hidden, "workdir": workdir,
                  "epochs": args.epochs}
        row: dict = {"batch": batch}
        # Input against memory moves only a few per cent: interleaved repeats, medians.
        runs = {"one_worker": {}, "one_worker_in_memory": {"cache_input": True},
                "one_worker_stock_petastorm": {"fixes": False}}
        for _ in range(args.repeats):
            for key, options in runs.items():
                row.setdefault(f"{key}_runs", []).append(train_once(workers=1, threads=2, **options, **common))
        row.update({key: statistics.median(row[f"{key}_runs"]) for key in runs})
        row["one_thread"] = train_once(workers=1, threads=1, **common)
        row["two_independent_one_thread"] = sum(train_concurrently(2, {**common, "workdir": str(workdir),
                                                                       "workers": 1, "threads": 1}))
        row["two_workers_horovod_defaults"] = train_once(workers=2, threads=1, tag="-defaults", **common)
        row["two_workers_tuned"] = train_once(workers=2, threads=1, tuning=tuned, **common)
        one_thread, ceiling = row["one_thread"], row["two_independent_one_thread"]
        row.update({"input_ratio": row["one_worker"] / row["one_worker_in_memory"],
                    "input_ratio_stock_petastorm": row["one_worker_stock_petastorm"] / row["one_worker_in_memory"],
                    "ceiling_ratio": ceiling / one_thread,
                    "horovod_defaults_ratio": row["two_workers_horovod_defaults"] / one_thread,
                    "tuned_ratio": row["two_workers_tuned"] / one_thread,
                    "horovod_defaults_efficiency": row["two_workers_horovod_defaults"] / ceiling,
                    "tuned_efficiency": row["two_workers_tuned"] / ceiling})
        results["training"].append(row)
        print(f"batch {batch:>6}: 1 worker (2 threads) {row['one_worker']:>9,.0f} samples/s from Petastorm, "
              f"{row['one_worker_in_memory']:>9,.0f} from memory ({row['input_ratio']:.0%}; stock Petastorm "
              f"{row['input_ratio_stock_petastorm']:.0%})", flush=True)
        print(f"              1 worker on 1 thread {one_thread:>9,.0f}; two of them run independently at once "
              f"{ceiling:>9,.0f} (x{row['ceiling_ratio']:.2f}: the ceiling)", flush=True)
        print(f"              2 Horovod workers x 1 thread: defaults {row['two_workers_horovod_defaults']:>9,.0f} "
              f"(x{row['horovod_defaults_ratio']:.2f}, {row['horovod_defaults_efficiency']:.0%} of the ceiling), "
              f"tuned {row['two_workers_tuned']:>9,.0f} (x{row['tuned_ratio']:.2f}, "
              f"{row['tuned_efficiency']:.0%} of the ceiling)", flush=True)
    write_results(results)


def write_results(results: dict) -> None:
    out = Path(__file__).with_name(f"results-deep-{results['rows']}.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"raw numbers: {out}")


if __name__ == "__main__":
    main()

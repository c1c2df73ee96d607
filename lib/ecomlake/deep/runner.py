"""One training pipeline for every deep model: attempt directory -> Parquet shards -> Horovod ->
score back in Spark -> gold/model_runs.

A model plugs in as a `DeepTask` (see ecomlake.deep.tasks): its run parameters, how Spark writes
its training shards, and how the trained model is evaluated against its baselines. The runner
does the rest the same way for all of them:

- every training writes into a new directory, <deep.local_dir>/models/<task>/<run_id>/<attempt>
  (checkpoints, data, spec.json, model.h5) and records the run pointing at it once the model is
  written, so a re-train never writes over a model a gold/model_runs row points to;
- `resume` continues the newest attempt holding a checkpoint: in place when no row points to it
  (an interrupted run), else in a new attempt that starts from a copy of its checkpoints; the
  epoch count is not part of the run_id, so `--resume --epochs N` extends the same run;
- too few training rows for one batch per worker stop the run with the task's hint;
- the spec (the task's encoding plus the run's parameters) is saved as spec.json beside the model
  and handed to the Horovod workers (`distributed.launch`), then to Spark scoring;
- the task's records (the trained model and its baselines) are written in one MERGE.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from ecomlake import config as cfg
from ecomlake import runs, tables
from ecomlake.deep import distributed
from ecomlake.deep.distributed import local_path
from ecomlake.errors import ConfigError, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOptions:
    """How to train, whatever the model (the job's flags)."""
    num_proc: int
    launcher: str = "spark"
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 0.002
    resume: bool = False
    audit_shards: bool = False
    model_seed: int | None = None  # initial weights and shuffling; None: train.seed (the split's seed)


class FrameCache:
    """The DataFrames a training persists, unpersisted together when it ends (also when it fails)."""

    def __init__(self):
        self._frames: list[DataFrame] = []

    def persist(self, df: DataFrame) -> DataFrame:
        self._frames.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    def release(self) -> None:
        for df in self._frames:
            df.unpersist()
        self._frames.clear()


@dataclass
class Prepared:
    """What a task's `prepare` wrote and keeps for `evaluate`."""
    train_rows: int
    spec: dict                                     # the task's part of spec.json (encoding, vocabulary size)
    details: dict = field(default_factory=dict)    # added to the trained model's record
    frames: dict = field(default_factory=dict)     # DataFrames (and values) evaluate reads


@dataclass
class Trained:
    """A finished training: what `evaluate` needs to score it and build its records."""
    task: str
    model: str
    as_of: str | None
    run_id: str
    model_dir: str
    params: dict
    input_versions: dict
    spec: dict
    workers: list[dict]
    launcher: str
    details: dict

    def record(self, metrics: dict, **details) -> dict:
        """The trained model's gold/model_runs row."""
        return runs.model_run(self.task, self.model, self.as_of, self.params, self.input_versions, metrics,
                              {**worker_details(self.workers, self.launcher), **self.details, **details},
                              model_path=self.model_dir, run_id=self.run_id)

    def baseline(self, name: str, metrics: dict, **details) -> dict:
        """A baseline's row, evaluated on the same rows (its run_id from the same parameters)."""
        return runs.model_run(self.task, name, self.as_of, self.params, self.input_versions, metrics, details or None,
                              baseline=True, run_id=runs.make_run_id(self.task, name, self.as_of, identity(self.params)))


class DeepTask:
    """A deep model as the runner trains it. Subclasses set `model`, `task`, `inputs` and implement
    `prepare` and `evaluate`."""
    model: str
    task: str
    inputs: tuple[tables.Table, ...] = ()
    needs_as_of = True
    rows_name = "training rows"
    rows_key = "train_rows"   # the details key of the training row count in gold/model_runs

    def params(self, config: dict, as_of: str | None) -> dict:
        """The task's own run parameters (they join the run_id with the training options)."""
        return {}

    def too_few_hint(self, params: dict) -> str:
        """What to change when the training rows do not fill one batch per worker."""
        return "lower --batch-size"

    def prepare(self, spark: SparkSession, config: dict, as_of: str | None, params: dict, model_dir: str,
                num_files: int, cache: FrameCache) -> Prepared:
        """Write the training shards to <model_dir>/data/train (`write_shards`); persist through `cache`."""
        raise NotImplementedError

    def evaluate(self, spark: SparkSession, config: dict, prepared: Prepared, trained: Trained,
                 cache: FrameCache) -> list[dict]:
        """Score the trained model and its baselines on held-out rows; the trained model's record first."""
        raise NotImplementedError


def worker_details(results: list[dict], launcher: str) -> dict:
    """What every deep run records about its training: workers, launcher, loss history, the epoch
    it started from, and whether all ranks ended with the same weights (they must: Horovod
    averages the gradients)."""
    return {"workers": len(results), "launcher": launcher, "history": results[0]["history"],
            "initial_epoch": results[0]["initial_epoch"],
            "weights_identical_on_all_ranks": len({r["weights_sha1"] for r in results}) == 1}


def write_shards(rows: DataFrame, path: str, num_files: int) -> int:
    """Training rows (with a `row_id`) as Parquet in num_files files, each sorted by row_id: every
    worker gets row groups and the order is stable from run to run. Returns the rows written."""
    (rows.repartition(num_files, "row_id").sortWithinPartitions("row_id")
     .write.mode("overwrite").parquet(path))
    return rows.sparkSession.read.parquet(path).count()


def identity(params: dict) -> dict:
    """The parameters that make a deep run's run_id: all but the epoch count, so that
    `--resume --epochs N` extends the same run (its row records the epochs reached)."""
    return {k: v for k, v in params.items() if k != "epochs"}


def _local_dir(path: str) -> str:
    if "://" in path and not path.startswith("file://"):
        raise ConfigError(f"train_deep keeps checkpoints on a shared local/NFS/DBFS-fuse path; got {path}")
    return local_path(path)


def _attempts_with_checkpoint(run_dir: str) -> list[str]:
    """A run's attempt directories that hold a committed checkpoint, newest first."""
    if not os.path.isdir(run_dir):
        return []
    attempts = (os.path.join(run_dir, entry) for entry in sorted(os.listdir(run_dir), reverse=True))
    return [a for a in attempts if distributed.last_checkpoint_epoch(f"{a}/checkpoints") > 0]


def start_attempt(spark: SparkSession, config: dict, task: str, model: str, as_of: str | None, params: dict,
                  resume: bool) -> tuple[str, str]:
    """run_id and this attempt's model directory (see the module docstring for --resume)."""
    root, models_root = config["lake_root"], cfg.deep_local_dir(config)
    run_id = runs.make_run_id(task, model, as_of, identity(params))
    if not resume:
        return run_id, _local_dir(runs.new_attempt_dir(models_root, task, run_id))
    run_dir = os.path.normpath(_local_dir(runs.model_dir(models_root, task, run_id)))
    attempts = _attempts_with_checkpoint(run_dir)
    if not attempts:
        raise InputError(f"--resume: no checkpoint of this {model} run under {run_dir}; run without --resume first")
    previous = attempts[0]
    done = distributed.last_checkpoint_epoch(f"{previous}/checkpoints")
    if params["epochs"] <= done:
        raise InputError(f"--resume: run {run_id} ({model}) already has {done} epoch(s) in {previous}; "
                         f"pass --epochs greater than {done} to train it further")
    recorded = {os.path.normpath(_local_dir(p)) for p in runs.recorded_model_paths(spark, root, run_id)}
    if previous not in recorded:
        log.info("--resume: continuing %s from epoch %d in %s", run_id, done, previous)
        return run_id, previous
    model_dir = _local_dir(runs.new_attempt_dir(models_root, task, run_id))
    shutil.copytree(f"{previous}/checkpoints", f"{model_dir}/checkpoints")
    log.info("--resume: continuing %s from epoch %d of the recorded %s in a new attempt %s",
             run_id, done, previous, model_dir)
    return run_id, model_dir


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if isinstance(v, (int, float)))


def training_params(config: dict, deep_task: DeepTask, as_of: str | None, options: TrainingOptions) -> dict:
    """The run's parameters (recorded; all but the epochs make its run_id). `seed` is train.seed,
    which also draws the hold-out split; model_seed is there only when given, so a default run
    keeps the run_id earlier releases gave it."""
    params = {"epochs": options.epochs, "batch_size": options.batch_size, "learning_rate": options.learning_rate,
              "warmup_epochs": 1, "seed": config["train"]["seed"], **deep_task.params(config, as_of)}
    if options.model_seed is not None:
        params["model_seed"] = options.model_seed
    return params


def worker_seed(params: dict) -> int:
    """What the workers seed the initial weights and the shuffling with: model_seed, else train.seed.
    The split (prepared from params["seed"]) stays the one the baselines are scored on."""
    return params.get("model_seed", params["seed"])


def train(spark: SparkSession, config: dict, deep_task: DeepTask, as_of: str | None, options: TrainingOptions) -> dict:
    """Train one deep model end to end; returns {"record": the trained model's row, "records": all
    rows recorded (baselines after it), "workers": each rank's result, "spec"}."""
    if options.num_proc < 1 or options.epochs < 1 or options.batch_size < 1:
        raise ConfigError("--num-proc, --epochs and --batch-size must be positive")
    root = config["lake_root"]
    params = training_params(config, deep_task, as_of, options)
    versions = runs.input_versions(spark, root, list(deep_task.inputs))
    run_id, model_dir = start_attempt(spark, config, deep_task.task, deep_task.model, as_of, params, options.resume)
    cache = FrameCache()
    try:
        prepared = deep_task.prepare(spark, config, as_of, params, model_dir, max(4, 2 * options.num_proc), cache)
        if prepared.train_rows < options.batch_size * options.num_proc:
            raise InputError(f"{prepared.train_rows} {deep_task.rows_name} are fewer than one batch per worker "
                             f"({options.batch_size} x {options.num_proc}): {deep_task.too_few_hint(params)}")
        spec = {**params, **prepared.spec, "model": deep_task.model, "train_url": f"file://{model_dir}/data/train",
                "train_rows": prepared.train_rows, "checkpoint_dir": f"{model_dir}/checkpoints",
                "model_path": f"{model_dir}/model.h5", "audit_shards": options.audit_shards,
                "threads": max(1, (os.cpu_count() or 1) // options.num_proc),
                "horovod": cfg.horovod_tuning(config), "petastorm_fixes": config["deep"]["petastorm_fixes"]}
        spec["seed"] = worker_seed(params)
        with open(f"{model_dir}/spec.json", "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2)
        workers = distributed.launch(spec, options.num_proc, options.launcher)
        trained = Trained(deep_task.task, deep_task.model, as_of, run_id, model_dir, params, versions, spec,
                          workers, options.launcher, {deep_task.rows_key: prepared.train_rows, **prepared.details})
        records = deep_task.evaluate(spark, config, prepared, trained, cache)
        runs.record(spark, root, records)
    finally:
        cache.release()
    losses = workers[0]["history"].get("loss", [])
    log.info("train_deep %s: %d workers (%s), epochs %d -> %d, loss %s", deep_task.model, len(workers),
             options.launcher, workers[0]["initial_epoch"], options.epochs,
             f"{losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "not trained further")
    for record in records:
        log.info("train_deep %s %-24s %s", record["task"], record["model"], _metrics_text(record["metrics"]))
    return {"record": records[0], "records": records, "workers": workers, "spec": spec}

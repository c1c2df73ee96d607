"""Horovod-distributed Keras training over Petastorm shards, and its two launchers.

`train_worker(spec)` runs in every Horovod process:
- pins one GPU per local rank when GPUs are visible (NCCL on a GPU cluster), else limits CPU
  threads to spec["threads"] (Gloo on CPU);
- reads its own shard of the training Parquet (`make_batch_reader(cur_shard=rank,
  shard_count=size)`), row groups assigned round-robin, so shards are disjoint and cover the data;
- scales the learning rate by the number of workers with a warm-up (and the architecture's step
  decay, if it has one), broadcasts rank 0's weights at the start, averages metrics across workers
  and, after every epoch, the statistics each worker keeps itself (batch normalisation's moving
  mean and variance);
- only rank 0 writes checkpoints (after every epoch) and the final model; a run with the same
  checkpoint folder resumes from the last epoch written (every rank reads it: the folder is on a
  path all workers see).
Checkpoints hold the model's weights and the optimizer's state (Adam's moments and its iteration
count, through tf.train.Checkpoint), so a resumed run continues the same optimisation. They are
written atomically: the files go to a temporary folder beside the checkpoints, which is renamed
(os.replace) to a new name; then state.json, which names the current checkpoint and its epoch, is
replaced the same way (the commit point); older checkpoints are deleted after that. A crash at
any point leaves state.json naming a complete checkpoint. The final model is also written to a
temporary file and renamed.
Launchers: `launch(spec, num_proc, "spark")` runs the workers as Spark tasks (horovod.spark.run);
`"horovodrun"` starts them as local processes (horovod.runner.run, the Python form of horovodrun).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid

from ecomlake.deep.architecture import for_model

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
CHECKPOINT_PREFIX = "ckpt"
WRITING_PREFIX = ".writing-"


def local_path(url_or_path: str) -> str:
    """file:///x -> /x: Keras and os need plain paths, Petastorm needs the URL."""
    return url_or_path[len("file://"):] if url_or_path.startswith("file://") else url_or_path


def checkpoint_state(checkpoint_dir: str) -> dict | None:
    """The committed checkpoint's state (epoch, checkpoint, logs), or None. A state.json of the
    layout before optimizer state was saved (no "checkpoint") counts as none."""
    path = os.path.join(local_path(checkpoint_dir), STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    return state if "checkpoint" in state else None


def last_checkpoint_epoch(checkpoint_dir: str) -> int:
    state = checkpoint_state(checkpoint_dir)
    return int(state["epoch"]) if state else 0


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_json(path: str, value: dict) -> None:
    """Write JSON to a temporary file in the same folder, flush it to disk, rename it over path."""
    fd, tmp = tempfile.mkstemp(prefix=WRITING_PREFIX, suffix=".json", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(checkpoint_dir: str, model, optimizer, epoch: int, logs: dict | None = None) -> str:
    """Checkpoint `epoch` (epochs completed): model weights and optimizer state, atomically (see
    the module docstring). Returns the checkpoint's prefix path."""
    import tensorflow as tf

    checkpoint_dir = local_path(checkpoint_dir)
    os.makedirs(checkpoint_dir, exist_ok=True)
    name = f"epoch-{epoch:04d}-{uuid.uuid4().hex[:6]}"  # never the name of an existing checkpoint
    tmp = tempfile.mkdtemp(prefix=WRITING_PREFIX, dir=checkpoint_dir)
    try:
        tf.train.Checkpoint(model=model, optimizer=optimizer).write(os.path.join(tmp, CHECKPOINT_PREFIX))
        for entry in os.listdir(tmp):
            _fsync(os.path.join(tmp, entry))
        os.replace(tmp, os.path.join(checkpoint_dir, name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(checkpoint_dir)
    _replace_json(os.path.join(checkpoint_dir, STATE_FILE), {
        "epoch": int(epoch), "checkpoint": f"{name}/{CHECKPOINT_PREFIX}",
        "optimizer_iterations": int(optimizer.iterations.numpy()),
        "logs": {k: float(v) for k, v in (logs or {}).items()}})
    for entry in os.listdir(checkpoint_dir):  # older checkpoints, leftovers of interrupted writes
        target = os.path.join(checkpoint_dir, entry)
        if entry in (name, STATE_FILE):
            continue
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            os.remove(target)
    log.info("checkpoint of epoch %d written to %s", epoch, os.path.join(checkpoint_dir, name))
    return os.path.join(checkpoint_dir, name, CHECKPOINT_PREFIX)


def restore_checkpoint(checkpoint_dir: str, model, optimizer) -> int:
    """Load the committed checkpoint into a built model and its (not yet used) optimizer; returns
    the epochs it holds (0 and nothing loaded when there is none)."""
    import tensorflow as tf

    state = checkpoint_state(checkpoint_dir)
    if state is None:
        return 0
    optimizer.build(model.trainable_variables)  # create the moments so they are restored now
    (tf.train.Checkpoint(model=model, optimizer=optimizer)
     .read(os.path.join(local_path(checkpoint_dir), state["checkpoint"]))
     .assert_existing_objects_matched())
    return int(state["epoch"])


def save_model(model, path: str) -> None:
    """model.save to a temporary file in the same folder (same suffix: it picks the format), renamed."""
    path = local_path(path)
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    tmp = os.path.join(folder, f"{WRITING_PREFIX}{uuid.uuid4().hex[:6]}-{name}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):  # a SavedModel folder (a path without .h5/.keras)
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def shard_row_ids(url: str, rank: int, size: int) -> list[int]:
    """The row_id values of one shard, read once (audits that shards are disjoint and complete)."""
    from petastorm import make_batch_reader

    ids: list[int] = []
    with make_batch_reader(url, cur_shard=rank, shard_count=size, num_epochs=1, schema_fields=["row_id"],
                           shuffle_row_groups=False, workers_count=1) as reader:
        for batch in reader:
            ids.extend(int(x) for x in batch.row_id)
    return ids


def train_worker(spec: dict) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import hashlib

    import numpy as np
    import tensorflow as tf
    import horovod.tensorflow.keras as hvd
    from petastorm import make_batch_reader
    from petastorm.tf_utils import make_petastorm_dataset

    dropped_placeholders = drop_launcher_placeholders(os.environ)
    if spec.get("petastorm_fixes", True):
        from ecomlake.deep import petastorm_fixes

        petastorm_fixes.apply()
    tuning = spec.get("horovod", {})
    os.environ.update(horovod_environment(tuning))
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        tf.config.experimental.set_memory_growth(gpus[hvd.local_rank()], True)
        tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
    else:
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(1)

    checkpoint_dir = local_path(spec["checkpoint_dir"])
    architecture = for_model(spec)
    model = architecture.build(spec)
    scaled_lr = spec["learning_rate"] * size
    optimizer = hvd.DistributedOptimizer(tf.keras.optimizers.Adam(learning_rate=scaled_lr), **optimizer_options(tuning, hvd))
    # Every rank loads the checkpoint (weights and optimizer state); rank 0's are broadcast anyway.
    initial_epoch = restore_checkpoint(checkpoint_dir, model, optimizer)
    if initial_epoch:
        optimizer.learning_rate = scaled_lr  # this run's worker count sets it, not the saved value
    model.compile(optimizer=optimizer, loss=architecture.loss, metrics=architecture.metrics())
    steps = max(1, spec["train_rows"] // (spec["batch_size"] * size))
    callbacks = [
        hvd.callbacks.BroadcastGlobalVariablesCallback(0),
        hvd.callbacks.MetricAverageCallback(),
        hvd.callbacks.LearningRateWarmupCallback(initial_lr=scaled_lr, warmup_epochs=spec["warmup_epochs"],
                                                 steps_per_epoch=steps, verbose=0),
        # A callable multiplier holds the rate (a number would decay it exponentially from start).
        *[hvd.callbacks.LearningRateScheduleCallback(initial_lr=scaled_lr, multiplier=lambda epoch, m=multiplier: m,
                                                     start_epoch=start, steps_per_epoch=steps)
          for start, multiplier in architecture.learning_rate_steps(spec["epochs"])],
    ]
    import time

    class AverageLocalStatistics(tf.keras.callbacks.Callback):
        """Batch normalisation's moving mean and variance are updated from each worker's own
        batches, not through the averaged gradients: average them across workers after every
        epoch (before rank 0's checkpoint), so that every rank holds the same model."""
        def on_epoch_end(self, epoch, logs=None):
            for i, variable in enumerate(v for v in self.model.non_trainable_variables if v.dtype.is_floating):
                variable.assign(hvd.allreduce(variable, name=f"local_statistic_{i}"))

    epoch_seconds: list[float] = []
    if size > 1:
        callbacks.append(AverageLocalStatistics())

    class EpochTimer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.started)

    callbacks.append(EpochTimer())
    if rank == 0:
        class Checkpoint(tf.keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                save_checkpoint(checkpoint_dir, self.model, self.model.optimizer, epoch + 1, logs)

        callbacks.append(Checkpoint())

    columns = architecture.columns(spec)

    def to_xy(batch):
        return architecture.to_xy(batch, spec)

    seen = shard_row_ids(spec["train_url"], rank, size) if spec.get("audit_shards") else []
    history: dict = {}
    if spec["epochs"] > initial_epoch:
        with make_batch_reader(spec["train_url"], cur_shard=rank, shard_count=size, num_epochs=None,
                               schema_fields=columns, shuffle_row_groups=True, seed=spec["seed"] + rank,
                               workers_count=spec.get("reader_threads", 1)) as reader:
            # Whole row groups, never single rows: stack the columns of each Petastorm row-group
            # batch, shuffle its rows with one gather (row groups come in shuffled order), then
            # re-cut into training batches. Per-row unbatch/shuffle/batch cost more CPU than the
            # model on 2 cores (see the deep benchmark in the README).
            def shuffle_rows(x, y):
                order = tf.random.shuffle(tf.range(tf.shape(y)[0]), seed=spec["seed"] + rank)
                return tf.nest.map_structure(lambda t: tf.gather(t, order), (x, y))

            dataset = (make_petastorm_dataset(reader).map(to_xy).map(shuffle_rows)
                       .rebatch(spec["batch_size"]))
            if spec.get("cache_input"):  # benchmark: the first epoch's batches, replayed from memory
                dataset = dataset.take(steps).cache().repeat()
            dataset = dataset.prefetch(2)
            fit = model.fit(dataset, epochs=spec["epochs"], initial_epoch=initial_epoch, steps_per_epoch=steps,
                            callbacks=callbacks, verbose=0)
            history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    if rank == 0:
        save_model(model, spec["model_path"])
    weights = model.get_weights()
    digest = hashlib.sha1(b"".join(np.ascontiguousarray(w).tobytes() for w in weights)).hexdigest()
    return {"rank": rank, "size": size, "initial_epoch": initial_epoch, "history": history,
            "optimizer_iterations": int(optimizer.iterations.numpy()),
            "weights_sha1": digest, "row_ids": seen, "steps_per_epoch": steps, "epoch_seconds": epoch_seconds,
            "dropped_placeholders": dropped_placeholders}


# horovod.runner.run (0.28.1) exports these as the text "(None,)" (a stray comma in its argument
# defaults). Horovod reads that as 0: a zero cycle time makes each worker's background thread
# negotiate without pause, using a whole core, and a zero cache capacity turns the response cache
# off. Dropping them before hvd.init() restores the defaults (measured in the README's deep benchmark).
LAUNCHER_PLACEHOLDER = "(None,)"
PLACEHOLDER_VARIABLES = ("HOROVOD_CYCLE_TIME", "HOROVOD_CACHE_CAPACITY")


def drop_launcher_placeholders(environ) -> list[str]:
    """Remove Horovod tuning variables the launcher set to its placeholder; returns their names."""
    dropped = [key for key in PLACEHOLDER_VARIABLES if environ.get(key) == LAUNCHER_PLACEHOLDER]
    for key in dropped:
        del environ[key]
    return dropped


def horovod_environment(tuning: dict) -> dict[str, str]:
    """The Horovod variables a tuning spec sets (read by hvd.init()): cycle time in ms, fusion
    buffer in MB. Unset keys keep Horovod's defaults."""
    environment = {}
    if tuning.get("cycle_time_ms"):
        environment["HOROVOD_CYCLE_TIME"] = str(tuning["cycle_time_ms"])
    if tuning.get("fusion_threshold_mb"):
        environment["HOROVOD_FUSION_THRESHOLD"] = str(int(tuning["fusion_threshold_mb"] * 1024 * 1024))
    return environment


def optimizer_options(tuning: dict, hvd) -> dict:
    """hvd.DistributedOptimizer's arguments from a tuning spec: sparse_as_dense (embedding gradients
    allreduced as dense tensors instead of allgathered), groups (all gradients in that many grouped
    allreduces; 0: Horovod fuses what is ready each cycle), compression (none or fp16)."""
    compression = tuning.get("compression", "none")
    if compression not in ("none", "fp16"):
        raise ValueError(f"horovod compression '{compression}': none or fp16")
    return {"sparse_as_dense": bool(tuning.get("sparse_as_dense", False)),
            "groups": int(tuning.get("groups", 0)) or None,
            "compression": hvd.Compression.fp16 if compression == "fp16" else hvd.Compression.none}


def launch(spec: dict, num_proc: int, launcher: str) -> list[dict]:
    """Run train_worker on num_proc Horovod workers; returns each rank's result, rank order."""
    if launcher == "spark":
        import horovod.spark

        results = horovod.spark.run(train_worker, args=(spec,), num_proc=num_proc, verbose=0)
    elif launcher == "horovodrun":
        import horovod.runner

        results = horovod.runner.run(train_worker, args=(spec,), np=num_proc, hosts=f"localhost:{num_proc}",
                                     use_gloo=True, verbose=0)
    else:
        raise ValueError(f"unknown launcher '{launcher}': spark or horovodrun")
    return sorted(results, key=lambda r: r["rank"])

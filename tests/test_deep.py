"""The deep path: encoding, checkpoints, and a real 2-process Horovod (Gloo) training over Petastorm shards."""
import os

import numpy as np
import pytest

from ecomlake import config as cfg
from ecomlake.deep import distributed, encode

N_NUMERIC = 3


def test_encode_standardises_with_the_saved_spec_and_maps_unknown_categories_to_zero(spark):
    train = spark.createDataFrame([(1, 1.0, "a"), (2, 3.0, "b"), (3, 5.0, "a")], "user_key long, x double, top_category string")
    spec = encode.build_spec(train, ["x"], ["a", "b"])
    assert spec["mean"] == [3.0] and spec["std"] == pytest.approx([(8 / 3) ** 0.5])
    later = spark.createDataFrame([(9, 3.0, "b"), (8, 7.0, "zzz")], "user_key long, x double, top_category string")
    rows = sorted(encode.encode(later, spec, keep=("user_key",)).collect())
    assert [(r.user_key, r.category) for r in rows] == [(8, 0), (9, 2)]
    assert rows[0].f_000 == pytest.approx(4 / (8 / 3) ** 0.5, rel=1e-6) and rows[1].f_000 == 0.0


@pytest.fixture(scope="module")
def tiny_training_set(spark, tmp_path_factory):
    """4,000 rows in 8 Parquet files; label = 1 when f_000 + f_001 > 0 (learnable)."""
    from pyspark.sql import functions as F

    out = tmp_path_factory.mktemp("deep") / "train"
    df = spark.range(4000).select(
        F.col("id").alias("row_id"),
        *[(F.randn(seed=i) ).cast("float").alias(encode.numeric_name(i)) for i in range(N_NUMERIC)],
        (F.col("id") % 3).cast("int").alias("category"))
    df = df.withColumn("label", (F.col("f_000") + F.col("f_001") > 0).cast("float"))
    df.repartition(8, "row_id").sortWithinPartitions("row_id").write.parquet(str(out))
    return out


def spec_for(path, tmp_path, epochs):
    return {"numeric_columns": [f"x{i}" for i in range(N_NUMERIC)], "vocabulary": ["c0", "c1", "c2"],
            "train_url": f"file://{path}", "train_rows": 4000, "epochs": epochs, "batch_size": 64,
            "learning_rate": 0.01, "warmup_epochs": 1, "seed": 7, "threads": 1, "audit_shards": True,
            "checkpoint_dir": str(tmp_path / "checkpoints"), "model_path": str(tmp_path / "model.h5"),
            "horovod": cfg.horovod_tuning(cfg.defaults())}  # what train_deep passes


@pytest.mark.horovod
def test_two_horovod_workers_train_on_disjoint_shards_and_resume(spark, tiny_training_set, tmp_path):
    first = distributed.launch(spec_for(tiny_training_set, tmp_path, epochs=2), 2, "horovodrun")
    assert [r["rank"] for r in first] == [0, 1] and {r["size"] for r in first} == {2}
    shard0, shard1 = set(first[0]["row_ids"]), set(first[1]["row_ids"])
    assert shard0 and shard1 and not shard0 & shard1
    assert shard0 | shard1 == set(range(4000))
    assert first[0]["weights_sha1"] == first[1]["weights_sha1"]        # broadcast + allreduce kept them equal
    # horovodrun's placeholders were dropped in each worker before hvd.init() (see distributed.py)
    assert {tuple(r["dropped_placeholders"]) for r in first} == {("HOROVOD_CYCLE_TIME", "HOROVOD_CACHE_CAPACITY")}
    loss = first[0]["history"]["loss"]
    assert len(loss) == 2 and loss[-1] < loss[0] and loss[-1] < 0.6    # chance level is 0.693
    assert first[0]["history"]["loss"] == first[1]["history"]["loss"]  # metrics averaged across workers
    assert distributed.last_checkpoint_epoch(str(tmp_path / "checkpoints")) == 2
    assert (tmp_path / "model.h5").exists()
    steps = first[0]["steps_per_epoch"]
    assert [r["optimizer_iterations"] for r in first] == [2 * steps, 2 * steps]

    resumed = distributed.launch(spec_for(tiny_training_set, tmp_path, epochs=3), 2, "horovodrun")
    assert [r["initial_epoch"] for r in resumed] == [2, 2]
    assert len(resumed[0]["history"]["loss"]) == 1                     # only epoch 3 was run
    assert distributed.last_checkpoint_epoch(str(tmp_path / "checkpoints")) == 3
    assert resumed[0]["weights_sha1"] == resumed[1]["weights_sha1"]
    # Every rank went on from the saved optimizer state (Adam's step count), not from a fresh one.
    assert [r["optimizer_iterations"] for r in resumed] == [3 * steps, 3 * steps]
    # One committed checkpoint is kept (plus its state file), no temporary files.
    assert len(os.listdir(tmp_path / "checkpoints")) == 2
    assert not [f for f in os.listdir(tmp_path) if f.startswith(distributed.WRITING_PREFIX)]

    # Spark scoring (mapInPandas through the architecture) gives what Keras gives on the same rows.
    import tensorflow as tf

    from ecomlake.deep import scoring

    rows = spark.read.parquet(str(tiny_training_set)).where("row_id < 200")
    scored = scoring.predict(rows, spec_for(tiny_training_set, tmp_path, epochs=3), keep=("row_id",)).toPandas()
    local = rows.orderBy("row_id").toPandas()
    expected = tf.keras.models.load_model(str(tmp_path / "model.h5"), compile=False).predict_on_batch(
        {"numeric": local[[encode.numeric_name(i) for i in range(N_NUMERIC)]].to_numpy("float32"),
         "category": local[["category"]].to_numpy("int32")}).reshape(-1)
    assert scored.sort_values("row_id")["probability"].to_numpy() == pytest.approx(expected, abs=1e-6)
    planted = (local["f_000"] + local["f_001"] > 0).to_numpy()
    assert ((expected > 0.5) == planted).mean() > 0.9                  # the scores follow the planted rule


ARCHITECTURE_SPECS = {
    "wide_deep": {"numeric_columns": ["a", "b"], "vocabulary": ["x", "y"], "seed": 1},
    "session_gru": {"vocabulary_size": 6, "max_len": 3, "seed": 1, "top_k": 2},
    "session_attention": {"vocabulary_size": 6, "max_len": 3, "history_len": 4, "dim": 8, "seed": 1, "top_k": 2},
    "movielens_attention": {"vocabulary_size": 6, "max_len": 3, "dim": 8, "seed": 1, "top_k": 2},
    "lstm_forecaster": {"history": 7, "horizon": 2, "seed": 1},
    "review_text": {"vocabulary_size": 5, "max_len": 4, "seed": 1},
}


@pytest.mark.parametrize("model", sorted(ARCHITECTURE_SPECS))
def test_training_and_scoring_build_the_same_inputs_from_the_same_columns(model):
    """One Architecture per model: the worker's tensors (to_xy) equal Spark scoring's arrays
    (numpy_inputs), they fit the built model, and the output column has one value per row."""
    import collections

    import pandas as pd
    import tensorflow as tf

    from ecomlake.deep import architecture

    spec = {**ARCHITECTURE_SPECS[model], "model": model}
    arch = architecture.for_model(spec)
    columns = arch.columns(spec)
    rng = np.random.default_rng(3)
    batch = pd.DataFrame({c: rng.integers(0, 3, size=5) for c in columns})
    Batch = collections.namedtuple("Batch", columns)
    x, y = arch.to_xy(Batch(*[tf.constant(batch[c].to_numpy()) for c in columns]), spec)
    arrays = arch.numpy_inputs(batch, spec)
    built = arch.build(spec)
    assert sorted(x) == sorted(arrays) == sorted(built.input_names)
    for name, array in arrays.items():
        np.testing.assert_array_equal(x[name].numpy(), array)
        assert x[name].dtype.name == array.dtype.name
    target = arch.target(spec).columns
    np.testing.assert_array_equal(y.numpy(), batch[list(target)].to_numpy().reshape(y.shape))
    values = arch.output_values(built.predict_on_batch(arrays), batch.assign(scale=2.0), spec)
    assert len(values) == 5
    if model in ("session_gru", "session_attention", "movielens_attention"):
        assert all(len(v) == 2 and 0 not in v for v in values)       # top_k items, never the padding
    if model == "lstm_forecaster":
        assert all(len(v) == 2 and min(v) >= 0 for v in values)      # horizon days in units


def _small_model(seed):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([tf.keras.Input(shape=(3,)), tf.keras.layers.Dense(4, activation="relu"),
                                 tf.keras.layers.Dense(1)])
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.01)
    model.compile(optimizer=optimizer, loss="mse")
    return model, optimizer


def _train_steps(model, steps, seed):
    x = np.random.default_rng(seed).normal(size=(16 * steps, 3)).astype("float32")
    model.fit(x, x.sum(axis=1), batch_size=16, epochs=1, shuffle=False, verbose=0)


def _optimizer_values(optimizer):
    return [v.numpy() for v in optimizer.variables]


def test_a_checkpoint_keeps_the_optimizer_state_and_a_failed_write_leaves_the_last_one(tmp_path, monkeypatch):
    import tensorflow as tf

    folder = str(tmp_path / "checkpoints")
    model, optimizer = _small_model(seed=1)
    _train_steps(model, 5, seed=0)
    distributed.save_checkpoint(folder, model, optimizer, 1, {"loss": 0.5})
    weights, optimizer_state = model.get_weights(), _optimizer_values(optimizer)
    assert int(optimizer.iterations.numpy()) == 5

    _train_steps(model, 3, seed=1)  # epoch 2, whose checkpoint never gets committed:
    real_write = tf.train.Checkpoint.write

    def torn_write(self, prefix, **kwargs):  # the files are written, one is cut short, then it fails
        path = real_write(self, prefix, **kwargs)
        with open(f"{prefix}.data-00000-of-00001", "r+b") as f:
            f.truncate(8)
        raise OSError("No space left on device")

    monkeypatch.setattr(tf.train.Checkpoint, "write", torn_write)
    with pytest.raises(OSError, match="No space left"):
        distributed.save_checkpoint(folder, model, optimizer, 2)
    monkeypatch.undo()
    # ... or the new checkpoint is in place and replacing the state file (the commit) fails.
    def failed_commit(path, value):
        raise OSError("I/O error")

    monkeypatch.setattr(distributed, "_replace_json", failed_commit)
    with pytest.raises(OSError, match="I/O error"):
        distributed.save_checkpoint(folder, model, optimizer, 2)
    monkeypatch.undo()

    assert distributed.last_checkpoint_epoch(folder) == 1
    assert not [f for f in os.listdir(folder) if f.startswith(distributed.WRITING_PREFIX)]
    fresh, fresh_optimizer = _small_model(seed=2)   # other initial weights, an unused optimizer
    assert distributed.restore_checkpoint(folder, fresh, fresh_optimizer) == 1
    assert int(fresh_optimizer.iterations.numpy()) == 5
    for restored, saved in zip(fresh.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(restored, saved)
    for restored, saved in zip(_optimizer_values(fresh_optimizer), optimizer_state, strict=True):
        np.testing.assert_array_equal(restored, saved)  # iterations, learning rate, Adam's m and v

    # Training goes on from there; the next commit replaces the checkpoint and clears the leftovers.
    _train_steps(fresh, 2, seed=3)
    distributed.save_checkpoint(folder, fresh, fresh_optimizer, 2)
    assert distributed.last_checkpoint_epoch(folder) == 2
    names = sorted(os.listdir(folder))
    assert len(names) == 2 and names[0].startswith("epoch-0002-") and names[1] == distributed.STATE_FILE
    again, again_optimizer = _small_model(seed=3)
    assert distributed.restore_checkpoint(folder, again, again_optimizer) == 2
    assert int(again_optimizer.iterations.numpy()) == 7


def test_a_model_is_saved_through_a_temporary_file(tmp_path, monkeypatch):
    model, _ = _small_model(seed=1)
    path = tmp_path / "model.h5"
    distributed.save_model(model, str(path))
    before = path.read_bytes()

    def crash_mid_save(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a model")
        raise MemoryError("killed mid-write")

    monkeypatch.setattr(model, "save", crash_mid_save)
    with pytest.raises(MemoryError):
        distributed.save_model(model, str(path))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.h5"]


def test_launcher_placeholders_are_dropped_before_horovod_starts():
    import horovod.runner

    # The pinned Horovod still exports "(None,)" for these from horovod.runner.run (see distributed.py);
    # when this fails, the workaround can go.
    args = horovod.runner._HorovodArgs()
    assert (args.cycle_time_ms, args.cache_capacity) == ((None,), (None,))
    environ = {"HOROVOD_CYCLE_TIME": "(None,)", "HOROVOD_CACHE_CAPACITY": "(None,)", "HOROVOD_RANK": "0"}
    assert distributed.drop_launcher_placeholders(environ) == ["HOROVOD_CYCLE_TIME", "HOROVOD_CACHE_CAPACITY"]
    assert environ == {"HOROVOD_RANK": "0"}
    chosen = {"HOROVOD_CYCLE_TIME": "5", "HOROVOD_CACHE_CAPACITY": "1024"}
    assert distributed.drop_launcher_placeholders(chosen) == []
    assert chosen == {"HOROVOD_CYCLE_TIME": "5", "HOROVOD_CACHE_CAPACITY": "1024"}


def test_a_model_seed_changes_the_weights_seed_and_the_run_but_not_the_split():
    from ecomlake.deep import runner
    from ecomlake.deep.tasks import deep_task

    config = {"train": {"seed": 7}}
    task = deep_task("wide_deep", 28)
    default = runner.training_params(config, task, "2019-11-17", runner.TrainingOptions(2))
    seeded = runner.training_params(config, task, "2019-11-17", runner.TrainingOptions(2, model_seed=3))
    # The default run keeps the parameters (and so the run_id) earlier releases recorded.
    assert default == {"epochs": 8, "batch_size": 256, "learning_rate": 0.002, "warmup_epochs": 1, "seed": 7,
                       "test_fraction": 0.2}
    assert seeded == {**default, "model_seed": 3}
    assert (runner.worker_seed(default), runner.worker_seed(seeded)) == (7, 3)
    assert seeded["seed"] == 7                                   # the hold-out split is drawn with train.seed
    assert runner.identity(seeded) != runner.identity(default)  # a run of its own in gold/model_runs


def test_self_attention_learns_to_copy_and_ranks_without_the_excluded_items(tmp_path):
    """Planted: the next item is the history's newest item. The repeat weight and tied embeddings
    make that learnable in a few epochs; the saved model reloads with identical predictions; a
    row's `exclude` items are never recommended."""
    import pandas as pd
    import tensorflow as tf

    from ecomlake.deep import session_attention

    rng = np.random.default_rng(5)
    n, items = 512, 12
    history = rng.integers(1, items + 1, size=(n, 4)).astype("int32")
    session = rng.integers(1, items + 1, size=(n, 3)).astype("int32")
    target = history[:, -1]
    model = session_attention.build(items, 3, history_len=4, dim=16, seed=2)
    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit({"history": history, "items": session}, target, epochs=15, batch_size=64, verbose=0)
    predictions = model.predict_on_batch({"history": history, "items": session})
    assert (predictions.argmax(axis=1) == target).mean() > 0.9
    assert predictions[:, 0].max() < 1e-6                                   # the padding is never likely
    model.save(tmp_path / "m.h5")
    arch = session_attention.Architecture()
    again = tf.keras.models.load_model(tmp_path / "m.h5", compile=False, custom_objects=arch.custom_objects())
    np.testing.assert_allclose(again.predict_on_batch({"history": history, "items": session}), predictions, atol=1e-6)

    scores = np.array([[0.0, 0.5, 0.4, 0.3, 0.2], [0.0, 0.1, 0.2, 0.3, 0.4]])
    pdf = pd.DataFrame({"exclude": [np.array([1, 3]), np.array([], dtype="int64")]})
    assert arch.output_values(scores, pdf, {"top_k": 2}) == [[2, 4], [4, 3]]

"""The deep path: encoding, and a real 2-process Horovod (Gloo) training over Petastorm shards."""
import pytest

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
            "checkpoint_dir": str(tmp_path / "checkpoints"), "model_path": str(tmp_path / "model.h5")}


def test_two_horovod_workers_train_on_disjoint_shards_and_resume(tiny_training_set, tmp_path):
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

    resumed = distributed.launch(spec_for(tiny_training_set, tmp_path, epochs=3), 2, "horovodrun")
    assert [r["initial_epoch"] for r in resumed] == [2, 2]
    assert len(resumed[0]["history"]["loss"]) == 1                     # only epoch 3 was run
    assert distributed.last_checkpoint_epoch(str(tmp_path / "checkpoints")) == 3
    assert resumed[0]["weights_sha1"] == resumed[1]["weights_sha1"]


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

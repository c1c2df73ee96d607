"""The deep path's input and Horovod tuning: Petastorm's reader with ecomlake's fixes returns
exactly what the stock reader returns, without the copy; the tuning keys reach Horovod."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomlake import config as cfg
from ecomlake.deep import distributed, petastorm_fixes


@pytest.fixture(autouse=True)
def stock_reader_afterwards():
    yield
    petastorm_fixes.remove()


@pytest.fixture
def mixed_parquet(tmp_path):
    """Two files, two row groups each: floats, ints, a float column with nulls, strings."""
    rng = np.random.default_rng(3)
    for part in range(2):
        n = 50
        table = pa.table({
            "row_id": pa.array(np.arange(part * n, (part + 1) * n, dtype=np.int64)),
            "x": pa.array(rng.normal(size=n).astype(np.float32)),
            "category": pa.array(rng.integers(0, 5, n).astype(np.int32)),
            "gappy": pa.array([None if i % 7 == 0 else float(i) for i in range(n)], pa.float64()),
            "word": pa.array([f"w{i % 3}" for i in range(n)]),
        })
        pq.write_table(table, tmp_path / f"part-{part}.parquet", row_group_size=25)
    return f"file://{tmp_path}"


def read_all(url, **options):
    from petastorm import make_batch_reader

    with make_batch_reader(url, num_epochs=1, reader_pool_type="dummy", shuffle_row_groups=False, **options) as reader:
        return [batch._asdict() for batch in reader]


def assert_same_batches(stock, fixed):
    assert len(stock) == len(fixed) == 4
    for a, b in zip(stock, fixed):
        assert list(a) == list(b)
        for name in a:
            assert a[name].dtype == b[name].dtype, name
            np.testing.assert_array_equal(a[name], b[name])


def test_the_fixed_reader_returns_the_stock_batches_without_copying_them(mixed_parquet, monkeypatch):
    stock = read_all(mixed_parquet)
    assert np.isnan(stock[0]["gappy"][0]) and stock[0]["word"][1] == "w1"   # nulls and strings are in the data
    assert petastorm_fixes.apply() and petastorm_fixes.apply()                # idempotent
    from petastorm import arrow_reader_worker

    class NumpyWithoutArange:  # the stock reader builds np.arange(n) to copy a row group in order
        def __getattr__(self, name):
            if name == "arange":
                pytest.fail("the fixed reader copied a row group")
            return getattr(np, name)

    monkeypatch.setattr(arrow_reader_worker, "np", NumpyWithoutArange())
    assert_same_batches(stock, read_all(mixed_parquet))


def test_shuffled_rows_still_go_through_the_stock_code(mixed_parquet):
    stock = read_all(mixed_parquet, shuffle_rows=True, seed=11)
    petastorm_fixes.apply()
    fixed = read_all(mixed_parquet, shuffle_rows=True, seed=11)
    assert_same_batches(stock, fixed)
    assert not np.array_equal(fixed[0]["row_id"], np.arange(25))   # the rows were shuffled


def test_remove_puts_the_stock_functions_back():
    from petastorm import arrow_reader_worker

    stock_convert = arrow_reader_worker.convert_arrow_table_to_numpy_dict
    stock_read = arrow_reader_worker.ArrowReaderWorker._read_with_shuffle_row_drop
    petastorm_fixes.apply()
    petastorm_fixes.apply()
    assert arrow_reader_worker.convert_arrow_table_to_numpy_dict is petastorm_fixes.convert_numeric_directly
    assert arrow_reader_worker.ArrowReaderWorker._read_with_shuffle_row_drop is petastorm_fixes.read_without_identity_take
    petastorm_fixes.remove()
    assert arrow_reader_worker.convert_arrow_table_to_numpy_dict is stock_convert
    assert arrow_reader_worker.ArrowReaderWorker._read_with_shuffle_row_drop is stock_read


def test_a_partitioned_dataset_and_integer_nulls_read_the_same(tmp_path):
    """Hive partitions (a column pyarrow adds to each piece) and an int column with nulls (the
    stock code turns it into float with NaN) both keep the stock result."""
    for country in ("de", "fr"):
        folder = tmp_path / f"country={country}"
        folder.mkdir()
        pq.write_table(pa.table({"row_id": pa.array(np.arange(30, dtype=np.int64)),
                                 "count": pa.array([None if i % 4 == 0 else i for i in range(30)], pa.int32()),
                                 "x": pa.array(np.linspace(0, 1, 30, dtype=np.float32))}),
                       folder / "part-0.parquet", row_group_size=15)
    url = f"file://{tmp_path}"
    stock = read_all(url)
    petastorm_fixes.apply()
    fixed = read_all(url)
    assert_same_batches(stock, fixed)
    assert stock[0]["count"].dtype == np.float64 and np.isnan(stock[0]["count"][0])
    assert {str(c) for b in fixed for c in b["country"]} == {"de", "fr"}


def test_the_horovod_keys_become_its_environment_and_optimizer_arguments():
    tuning = cfg.horovod_tuning(cfg.defaults())
    assert tuning == {"sparse_as_dense": True, "groups": 1, "cycle_time_ms": 5.0, "compression": "none"}
    assert distributed.horovod_environment(tuning) == {"HOROVOD_CYCLE_TIME": "5.0"}
    assert distributed.horovod_environment({"cycle_time_ms": 0, "fusion_threshold_mb": 2}) == {
        "HOROVOD_FUSION_THRESHOLD": str(2 * 1024 * 1024)}

    class FakeHorovod:
        class Compression:
            none, fp16 = "no compression", "half precision"

    options = distributed.optimizer_options({**tuning, "compression": "fp16"}, FakeHorovod)
    assert options == {"sparse_as_dense": True, "groups": 1, "compression": "half precision"}
    assert distributed.optimizer_options({}, FakeHorovod) == {
        "sparse_as_dense": False, "groups": None, "compression": "no compression"}
    with pytest.raises(ValueError, match="bf16"):
        distributed.optimizer_options({"compression": "bf16"}, FakeHorovod)

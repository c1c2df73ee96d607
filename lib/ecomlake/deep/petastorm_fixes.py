"""Two fixes to Petastorm 0.13.1's batch reader (`make_batch_reader`), applied in the training
workers before the reader starts. Petastorm is the newest release and no longer maintained, so
they live here. Both return exactly what the stock code returns (tests/test_deep_input.py).

Measured with `benchmarks/deep.py` (its profile of the stock reader on train_deep-shaped shards):
the reader spent 37 % of its time in `Table.take(np.arange(n))` — a full copy of every row group
in unchanged order, made whenever rows are not shuffled — and 12 % turning each column into a
pandas Series and back into numpy, against 39 % reading the Parquet pages themselves:
- `_read_with_shuffle_row_drop` skips the take when it would keep the order (no row shuffling,
  no row-drop partitions) and defers to the stock code otherwise;
- `convert_arrow_table_to_numpy_dict` converts integer and floating columns without nulls with
  `to_numpy()` (zero-copy for one chunk) and leaves every other column to the stock conversion
  (strings, lists, nulls: the stock code turns nulls into NaN through pandas).
"""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

FIXED_VERSION = "0.13.1"
_stock: dict = {}
_lock = threading.Lock()


def convert_numeric_directly(result_table, schema):
    import pyarrow as pa
    from petastorm import arrow_reader_worker

    direct, rest = {}, []
    for name in result_table.column_names:
        column = result_table.column(name)
        if (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)) and column.null_count == 0:
            direct[name] = column.chunks[0].to_numpy() if column.num_chunks == 1 else column.to_numpy()
        else:
            rest.append(name)
    if rest:
        direct.update(_stock["convert"](result_table.select(rest), schema))
    return {name: direct[name] for name in result_table.column_names}


def read_without_identity_take(self, piece, pq_file, column_names, shuffle_row_drop_partition):
    if self._shuffle_rows or shuffle_row_drop_partition[1] > 1:
        return _stock["read"](self, piece, pq_file, column_names, shuffle_row_drop_partition)
    partitions = self._dataset.partitions
    partition_names = partitions.partition_names if partitions else set()
    table = piece.read(columns=column_names - partition_names, partitions=partitions)
    unasked = set(table.column_names) - column_names  # partition values pyarrow adds
    return table.drop(unasked) if unasked else table


def apply() -> bool:
    """Install both fixes (idempotent). Other Petastorm versions are left alone (returns False):
    the fixes replace 0.13.1's own functions."""
    import petastorm
    from petastorm import arrow_reader_worker

    if petastorm.__version__ != FIXED_VERSION:
        log.warning("Petastorm %s: the reader fixes are for %s, not applied", petastorm.__version__, FIXED_VERSION)
        return False
    with _lock:  # never save a patched function as the stock one
        if arrow_reader_worker.convert_arrow_table_to_numpy_dict is not convert_numeric_directly:
            _stock["convert"] = arrow_reader_worker.convert_arrow_table_to_numpy_dict
            _stock["read"] = arrow_reader_worker.ArrowReaderWorker._read_with_shuffle_row_drop
            arrow_reader_worker.convert_arrow_table_to_numpy_dict = convert_numeric_directly
            arrow_reader_worker.ArrowReaderWorker._read_with_shuffle_row_drop = read_without_identity_take
    return True


def remove() -> None:
    """Put the stock functions back (benchmarks measure both); not while a reader is running."""
    from petastorm import arrow_reader_worker

    with _lock:
        if arrow_reader_worker.convert_arrow_table_to_numpy_dict is convert_numeric_directly:
            arrow_reader_worker.convert_arrow_table_to_numpy_dict = _stock["convert"]
            arrow_reader_worker.ArrowReaderWorker._read_with_shuffle_row_drop = _stock["read"]

"""Reading and writing Delta tables in the lake, and files on any Hadoop file system."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from ecomlake import logs
from ecomlake.errors import InputError
from ecomlake.tables import Table

log = logging.getLogger(__name__)


def table_exists(spark: SparkSession, path: str) -> bool:
    """Whether path holds a Delta table now. DeltaTable.isDeltaTable answers from the snapshot the
    session cached when it first looked, so a table that another process created since would
    stay "missing": when it says no but a log is there, load the log (refreshes the cache)."""
    from delta.tables import DeltaTable
    from pyspark.errors import AnalysisException

    if DeltaTable.isDeltaTable(spark, path):
        return True
    if not path_exists(spark, f"{path}/_delta_log"):
        return False
    try:
        DeltaTable.forPath(spark, path)
    except AnalysisException:  # a log without a first commit yet
        return False
    return DeltaTable.isDeltaTable(spark, path)


def read_table(spark: SparkSession, lake_root: str, table: Table) -> DataFrame:
    return spark.read.format("delta").load(_require(spark, lake_root, table))


def _require(spark: SparkSession, lake_root: str, table: Table) -> str:
    path = table.path(lake_root)
    if not table_exists(spark, path):
        raise InputError(
            f"table {table.id} does not exist at {path}: run the `{table.producer}` job first"
        )
    return path


def table_version(spark: SparkSession, lake_root: str, table: Table) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, _require(spark, lake_root, table)).history(1).select("version").head()[0]


def _save(df: DataFrame, mode: str, lake_root: str, table: Table, options: dict[str, str],
          partition_by: list[str] | None, merge_schema: bool, change_feed: bool) -> None:
    writer = df.write.format("delta").mode(mode).options(**options)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if change_feed:
        writer = writer.option("delta.enableChangeDataFeed", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with logs.log_step(f"{'write' if mode == 'overwrite' else 'append'} {table.id}", log, announce=False):
        writer.save(table.path(lake_root))


def overwrite_table(df: DataFrame, lake_root: str, table: Table, replace_where: str | None = None,
                    partition_by: list[str] | None = None, merge_schema: bool = False,
                    change_feed: bool = False) -> None:
    """Overwrite the whole table, or only the rows matching replace_where (one atomic commit).

    merge_schema adds new columns to a table written by an older version; change_feed turns on
    Delta's change data feed when the write creates the table (incremental readers need it).
    """
    options = {"replaceWhere": replace_where} if replace_where else {"overwriteSchema": "true"}
    _save(df, "overwrite", lake_root, table, options, partition_by, merge_schema, change_feed)


def append_table(df: DataFrame, lake_root: str, table: Table, partition_by: list[str] | None = None,
                 merge_schema: bool = False, change_feed: bool = False) -> None:
    _save(df, "append", lake_root, table, {}, partition_by, merge_schema, change_feed)


def replace_rows(spark: SparkSession, df: DataFrame, lake_root: str, table: Table, replace_where: str,
                 partition_by: list[str] | None = None, merge_schema: bool = False,
                 change_feed: bool = False) -> None:
    """Replace the rows matching replace_where with df in ONE commit (creating the table if needed),
    so a crash leaves either the old rows or the new ones, never neither or both."""
    if table_exists(spark, table.path(lake_root)):
        overwrite_table(df, lake_root, table, replace_where=replace_where, partition_by=partition_by,
                        merge_schema=merge_schema)
    else:
        append_table(df, lake_root, table, partition_by=partition_by, change_feed=change_feed)


def sql_string(value: str) -> str:
    """A Spark SQL string literal (for replaceWhere predicates, which are SQL text)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_in(column: str, values) -> str:
    """`column IN (...)` for strings or dates; FALSE for an empty list (matches no row)."""
    values = sorted({str(v) for v in values})
    if not values:
        return "FALSE"
    return f"{column} IN ({', '.join(sql_string(v) for v in values)})"


def table_properties(spark: SparkSession, path: str) -> dict[str, str]:
    """A Delta table's properties (empty when the table does not exist)."""
    from delta.tables import DeltaTable

    if not table_exists(spark, path):
        return {}
    return dict(DeltaTable.forPath(spark, path).detail().select("properties").head()[0] or {})


def set_table_properties(spark: SparkSession, path: str, properties: dict[str, str]) -> None:
    """Set the properties that differ, in one metadata commit (none when all are already set)."""
    current = table_properties(spark, path)
    changed = {k: v for k, v in properties.items() if str(current.get(k, "")).lower() != str(v).lower()}
    if changed:
        assignments = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in sorted(changed.items()))
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})")


def has_change_feed(spark: SparkSession, path: str) -> bool:
    return str(table_properties(spark, path).get("delta.enableChangeDataFeed", "false")).lower() == "true"


def enable_change_feed(spark: SparkSession, path: str) -> None:
    """Turn on the change data feed of an existing table (one metadata commit, only when off)."""
    if table_exists(spark, path):
        set_table_properties(spark, path, {"delta.enableChangeDataFeed": "true"})


def partition_columns(spark: SparkSession, path: str) -> list[str]:
    from delta.tables import DeltaTable

    return list(DeltaTable.forPath(spark, path).detail().select("partitionColumns").head()[0])


def delete_rows(spark: SparkSession, lake_root: str, table: Table, condition) -> None:
    """Delete rows matching a Column condition, if the table exists (keeps re-runs idempotent)."""
    from delta.tables import DeltaTable

    path = table.path(lake_root)
    if table_exists(spark, path):
        DeltaTable.forPath(spark, path).delete(condition)


# ---- files on any Hadoop file system (local, HDFS, S3, DBFS), through the JVM --------------


@dataclass(frozen=True)
class FileInfo:
    path: str  # fully qualified, e.g. file:/data/2019-Oct.csv (the form Spark's _metadata uses)
    size: int
    modified_ms: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _hadoop(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return jvm, hpath, hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def list_input_files(spark: SparkSession, path_or_glob: str, suffixes=(".csv", ".csv.gz")) -> list[FileInfo]:
    """Files matching a path, a directory (its data files) or a glob; error if there are none."""
    jvm, hpath, fs = _hadoop(spark, path_or_glob)
    statuses = fs.globStatus(hpath)
    if statuses is None or len(statuses) == 0:
        raise InputError(f"input '{path_or_glob}' does not exist (no file matches it)")
    files = []
    for status in statuses:
        if status.isDirectory():
            for child in fs.listStatus(status.getPath()):
                name = child.getPath().getName()
                if child.isFile() and name.endswith(suffixes) and not name.startswith(("_", ".")):
                    files.append(child)
        else:
            files.append(status)
    if not files:
        raise InputError(f"input '{path_or_glob}' holds no {' or '.join(suffixes)} files")
    infos = [FileInfo(str(s.getPath().toString()), s.getLen(), s.getModificationTime()) for s in files]
    return sorted(infos, key=lambda f: f.path)


def spark_file_uri(spark: SparkSession, path: str) -> str:
    """How Spark names a file in `_metadata.file_path` (URI-encoded: a space is %20), for a path
    as the Hadoop file system lists it (not encoded). Spark's own conversion, so they always agree."""
    jvm = spark.sparkContext._jvm
    return str(jvm.org.apache.spark.paths.SparkPath.fromPath(jvm.org.apache.hadoop.fs.Path(path)).urlEncoded())


def is_compressed(spark: SparkSession, path: str) -> bool:
    jvm, hpath, _ = _hadoop(spark, path)
    return jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark.sparkContext._jsc.hadoopConfiguration()).getCodec(hpath) is not None


def read_first_line(spark: SparkSession, path: str) -> str:
    """The first line of a (possibly compressed) text file, read on the driver."""
    jvm, hpath, fs = _hadoop(spark, path)
    stream = fs.open(hpath)
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
        spark.sparkContext._jsc.hadoopConfiguration()).getCodec(hpath)
    if codec is not None:
        stream = codec.createInputStream(stream)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
    try:
        line = reader.readLine()
    finally:
        reader.close()
    return (line or "").lstrip("\ufeff")


def replace_directory_with_files(spark: SparkSession, src_dir: str, moves: dict[str, str]) -> None:
    """Rename src_dir/<part dir>/<single file> to the given targets and delete src_dir."""
    jvm, src, fs = _hadoop(spark, src_dir)
    Path = jvm.org.apache.hadoop.fs.Path
    for part_dir, target in moves.items():
        parts = [s for s in fs.listStatus(Path(src, part_dir)) if s.getPath().getName().startswith("part-")]
        if len(parts) != 1:
            raise RuntimeError(f"expected one part file in {src_dir}/{part_dir}, found {len(parts)}")
        dest = Path(target)
        if fs.exists(dest):
            fs.delete(dest, False)
        fs.rename(parts[0].getPath(), dest)
    fs.delete(src, True)


def path_exists(spark: SparkSession, path: str) -> bool:
    _, hpath, fs = _hadoop(spark, path)
    return bool(fs.exists(hpath))


def delete_path(spark: SparkSession, path: str) -> None:
    _, hpath, fs = _hadoop(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def read_text_file(spark: SparkSession, path: str) -> str | None:
    """A small text file's content, or None when it does not exist."""
    jvm, hpath, fs = _hadoop(spark, path)
    if not fs.exists(hpath):
        return None
    stream = fs.open(hpath)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def write_text_file(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file (ground truth, reports) on any Hadoop file system."""
    _, hpath, fs = _hadoop(spark, path)
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def replace_partition(df: DataFrame, lake_root: str, table: Table, column: str, value: str,
                      merge_schema: bool = False) -> None:
    """Atomically replace the rows where column = value (the table is partitioned by column);
    re-running with the same input gives the same table (no duplicates)."""
    overwrite_table(df, lake_root, table, replace_where=f"{column} = '{value}'", partition_by=[column],
                    merge_schema=merge_schema)


def read_partition(spark: SparkSession, lake_root: str, table: Table, column: str, value: str,
                   rerun_hint: str) -> DataFrame:
    """Rows of a table where column = value; a clear error naming the job to run when there are none."""
    df = read_table(spark, lake_root, table).where(f"{column} = '{value}'")
    if df.limit(1).count() == 0:
        raise InputError(f"table {table.id} has no rows for {column} {value}: run `{rerun_hint}` first")
    return df

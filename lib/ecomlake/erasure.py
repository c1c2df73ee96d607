"""Erasing users from the lake ("right to be forgotten"), without ever writing an id down.

Which rows belong to a user is decided by columns, in every Delta table and plain Parquet
dataset found in the lake (tables.py need not list them):
- `user_id` (raw text in bronze and quarantine): equal to a requested id after trimming spaces
  and quotes, numbers compared as numbers (" 0512" is 512, as `clean` types it);
- `raw_line` (quarantine, only in tables that also have `user_id`): a line holding the id as a
  whole field, so id 123 never matches a line of user 1234. A REES46 line with its 9 fields and no
  quote is matched on its user_id field only; any other line (wrong column count, quotes) on any
  comma-separated field, because the id may sit anywhere in it;
- `user_key` (silver, gold, model data): the pseudonym `clean` computes for the id
  (ecomlake.privacy with the same key, of the id typed as `clean` types it).
An ALS model (Spark ML) keeps user factors under an integer index; the index -> user_key table
saved beside it (`user_index`) names the factors to drop, then loses its own rows.

The requested ids stay in Spark: they are joined (broadcast when few), never collected, never a
literal in a query plan or a Delta commit (MERGE conditions compare columns only), never logged.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, privacy, rees46
from ecomlake.errors import InputError
from ecomlake.maintenance import LakeDir

log = logging.getLogger(__name__)

BROADCAST_MAX_ROWS = 2_000_000  # ids (or matching values) joined as a broadcast up to this many
HEADER = "user_id"
USER_ID_FIELD = rees46.COLUMNS.index("user_id")  # 0-based position in a REES46 line (the 8th field)
_EDGES = r'^[\s"\ufeff]+|[\s"]+$'


def _hint(df: DataFrame, rows: int) -> DataFrame:
    return F.broadcast(df) if rows <= BROADCAST_MAX_ROWS else df


def with_normalized_id(df: DataFrame, column: str, out: str = "id") -> DataFrame:
    """Adds `out`: the column as text without surrounding spaces or quotes, a whole number in its
    canonical form (what `clean` would type it as), null when empty."""
    text = F.nullif(F.regexp_replace(F.col(column).cast("string"), _EDGES, ""), F.lit(""))
    return (df.withColumn("_id_text", text)
            .withColumn(out, F.expr("coalesce(cast(try_cast(_id_text AS bigint) AS string), _id_text)"))
            .drop("_id_text"))


def require_ids_file(spark: SparkSession, path: str) -> None:
    _, hpath, fs = lake._hadoop(spark, path)
    if not fs.globStatus(hpath):
        raise InputError(f"user id file '{path}' does not exist")


def read_user_ids(spark: SparkSession, path: str) -> DataFrame:
    """The ids in a text file (or folder/glob of them) on any Hadoop file system: one per line,
    blank lines and a `user_id` header ignored; column `id`, distinct."""
    require_ids_file(spark, path)
    lines = spark.read.text(path)
    return (with_normalized_id(lines, "value")
            .where(F.col("id").isNotNull() & (F.lower(F.col("id")) != HEADER))
            .select("id").distinct())


def keys_of(ids: DataFrame, key: bytes) -> DataFrame:
    """user_key of each id that `clean` would have accepted, computed exactly as `clean` does."""
    typed = (ids.select(F.col("id").alias("user_id"))
             .select(rees46.typed("user_id").alias("user_id"))
             .where(F.col("user_id").isNotNull()))
    return privacy.pseudonymise(typed, "user_id", "user_key", key).select("user_key").distinct()


# ---- which rows match ------------------------------------------------------------------------------


def matching_values(df: DataFrame, column: str, ids: DataFrame, id_rows: int) -> DataFrame:
    """Distinct values of `column` (raw user ids) that are one of the ids."""
    values = df.select(column).where(F.col(column).isNotNull()).distinct()
    return with_normalized_id(values, column).join(_hint(ids, id_rows), "id", "left_semi").select(column)


def matching_lines(df: DataFrame, ids: DataFrame, id_rows: int, rees46_shaped: bool) -> DataFrame:
    """Distinct `raw_line` values that hold one of the ids as a whole field."""
    lines = df.select("raw_line").where(F.col("raw_line").isNotNull()).distinct()
    fields = F.split(F.col("raw_line"), "," if rees46_shaped else "[,\t;|]")
    exploded = lines.select("raw_line", F.size(fields).alias("_n"), F.instr("raw_line", '"').alias("_quote"),
                            F.posexplode(fields).alias("_pos", "_field"))
    if rees46_shaped:  # a well-formed line: only its user_id field; anything else: every field
        exploded = exploded.where((F.col("_n") != len(rees46.COLUMNS)) | (F.col("_quote") > 0)
                                  | (F.col("_pos") == USER_ID_FIELD))
    return (with_normalized_id(exploded, "_field").join(_hint(ids, id_rows), "id", "left_semi")
            .select("raw_line").distinct())


@dataclass(frozen=True)
class Pass:
    column: str                              # the target column, compared for equality with the source's
    source: Callable[[DataFrame], DataFrame]  # the target's rows -> matching values of `column`


def passes_for(columns: list[str], ids: DataFrame, id_rows: int, keys: DataFrame) -> list[Pass]:
    """The deletions a table or dataset with these columns needs (empty: it holds no user ids)."""
    cols = set(columns)
    out = []
    if "user_id" in cols:
        out.append(Pass("user_id", lambda df: matching_values(df, "user_id", ids, id_rows)))
        if "raw_line" in cols:
            shaped = set(rees46.COLUMNS) <= cols
            out.append(Pass("raw_line", lambda df: matching_lines(df, ids, id_rows, shaped)))
    if "user_key" in cols:
        out.append(Pass("user_key", lambda df: keys))
    return out


def holds_user_columns(columns: list[str]) -> bool:
    return bool({"user_id", "user_key"} & set(columns))


# ---- Delta tables ------------------------------------------------------------------------------------


def erase_delta_table(spark: SparkSession, table: LakeDir, ids: DataFrame, id_rows: int, keys: DataFrame) -> int:
    """Delete the users' rows from one Delta table (one MERGE ... DELETE per matching column, only
    when something matches); returns the rows deleted. Deletion vectors, when the table uses them,
    are purged into rewritten files so the rows are physically gone from current files."""
    from delta.tables import DeltaTable

    deleted = 0
    for p in passes_for(spark.read.format("delta").load(table.path).columns, ids, id_rows, keys):
        current = spark.read.format("delta").load(table.path)
        source = p.source(current)
        cache_here = not source.is_cached  # the keys come cached by the caller: leave them be
        if cache_here:
            source.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            hinted = _hint(source, id_rows)  # at most about one matching value per id
            rows = current.join(hinted, p.column, "left_semi").count()
            if rows == 0:
                continue
            (DeltaTable.forPath(spark, table.path).alias("t")
             .merge(hinted.alias("s"), f"t.`{p.column}` = s.`{p.column}`")
             .whenMatchedDelete().execute())
            deleted += rows
        finally:
            if cache_here:
                source.unpersist()
    if deleted and uses_deletion_vectors(spark, table.path):
        quoted = table.path.replace("`", "``")
        spark.sql(f"REORG TABLE delta.`{quoted}` APPLY (PURGE)")
    return deleted


def uses_deletion_vectors(spark: SparkSession, path: str) -> bool:
    from ecomlake.maintenance import table_properties

    return table_properties(spark, path).get("delta.enableDeletionVectors", "false").lower() == "true"


# ---- plain Parquet (models) ------------------------------------------------------------------------


def _partition_columns(spark: SparkSession, path: str) -> list[str]:
    jvm, hpath, fs = lake._hadoop(spark, path)
    columns = []
    while True:
        dirs = [s for s in fs.listStatus(hpath) if s.isDirectory() and "=" in s.getPath().getName()]
        if not dirs:
            return columns
        columns.append(dirs[0].getPath().getName().split("=", 1)[0])
        hpath = dirs[0].getPath()


def rewrite_parquet(spark: SparkSession, dataset: LakeDir, keep: DataFrame, expected_rows: int) -> None:
    """Replace a Parquet dataset by `keep` (written beside it first, then swapped in)."""
    jvm, hpath, fs = lake._hadoop(spark, dataset.path)
    tmp = f"{dataset.path}.forget-{uuid.uuid4().hex[:8]}"
    writer = keep.write.mode("errorifexists")
    partitions = _partition_columns(spark, dataset.path)
    if partitions:
        writer = writer.partitionBy(*partitions)
    writer.parquet(tmp)
    written = spark.read.parquet(tmp).count()
    if written != expected_rows:
        lake.delete_path(spark, tmp)
        raise RuntimeError(f"{dataset.id}: rewrite wrote {written} rows, expected {expected_rows}; left unchanged")
    fs.delete(hpath, True)
    if not fs.rename(jvm.org.apache.hadoop.fs.Path(tmp), hpath):
        raise RuntimeError(f"{dataset.id}: could not move the rewritten dataset {tmp} into place")


def erase_parquet_dataset(spark: SparkSession, dataset: LakeDir, ids: DataFrame, id_rows: int,
                          keys: DataFrame) -> int:
    """Rewrite a plain Parquet dataset without the users' rows; returns the rows removed."""
    df = spark.read.parquet(dataset.path)
    passes = passes_for(df.columns, ids, id_rows, keys)
    if not passes:
        return 0
    keep = df
    for p in passes:
        keep = keep.join(p.source(df), p.column, "left_anti")
    keep = keep.select(*df.columns)
    before = df.count()
    remaining = keep.count()
    if remaining == before:
        return 0
    rewrite_parquet(spark, dataset, keep, remaining)
    return before - remaining


def als_user_column(spark: SparkSession, model_path: str) -> str | None:
    """The user column of a saved Spark ML ALSModel (None when the path holds no ALS model)."""
    # Spark 3.5 names the metadata file part-00000, Spark 4 part-00000-<uuid>-c000.txt: read the folder
    if not lake.path_exists(spark, f"{model_path}/metadata"):
        return None
    first = spark.read.text(f"{model_path}/metadata").head()
    if first is None:
        return None
    meta = json.loads(first[0])
    if not meta.get("class", "").endswith("recommendation.ALSModel"):
        return None
    params = {**meta.get("defaultParamMap", {}), **meta.get("paramMap", {})}
    return params.get("userCol", "user")


def erase_als_factors(spark: SparkSession, datasets: list[LakeDir], keys: DataFrame) -> dict[str, int]:
    """Drop the users' rows from every saved ALS model's userFactors, found through the
    index -> user_key dataset saved beside the model. Call before the index itself is rewritten.
    Returns factor rows removed per userFactors dataset id."""
    by_parent: dict[str, list[LakeDir]] = {}
    for d in datasets:
        by_parent.setdefault(d.path.rsplit("/", 1)[0], []).append(d)
    removed = {}
    for factors in datasets:
        if factors.path.rsplit("/", 1)[1] != "userFactors":
            continue
        model_path = factors.path.rsplit("/", 1)[0]
        user_col = als_user_column(spark, model_path)
        if user_col is None:
            continue
        siblings = by_parent.get(model_path.rsplit("/", 1)[0], [])
        indexes = [d for d in siblings if {user_col, "user_key"} <= set(spark.read.parquet(d.path).columns)]
        if not indexes:
            log.warning("%s: no %s -> user_key index beside the model; its user factors were not checked",
                        factors.id, user_col)
            continue
        forgotten = (spark.read.parquet(indexes[0].path).join(keys, "user_key", "left_semi")
                     .select(F.col(user_col).cast("int").alias("id")).distinct())
        df = spark.read.parquet(factors.path)
        keep = df.join(forgotten, "id", "left_anti").select(*df.columns)
        before, remaining = df.count(), keep.count()
        if remaining != before:
            rewrite_parquet(spark, factors, keep, remaining)
            removed[factors.id] = before - remaining
    return removed


# ---- for incremental readers -------------------------------------------------------------------


def history_purged_after(spark: SparkSession, lake_root: str, table_id: str, version: int) -> bool:
    """True when a `forget --purge-history` run removed the history of `table_id` after a reader
    consumed `version`: the versions after it are gone (and with them the change feed of the
    deletes), so that reader must do a full refresh. See also maintenance.earliest_version."""
    from ecomlake import tables

    if not lake.table_exists(spark, tables.OPS_JOB_RUNS.path(lake_root)):
        return False
    key = f"history_purged_before:{table_id}"
    return (lake.read_table(spark, lake_root, tables.OPS_JOB_RUNS)
            .where((F.col("job") == "forget") & (F.col("status") != "failed")
                   & (F.col("counts").getItem(key) > F.lit(version)))
            .limit(1).count() > 0)

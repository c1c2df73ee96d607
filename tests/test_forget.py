"""forget --purge-history on a copy of the small lake built by the real jobs (conftest's
`generated_lake`: generate -> ingest -> clean -> sessionize, 6,000 events) plus a small ALS model
saved as `train recommend` saves it.

What the byte-level check proves, and what it does not: after the job, every file under the lake
root (data and checkpoint Parquet, `_delta_log` JSON, Delta `.crc` checksums, Hadoop `.crc`
sidecars, `_change_data`, model files) is read. Its raw bytes are searched for each forgotten
raw id and each user_key as decimal text (as whole numbers: 512000123 does not match inside
5120001234) and for each user_key as 8 little-endian bytes (Parquet's plain INT64 encoding).
Parquet files are also decoded with pyarrow (pages decompressed) and every value, nested ones
included, and every row-group min/max statistic is compared with the ids and keys. It does not
decode Parquet page indexes (column/offset index min/max; parquet-mr writes them from the same
values, which the decoded check already covers) and only searches the two text forms and one
binary form named above. The same scan finds the ids and keys before the job ran (a check that
the scanner can see them at all).
"""
import os
import re
import struct
from collections import Counter

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from ecomlake import erasure, lake, maintenance, tables
from ecomlake.config import pseudonymisation_key
from ecomlake.jobs import forget
from ecomlake.privacy import pseudonym_of
from tests.conftest import copy_generated_lake

pytestmark = pytest.mark.e2e

TABLES = (tables.BRONZE_EVENTS, tables.QUARANTINE_EVENTS, tables.SILVER_EVENTS, tables.SILVER_SESSIONS)


# ---- the scanner -----------------------------------------------------------------------------


def _holds(value, patterns, numbers) -> bool:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray)):
        return any(p.search(value) for p in patterns)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value in numbers
    if isinstance(value, dict):
        return any(_holds(k, patterns, numbers) or _holds(v, patterns, numbers) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds(v, patterns, numbers) for v in value)
    return False


def _parquet_holds(path, patterns, numbers) -> bool:
    parquet = pq.ParquetFile(path)
    if parquet.metadata.num_row_groups == 0:  # a schema-only file (Spark 4 writes them; pyarrow 18 cannot read() one)
        return False
    if _holds(parquet.read().to_pylist(), patterns, numbers):
        return True
    meta = parquet.metadata
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            stats = meta.row_group(g).column(c).statistics
            if stats is not None and stats.has_min_max and _holds([stats.min, stats.max], patterns, numbers):
                return True
    return False


def files_holding(root, raw_ids, keys) -> list[str]:
    """Files under root whose bytes or decoded Parquet values hold a raw id or key (see module doc)."""
    patterns = [re.compile(rb"(?<![0-9])" + re.escape(str(v).encode()) + rb"(?![0-9])") for v in [*raw_ids, *keys]]
    little_endian = [struct.pack("<q", k) for k in keys]
    numbers = {*keys, *(int(i) for i in raw_ids)}
    hits = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                data = f.read()
            if (any(p.search(data) for p in patterns) or any(b in data for b in little_endian)
                    or (name.endswith(".parquet") and _parquet_holds(path, patterns, numbers))):
                hits.append(os.path.relpath(path, root))
    return sorted(hits)


# ---- the lake --------------------------------------------------------------------------------


def _frozen(value):
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def rows(spark, root, table):
    return Counter(_frozen(tuple(r)) for r in lake.read_table(spark, root, table).collect())


@pytest.fixture(scope="module")
def erased(spark, generated_lake, tmp_path_factory):
    from ecomlake.models import recommend

    tmp = tmp_path_factory.mktemp("forget")
    config = copy_generated_lake(generated_lake, tmp / "lake")
    root = config["lake_root"]
    key = pseudonymisation_key(config)

    # A: a user with a row quarantined by clean (raw user_id kept) and events in silver.
    # B: another silver user, given a quarantined raw line with the wrong column count, beside a
    # decoy line whose field only starts with B's id.
    silver_keys = {r[0] for r in lake.read_table(spark, root, tables.SILVER_EVENTS)
                   .select("user_key").distinct().collect()}
    quarantined = sorted({r[0].strip() for r in lake.read_table(spark, root, tables.QUARANTINE_EVENTS)
                          .where("stage = 'clean' AND user_id RLIKE '^ *[0-9]+ *$'").select("user_id").collect()})
    a = next(i for i in quarantined if pseudonym_of(int(i), key) in silver_keys)
    b = sorted(str(r[0]) for r in lake.read_table(spark, root, tables.BRONZE_EVENTS)
               .select(F.trim("user_id")).distinct().collect()
               if r[0] and r[0].isdigit() and r[0] != a and pseudonym_of(int(r[0]), key) in silver_keys)[0]
    quarantine = lake.read_table(spark, root, tables.QUARANTINE_EVENTS)
    template = quarantine.where("stage = 'clean'").limit(1).collect()[0].asDict()
    lines = [f"2019-10-05 10:00:00 UTC,view,1004,2053,,acme,12.5,{b},s-1,extra",   # B's, 10 fields
             f"2019-10-05 10:00:01 UTC,view,1004,2053,,acme,12.5,{b}7,s-2,extra"]  # decoy: not B
    extra = [{**template, "stage": "ingest", "reason": "wrong_column_count", "raw_line": line,
              **{c: None for c in ("event_time", "event_type", "product_id", "category_id", "category_code",
                                   "brand", "price", "user_id", "user_session")}} for line in lines]
    spark.createDataFrame(extra, quarantine.schema).write.format("delta").mode("append").save(
        tables.QUARANTINE_EVENTS.path(root))

    # A small ALS model saved like `train recommend` saves it (factors by index, index -> user_key).
    interactions = (lake.read_table(spark, root, tables.SILVER_EVENTS)
                    .groupBy("user_key", "product_id").agg(F.count(F.lit(1)).cast("double").alias("strength")))
    user_index, item_index = recommend.index_frames(spark, interactions)
    model_dir = f"{root}/models/recommend/run1/attempt1"
    recommend.fit_als(interactions, user_index, item_index, 2, 0.1, 1.0, 2, 1).write().save(f"{model_dir}/als")
    user_index.write.parquet(f"{model_dir}/user_index")
    item_index.write.parquet(f"{model_dir}/item_index")

    raw, keys = [a, b], [pseudonym_of(int(a), key), pseudonym_of(int(b), key)]
    before = {t.id: rows(spark, root, t) for t in TABLES}
    index_before = {r["user_key"]: r["user_index"] for r in spark.read.parquet(f"{model_dir}/user_index").collect()}
    factors_before = spark.read.parquet(f"{model_dir}/als/userFactors").count()
    found_before = files_holding(root, raw, keys)
    silver_version = lake.table_version(spark, root, tables.SILVER_EVENTS)

    ids_file = tmp / "forget.txt"
    ids_file.write_text(f"user_id\n{a}\n\n  {b}  \n")
    result = forget.run(spark, config, str(ids_file), purge_history=True)
    return dict(config=config, root=root, raw=raw, keys=keys, before=before, index_before=index_before,
                factors_before=factors_before, found_before=found_before, result=result, model_dir=model_dir,
                silver_version=silver_version, decoy=lines[1])


def mine(row: tuple, raw, keys) -> bool:
    """Whether a row (as a tuple) belongs to a forgotten user: raw id, key, or raw line field."""
    for v in row:
        if isinstance(v, str) and (v.strip() in raw or any(f.strip() in raw for f in v.split(","))):
            return True
        if isinstance(v, int) and v in keys:
            return True
    return False


def test_only_the_forgotten_users_rows_are_gone(spark, erased):
    root, raw, keys = erased["root"], erased["raw"], erased["keys"]
    deleted = erased["result"]["rows_deleted"]
    for table in TABLES:
        before = erased["before"][table.id]
        theirs = Counter({r: n for r, n in before.items() if mine(r, raw, keys)})
        assert sum(theirs.values()) > 0, f"{table.id}: the picked users have no rows there"
        assert rows(spark, root, table) == before - theirs, table.id
        assert deleted[table.id] == sum(theirs.values()), table.id
    quarantine = lake.read_table(spark, root, tables.QUARANTINE_EVENTS)
    assert quarantine.where(F.col("raw_line") == erased["decoy"]).count() == 1  # 5120001237 is not 512000123


def test_the_model_loses_their_factors_and_index_rows(spark, erased):
    from pyspark.ml.recommendation import ALSModel

    model_dir, keys = erased["model_dir"], erased["keys"]
    index = {r["user_key"]: r["user_index"] for r in spark.read.parquet(f"{model_dir}/user_index").collect()}
    assert index == {k: v for k, v in erased["index_before"].items() if k not in keys}
    factors = {r["id"] for r in ALSModel.load(f"{model_dir}/als").userFactors.collect()}
    assert len(factors) == erased["factors_before"] - 2
    assert not factors & {erased["index_before"][k] for k in keys}
    assert sum(erased["result"]["model_rows_deleted"].values()) == 4  # 2 factors + 2 index rows


def test_no_file_under_the_lake_holds_a_forgotten_id_or_key(erased):
    assert any("bronze/events" in f for f in erased["found_before"])  # the scanner sees them
    assert any("silver/events" in f for f in erased["found_before"])
    assert files_holding(erased["root"], erased["raw"], erased["keys"]) == []


def test_history_is_purged_and_the_erasure_is_recorded_without_ids(spark, erased):
    root = erased["root"]
    silver = tables.SILVER_EVENTS.path(root)
    with pytest.raises(Exception, match="[Cc]annot time travel"):
        spark.read.format("delta").option("versionAsOf", erased["silver_version"]).load(silver).count()
    assert maintenance.earliest_version(spark, silver) > erased["silver_version"]
    assert erasure.history_purged_after(spark, root, tables.SILVER_EVENTS.id, erased["silver_version"])
    record = lake.read_table(spark, root, tables.OPS_JOB_RUNS).where(F.col("job") == "forget").collect()
    assert len(record) == 1 and record[0]["mode"] == "purge_history"
    counts = record[0]["counts"]
    assert counts["ids_requested"] == 2
    assert counts[f"rows_deleted:{tables.BRONZE_EVENTS.id}"] == erased["result"]["rows_deleted"]["bronze/events"]

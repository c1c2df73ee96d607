"""End to end: generate -> ingest -> clean -> sessionize on a small generated dataset (the shared
`generated_lake` of conftest)."""

import pytest
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.config import pseudonymisation_key
from ecomlake.jobs import pipeline
from tests.conftest import GENERATED_EVENTS, GENERATED_SEED, copy_generated_lake

pytestmark = pytest.mark.e2e

ALL_TABLES = (tables.BRONZE_EVENTS, tables.BRONZE_INGEST_LOG, tables.QUARANTINE_EVENTS,
              tables.SILVER_EVENTS, tables.SILVER_SESSIONS, tables.GOLD_DAILY_FUNNEL,
              tables.BRONZE_PRODUCTS, tables.QUARANTINE_PRODUCTS)


@pytest.fixture(scope="module")
def first_run(generated_lake):
    return generated_lake["config"], generated_lake["summary"], generated_lake["truth"]


def read(spark, config, table):
    return lake.read_table(spark, config["lake_root"], table)


def test_counts_reconcile_with_the_input(spark, first_run):
    config, summary, truth = first_run
    rows = summary["rows"]
    ingest_rejects = sum(truth["expected_quarantine"]["ingest"].values())
    clean_rejects = sum(truth["expected_quarantine"]["clean"].values())
    assert rows["bronze/events"] + ingest_rejects == truth["data_lines"]
    assert rows["silver/events"] + clean_rejects == rows["bronze/events"]
    assert rows["silver/events"] == truth["clean_events"]
    assert rows["quarantine/events"] == ingest_rejects + clean_rejects
    sessions = read(spark, config, tables.SILVER_SESSIONS).agg(F.sum("events"), F.sum("purchases")).head()
    assert sessions[0] == rows["silver/events"]
    purchases = read(spark, config, tables.SILVER_EVENTS).where("event_type = 'purchase'").count()
    funnel = read(spark, config, tables.GOLD_DAILY_FUNNEL).agg(F.sum("purchases")).head()[0]
    assert sessions[1] == purchases == funnel
    log = read(spark, config, tables.BRONZE_INGEST_LOG).collect()
    events_log = [r for r in log if "/events/" in r.source_file]
    assert sorted(r.source_file.rsplit("/", 1)[1] for r in events_log) == sorted(truth["files"])
    assert sum(r.input_lines for r in events_log) == truth["data_lines"]


def test_the_generated_catalogue_lands_in_bronze_products(spark, first_run):
    config, summary, truth = first_run
    assert summary["rows"]["bronze/products"] == truth["products"]
    assert summary["rows"]["quarantine/products"] == 0
    products = read(spark, config, tables.BRONZE_PRODUCTS)
    assert products.select("product_id").distinct().count() == truth["products"]
    # every product that events refer to is in the catalogue
    events = read(spark, config, tables.SILVER_EVENTS).select("product_id").distinct()
    assert events.join(products, "product_id", "left_anti").count() == 0
    [log] = [r for r in read(spark, config, tables.BRONZE_INGEST_LOG).collect() if r.source_file.endswith("products.csv")]
    assert (log.input_lines, log.bronze_rows, log.quarantined_rows) == (truth["products"], truth["products"], 0)


def test_every_planted_dirty_row_is_quarantined_with_its_reason(first_run):
    _, summary, truth = first_run
    expected = {(stage, reason): n for stage, reasons in truth["expected_quarantine"].items()
                for reason, n in reasons.items() if n}
    assert len(expected) >= 8  # the planted kinds really occurred
    assert summary["quarantined"] == expected


def test_no_raw_user_id_or_key_in_silver_and_gold(spark, first_run):
    config, _, _ = first_run
    key = pseudonymisation_key(config).decode()
    for table in (tables.SILVER_EVENTS, tables.SILVER_SESSIONS, tables.GOLD_DAILY_FUNNEL):
        df = read(spark, config, table)
        assert "user_id" not in df.columns
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        if strings:
            assert df.where(F.instr(F.concat_ws("|", *strings), key) > 0).count() == 0
    raw_ids = read(spark, config, tables.BRONZE_EVENTS).select(F.col("user_id").cast("long").alias("id"))
    silver_keys = read(spark, config, tables.SILVER_EVENTS).select(F.col("user_key").alias("id"))
    assert raw_ids.intersect(silver_keys).count() == 0


def snapshot(spark, config):
    return {t.id: sorted(tuple(r) for r in read(spark, config, t).drop("_ingested_at", "ingested_at").collect())
            for t in ALL_TABLES}


def test_a_second_run_changes_nothing(spark, generated_lake, tmp_path):
    config = copy_generated_lake(generated_lake, tmp_path / "lake")
    before = snapshot(spark, config)
    bronze_version = lake.table_version(spark, config["lake_root"], tables.BRONZE_EVENTS)
    pipeline.run(spark, config, events=GENERATED_EVENTS, seed=GENERATED_SEED)
    assert lake.table_version(spark, config["lake_root"], tables.BRONZE_EVENTS) == bronze_version
    after = snapshot(spark, config)
    for table in before:
        assert after[table] == before[table], table

from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from ecomlake import ingest, rees46
from ecomlake.errors import EcomlakeError

GOOD = "2019-10-01 00:00:10 UTC,view,1003,2053,electronics.smartphone,apple,489.07,541312140,72d76fde-8bb3"


def classify(spark, lines):
    df = spark.createDataFrame([(line, "file:/in.csv", "b1", datetime(2019, 12, 1, tzinfo=timezone.utc))
                                for line in lines], "value string, _source_file string, _batch_id string, _ingested_at timestamp")
    out = ingest.classify_rees46_lines(ingest.drop_headers(df, rees46.HEADER))
    return [(r.value, r._reject_reason) for r in out.select("value", "_reject_reason").collect()]


def test_each_line_gets_the_expected_verdict(spark):
    lines = [
        rees46.HEADER,                                                     # dropped, not a row
        "\ufeff" + rees46.HEADER,                                          # header with a BOM: dropped
        GOOD,                                                              # accepted
        "2019-10-01 00:00:10 UTC,view,1003,2053,electronics.smartphone,apple,489.07",   # 7 columns
        GOOD + ",extra",                                                   # 10 columns
        GOOD.replace("2019-10-01 00:00:10 UTC", "2019-13-45 25:61:00 UTC"),
        GOOD.replace("489.07", "4o9.07"),
        GOOD.replace("541312140", "user-1"),
        GOOD.replace(",1003,", ",x1003,"),
        GOOD.replace(",2053,", ",cat,"),
        GOOD.replace("apple", '"apple, inc."'),                            # quoted comma: 9 columns
        GOOD.replace("541312140", ""),                                     # missing id: clean's job
        "",
    ]
    assert classify(spark, lines) == [
        (GOOD, None),
        (lines[3], "wrong_column_count"),
        (lines[4], "wrong_column_count"),
        (lines[5], "unparseable_event_time"),
        (lines[6], "unparseable_price"),
        (lines[7], "unparseable_user_id"),
        (lines[8], "unparseable_product_id"),
        (lines[9], "unparseable_category_id"),
        (lines[10], None),
        (lines[11], None),
        ("", "empty_line"),
    ]


def test_bronze_keeps_source_text_and_quarantine_keeps_raw_line(spark):
    bad = GOOD.replace("489.07", "free")
    df = spark.createDataFrame([(GOOD, "file:/in.csv"), (bad, "file:/in.csv")], "value string, _source_file string") \
        .withColumn("_batch_id", F.lit("b1")).withColumn("_ingested_at", F.current_timestamp())
    classified = ingest.classify_rees46_lines(df)
    bronze = ingest.bronze_rows(classified).collect()
    assert len(bronze) == 1
    assert [bronze[0][c] for c in rees46.COLUMNS] == GOOD.split(",")
    rejected = ingest.rejected_rows(classified).collect()
    assert [(r.stage, r.reason, r.raw_line, r.price) for r in rejected] == [
        ("ingest", "unparseable_price", bad, "free")]


def test_quoted_field_is_unquoted(spark):
    line = GOOD.replace("apple", '"apple, inc."')
    df = spark.createDataFrame([(line,)], "value string").withColumn("_source_file", F.lit("f")) \
        .withColumn("_batch_id", F.lit("b")).withColumn("_ingested_at", F.current_timestamp())
    row = ingest.bronze_rows(ingest.classify_rees46_lines(df)).head()
    assert row.brand == "apple, inc."


def classify_catalog(spark, lines):
    df = spark.createDataFrame([(line, "file:/products.csv", "b1", datetime(2019, 12, 1, tzinfo=timezone.utc))
                                for line in lines], "value string, _source_file string, _batch_id string, _ingested_at timestamp")
    out = ingest.classify_catalog_lines(ingest.drop_headers(df, rees46.CATALOG_HEADER))
    rows = [(r.raw_line, r.product_id, r.brand, r.base_price, r._reject_reason)
            for r in out.select("raw_line", "product_id", "brand", "base_price", "_reject_reason").collect()]
    return sorted(rows, key=lambda r: (r[0], r[4] or ""))


def test_each_catalogue_line_gets_the_expected_verdict(spark):
    apple = "1003,2053,electronics.smartphone,apple,489.07"
    samsung = "1003,2053,electronics.smartphone,samsung,489.07"  # same product_id, another line: a conflict
    quoted = '1007,2053,electronics.smartphone,"apple, inc.",10'
    lines = [rees46.CATALOG_HEADER, samsung, apple, apple, "1004,2053,a,b,-5", "1005,2053,a,b,free",
             ",2053,a,b,10", "1006,2053,a", quoted, "1008,2053,,,", "", "x1009,2053,a,b,1", "1010,cat,a,b,1",
             "1011,2053,a,b,0"]
    assert classify_catalog(spark, lines) == [
        ("", None, None, None, "empty_line"),
        (",2053,a,b,10", None, "b", 10.0, "missing_product_id"),
        (apple, 1003, "apple", 489.07, None),                       # first line of 1003: kept
        (apple, 1003, "apple", 489.07, "duplicate_product_id"),     # the same line again
        (samsung, 1003, "samsung", 489.07, "duplicate_product_id"),
        ("1004,2053,a,b,-5", 1004, "b", -5.0, "bad_base_price"),
        ("1005,2053,a,b,free", 1005, "b", None, "unparseable_base_price"),
        ("1006,2053,a", 1006, None, None, "wrong_column_count"),
        (quoted, 1007, "apple, inc.", 10.0, None),
        ("1008,2053,,,", 1008, None, None, None),                   # no code, brand or price: still a product
        ("1010,cat,a,b,1", 1010, "b", 1.0, "unparseable_category_id"),
        ("1011,2053,a,b,0", 1011, "b", 0.0, "bad_base_price"),
        ("x1009,2053,a,b,1", None, "b", 1.0, "unparseable_product_id"),
    ]


def test_catalogue_bronze_and_quarantine_rows(spark):
    df = spark.createDataFrame([("1,2,c.d,e,3.5", "f"), ("1,2,c.d,e,3.5", "f"), ("2,2,c.d,e,-1", "f")],
                               "value string, _source_file string") \
        .withColumn("_batch_id", F.lit("b1")).withColumn("_ingested_at", F.current_timestamp())
    classified = ingest.classify_catalog_lines(df)
    bronze = ingest.catalog_bronze_rows(classified).collect()
    assert [tuple(r)[:5] for r in bronze] == [(1, 2, "c.d", "e", 3.5)]
    rejected = sorted((r.stage, r.reason, r.raw_line, r.product_id) for r in ingest.catalog_rejected_rows(classified).collect())
    assert rejected == [("ingest", "bad_base_price", "2,2,c.d,e,-1", 2),
                        ("ingest", "duplicate_product_id", "1,2,c.d,e,3.5", 1)]


def test_reconcile_names_the_file_whose_rows_do_not_add_up():
    from ecomlake.ingest_files import FileCounts, reconcile, totals
    from ecomlake.lake import FileInfo

    files = [FileInfo("file:/in/a.csv", 100, 1), FileInfo("file:/in/b.csv", 50, 2)]
    now = datetime(2019, 12, 1)
    read = {"file:/in/a.csv": FileCounts(8, 2, {"bad_price": 2}), "file:/in/b.csv": FileCounts(5, 0)}
    rows = reconcile("rees46", files, read, {p: FileCounts(c.bronze, c.quarantined) for p, c in read.items()},
                     "batch-1", now)
    assert rows == [("file:/in/a.csv", 100, 1, "batch-1", now, 10, 8, 2, "ingested"),
                    ("file:/in/b.csv", 50, 2, "batch-1", now, 5, 5, 0, "ingested")]
    assert totals(rows) == {"input_lines": 15, "bronze_rows": 13, "quarantined_rows": 2}
    lost = {"file:/in/a.csv": FileCounts(8, 2), "file:/in/b.csv": FileCounts(4, 0)}   # one bronze row missing
    with pytest.raises(EcomlakeError, match=r"reconciliation failed for file:/in/b.csv: 5 input lines .* 4 bronze"):
        reconcile("rees46", files, read, lost, "batch-1", now)
    with pytest.raises(EcomlakeError, match=r"lines were read from \[None\]"):          # a line of no listed file
        reconcile("rees46", files, {**read, None: FileCounts(1, 0)}, read, "batch-1", now)

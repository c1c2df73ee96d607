from datetime import date, datetime, timezone

from pyspark.sql import Row

from ecomlake import clean
from ecomlake.privacy import pseudonym_of
from tests.conftest import leaked_key_renderings

KEY = b"test-key-0123456789abcdef"
INGESTED = datetime(2019, 12, 1, 0, 0, 0, tzinfo=timezone.utc)
BRONZE_SCHEMA = ("event_time string, event_type string, product_id string, category_id string, "
                 "category_code string, brand string, price string, user_id string, user_session string, "
                 "_source_file string, _batch_id string, _ingested_at timestamp")


def bronze_row(session, **changes):
    row = dict(event_time="2019-10-01 10:00:00 UTC", event_type="view", product_id="100", category_id="5",
               category_code="electronics.phone", brand="acme", price="10.50", user_id="42",
               user_session=session, _source_file="file:/a.csv", _batch_id="b1", _ingested_at=INGESTED)
    row.update(changes)
    return row


ROWS = [
    bronze_row("ok"),
    bronze_row("ok", _source_file="file:/b.csv", _batch_id="b2",
               _ingested_at=datetime(2019, 12, 2, tzinfo=timezone.utc)),          # same event, ingested later
    bronze_row("upper", event_type=" VIEW ", user_id="43"),
    bronze_row("negative", price="-1.00"),
    bronze_row("absurd", price="60000"),
    bronze_row("zero", price="0"),                                                 # free items are valid
    bronze_row("click", event_type="click"),
    bronze_row("no_user", user_id=None),
    bronze_row("no_product", product_id=""),
    bronze_row("no_price", price=None),
    bronze_row("future", event_time="2019-12-01 01:00:01 UTC"),                    # > ingest + 60 min
    bronze_row("nearly_future", event_time="2019-12-01 00:59:59 UTC"),             # within tolerance
    bronze_row("old", event_time="1999-12-31 23:59:59 UTC"),
    bronze_row("no_time", event_time=None),
]


def validated(spark):
    bronze = spark.createDataFrame([Row(**r) for r in ROWS], BRONZE_SCHEMA)
    return clean.validate_events(bronze, max_price=50000.0, min_event_time="2000-01-01",
                                 future_tolerance_minutes=60)


def test_each_bad_row_gets_its_reason_and_the_first_copy_stays(spark):
    got = sorted((r.user_session, r._source_file, r._reject_reason)
                 for r in validated(spark).select("user_session", "_source_file", "_reject_reason").collect())
    assert got == sorted([
        ("ok", "file:/a.csv", None),
        ("ok", "file:/b.csv", "duplicate"),
        ("upper", "file:/a.csv", None),
        ("negative", "file:/a.csv", "negative_price"),
        ("absurd", "file:/a.csv", "absurd_price"),
        ("zero", "file:/a.csv", None),
        ("click", "file:/a.csv", "unknown_event_type"),
        ("no_user", "file:/a.csv", "missing_user_id"),
        ("no_product", "file:/a.csv", "missing_product_id"),
        ("no_price", "file:/a.csv", "missing_price"),
        ("future", "file:/a.csv", "event_in_future"),
        ("nearly_future", "file:/a.csv", None),
        ("old", "file:/a.csv", "event_too_old"),
        ("no_time", "file:/a.csv", "missing_event_time"),
    ])


def test_silver_rows_are_typed_and_pseudonymised(spark):
    silver = clean.silver_rows(validated(spark), KEY)
    assert tuple(silver.columns) == clean.SILVER_COLUMNS
    assert "user_id" not in silver.columns
    rows = {r.user_session: r for r in silver.collect()}
    assert sorted(rows) == ["nearly_future", "ok", "upper", "zero"]
    ok = rows["ok"]
    assert ok.event_time == datetime(2019, 10, 1, 10, 0, 0)  # session time zone is UTC
    assert ok.event_date == date(2019, 10, 1)
    assert (ok.event_type, ok.product_id, ok.category_id, ok.price) == ("view", 100, 5, 10.5)
    assert ok.user_key == pseudonym_of(42, KEY)
    assert rows["upper"].event_type == "view"
    assert rows["upper"].user_key == pseudonym_of(43, KEY) != ok.user_key
    assert ok._source_file == "file:/a.csv"


def test_rejected_rows_keep_source_fields_and_reason(spark):
    rejected = {r.user_session + ":" + r.reason: r for r in clean.rejected_rows(validated(spark)).collect()}
    assert len(rejected) == 10
    negative = rejected["negative:negative_price"]
    assert (negative.stage, negative.price, negative.raw_line, negative._batch_id) == ("clean", "-1.00", None, "b1")


def test_pseudonym_matches_python_hmac_and_depends_on_key(spark):
    df = spark.createDataFrame([(1,), (541312140,)], "user_id long")
    from ecomlake.privacy import pseudonymise

    got = [r.user_key for r in pseudonymise(df, "user_id", "user_key", KEY).orderBy("user_key").collect()]
    assert sorted(got) == sorted([pseudonym_of(1, KEY), pseudonym_of(541312140, KEY)])
    other = [r.user_key for r in pseudonymise(df, "user_id", "user_key", b"another-key-0123456").collect()]
    assert set(other).isdisjoint(got)
    # Neither the key nor the padded key (what pseudonymise puts in a DataFrame) is a literal
    # anywhere in the plans (plans reach logs, the Spark UI and event logs): not in the query
    # execution's text, nor in any explain mode. F.lit(ipad) would show as 0x4253...
    pseudonymised = pseudonymise(df, "user_id", "user_key", KEY)
    pseudonymised.collect()                                    # the executed (adaptive) plan too
    execution = pseudonymised._jdf.queryExecution()
    plans = {"queryExecution": execution.toString()}
    for mode in ("simple", "extended", "formatted", "cost", "codegen"):
        plans[mode] = spark._jvm.PythonSQLUtils.explainString(execution, mode)
    for name, plan in plans.items():
        assert "_hmac_ipad" in plan or name == "codegen"      # the plan is there, the pads only by name
        assert leaked_key_renderings(plan, KEY) == [], name

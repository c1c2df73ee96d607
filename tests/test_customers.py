"""The customer master end to end: generated with planted dirty rows, ingested with quarantine and
reconciliation, pseudonymised in silver with the events' key, rebuilt only when it changed, erased."""
import json

import pytest
from pyspark.sql import functions as F

from ecomlake import generate as gen
from ecomlake import lake, tables

pytestmark = pytest.mark.e2e


def test_customers_ingest_quarantine_pseudonymise_and_forget(spark, make_config, tmp_path):
    from ecomlake.jobs import clean, forget, pipeline

    config = make_config("generate.regions=true", "generate.dirty_fraction=0.05")
    root = config["lake_root"]
    pipeline.run(spark, config, events=3000, seed=4)
    truth = json.loads(lake.read_text_file(spark, f"{config['generate']['output']}/_ground_truth/generator.json"))
    regions = truth["regions"]
    bronze = lake.read_table(spark, root, tables.BRONZE_CUSTOMERS)
    quarantine = lake.read_table(spark, root, tables.QUARANTINE_CUSTOMERS)
    # Every line is in bronze or in quarantine, and the quarantine has exactly the planted reasons.
    assert bronze.count() + quarantine.count() == regions["lines"]
    reasons = {r.reason: r["count"] for r in quarantine.groupBy("reason").count().collect()}
    assert reasons == {k: v for k, v in regions["expected_quarantine"].items() if v}
    assert bronze.count() == gen.GeneratorParams(events=3000).users - sum(
        n for kind, n in regions["dirty_rows"].items() if kind != "duplicate_customer")

    # silver/customers: user_key, never user_id, with the events' key (every buyer's key is known).
    silver = lake.read_table(spark, root, tables.SILVER_CUSTOMERS)
    customers = silver.count()
    assert "user_id" not in silver.columns and customers == bronze.count()
    events = lake.read_table(spark, root, tables.SILVER_EVENTS).select("user_key").distinct()
    matched = events.join(silver, "user_key").count()
    assert matched > 0.85 * events.count()          # the others' customer line was quarantined
    assert silver.where(~F.col("region").isin(*[r[0] for r in gen.REGIONS])).count() == 0

    # Nothing new: clean does not rebuild it.
    version = lake.table_version(spark, root, tables.SILVER_CUSTOMERS)
    clean.run(spark, config)
    assert lake.table_version(spark, root, tables.SILVER_CUSTOMERS) == version

    # Erasure reaches the customer master in bronze (raw id) and silver (user_key).
    gone = bronze.orderBy("user_id").first().user_id
    ids = tmp_path / "forget.txt"
    ids.write_text(f"{gone}\n")
    forget.run(spark, config, str(ids))
    assert lake.read_table(spark, root, tables.BRONZE_CUSTOMERS).where(F.col("user_id") == gone).count() == 0
    assert lake.read_table(spark, root, tables.SILVER_CUSTOMERS).count() == customers - 1
    # ... and the next clean, which rebuilds silver/customers from the smaller bronze, keeps them out.
    clean.run(spark, config)
    assert lake.read_table(spark, root, tables.SILVER_CUSTOMERS).count() == customers - 1

# Databricks notebook source
# MAGIC %md
# MAGIC # ecomlake: the lakehouse pipeline
# MAGIC Runs `generate` (unless an input path is given) -> `ingest` -> `clean` -> `sessionize` through
# MAGIC the ecomlake library, on this cluster's Spark (Delta is built into the runtime).
# MAGIC
# MAGIC Use it from a Databricks Repo of this project (the notebook adds `../lib` to the path) or
# MAGIC with the ecomlake wheel installed on the cluster. The pseudonymisation key is read from a
# MAGIC secret scope, never typed here.

# COMMAND ----------

dbutils.widgets.text("lake_root", "dbfs:/ecomlake", "Lake root")
dbutils.widgets.text("input_path", "", "REES46 input (file, folder or glob; empty = generate)")
dbutils.widgets.text("catalog_path", "", "Product catalogue CSV (empty = the generated one, if any)")
dbutils.widgets.text("raw_root", "dbfs:/raw/ecomlake/rees46", "Where generate writes")
dbutils.widgets.text("events", "10000000", "Events to generate")
dbutils.widgets.text("secret_scope", "ecomlake", "Secret scope holding the pseudonymisation key")

# COMMAND ----------

import os
import sys

try:
    import ecomlake  # noqa: F401  (installed as a wheel)
except ImportError:
    sys.path.insert(0, os.path.abspath(os.path.join(os.getcwd(), "..", "lib")))

from ecomlake import config as cfg
from ecomlake.jobs import pipeline

os.environ["ECOMLAKE_PSEUDONYM_KEY"] = dbutils.secrets.get(dbutils.widgets.get("secret_scope"), "pseudonym_key")
config = cfg.load(
    "databricks",
    overrides=[f"generate.output={dbutils.widgets.get('raw_root')}"],
    lake=dbutils.widgets.get("lake_root"),
)

# COMMAND ----------

summary = pipeline.run(
    spark,
    config,
    input_path=dbutils.widgets.get("input_path") or None,
    events=int(dbutils.widgets.get("events")),
    catalog_path=dbutils.widgets.get("catalog_path") or None,
)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The daily funnel

# COMMAND ----------

funnel = spark.read.format("delta").load(f"{config['lake_root']}/gold/daily_funnel")
display(funnel.orderBy("event_date", "category"))

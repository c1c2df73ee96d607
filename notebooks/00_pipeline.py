# Databricks notebook source
# MAGIC %md
# MAGIC # ecomlake: the lakehouse pipeline
# MAGIC Runs `generate` (unless an input path is given) -> `ingest` -> `clean` -> `sessionize` through
# MAGIC the ecomlake library, on this cluster's Spark (Delta is built into the runtime).
# MAGIC
# MAGIC Needs the ecomlake wheel (`make wheel`) installed on the cluster as a library, or
# MAGIC `%pip install` of it in this notebook. The pseudonymisation key is read from a secret scope,
# MAGIC never typed here (`ecomlake.notebook.notebook_config`, shared by every notebook).

# COMMAND ----------

dbutils.widgets.text("lake_root", "dbfs:/ecomlake", "Lake root")
dbutils.widgets.text("input_path", "", "REES46 input (file, folder or glob; empty = generate)")
dbutils.widgets.text("catalog_path", "", "Product catalogue CSV (empty = the generated one, if any)")
dbutils.widgets.text("raw_root", "dbfs:/raw/ecomlake/rees46", "Where generate writes")
dbutils.widgets.text("events", "10000000", "Events to generate")
dbutils.widgets.text("secret_scope", "ecomlake", "Secret scope holding the pseudonymisation key")

# COMMAND ----------

from ecomlake.jobs import pipeline
from ecomlake.notebook import notebook_config

config = notebook_config(dbutils)

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

# Databricks notebook source
# MAGIC %md
# MAGIC # Quarantine review
# MAGIC What ingest and clean rejected, by stage and reason, with examples: the place to look before
# MAGIC trusting a new source file.

# COMMAND ----------

dbutils.widgets.text("lake_root", "dbfs:/ecomlake", "Lake root")
lake_root = dbutils.widgets.get("lake_root")

# COMMAND ----------

from delta.tables import DeltaTable
from pyspark.sql import functions as F

quarantine = spark.read.format("delta").load(f"{lake_root}/quarantine/events")
by_reason = quarantine.groupBy("stage", "reason", "_source_file").count().orderBy(F.desc("count"))
display(by_reason)

# COMMAND ----------

log = spark.read.format("delta").load(f"{lake_root}/bronze/ingest_log")
display(log.orderBy(F.desc("ingested_at")))

# COMMAND ----------

display(quarantine.where("stage = 'ingest'").select("reason", "raw_line", "_source_file").limit(100))

# COMMAND ----------

# MAGIC %md
# MAGIC Whole files set aside by ingest (empty, wrong header, a compressed stream that breaks): the
# MAGIC other files of their batch went through. Fix the file and ingest again: it leaves this list.

# COMMAND ----------

files_path = f"{lake_root}/quarantine/files"
if DeltaTable.isDeltaTable(spark, files_path):
    display(spark.read.format("delta").load(files_path).orderBy(F.desc("ingested_at")))

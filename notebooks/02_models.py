# Databricks notebook source
# MAGIC %md
# MAGIC # ecomlake: features, Spark ML baselines and scores
# MAGIC Builds point-in-time features as of the training cutoff, trains and evaluates the baselines
# MAGIC (`train`), builds features as of the scoring date and writes the gold score tables (`score`),
# MAGIC then shows every model next to its baselines from `gold/model_runs`. Run `00_pipeline` first.
# MAGIC The deep models run from here too: `from ecomlake.jobs import train_deep` then
# MAGIC `train_deep.run(spark, config, "wide_deep", train_as_of, num_proc=..., launcher="spark")`.

# COMMAND ----------

dbutils.widgets.text("lake_root", "dbfs:/ecomlake", "Lake root")
dbutils.widgets.text("raw_root", "dbfs:/raw/ecomlake/rees46", "Where generate wrote (ground truth)")
dbutils.widgets.text("train_as_of", "2019-11-17", "Training cutoff (labels need the horizon after it)")
dbutils.widgets.text("score_as_of", "2019-12-01", "Scoring date")
dbutils.widgets.text("train_tasks", "all", "train: all, recommend, propensity, churn, forecast, segments, elasticity")
dbutils.widgets.text("score_tasks", "all", "score: all, recommend, propensity, churn, segments, forecast")
dbutils.widgets.text("secret_scope", "ecomlake", "Secret scope holding the pseudonymisation key")

# COMMAND ----------

from ecomlake.jobs import features, score, train
from ecomlake.notebook import notebook_config

config = notebook_config(dbutils)
train_as_of, score_as_of = dbutils.widgets.get("train_as_of"), dbutils.widgets.get("score_as_of")

# COMMAND ----------

features.run(spark, config, train_as_of)
for task in dbutils.widgets.get("train_tasks").split(","):
    train.run(spark, config, task.strip(), train_as_of)
features.run(spark, config, score_as_of)
for task in dbutils.widgets.get("score_tasks").split(","):
    score.run(spark, config, score_as_of, task=task.strip())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Models and their baselines (one row per run)

# COMMAND ----------

from pyspark.sql import functions as F

runs = spark.read.format("delta").load(f"{config['lake_root']}/gold/model_runs")
display(runs.where(F.col("as_of_date") == train_as_of)
        .select("task", "model", "is_baseline", F.explode("metrics").alias("metric", "value"))
        .orderBy("task", "metric", "model"))

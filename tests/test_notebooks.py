"""The Databricks notebooks run the library as written (with a stand-in dbutils)."""
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebook

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))


def notebook(name: str) -> Path:
    [path] = [p for p in NOTEBOOKS if p.name == name]
    return path


class FakeDbutils:
    def __init__(self, values, secret):
        outer = self

        class Widgets:
            def text(self, name, default, label=None):
                outer._values.setdefault(name, default)

            def get(self, name):
                return outer._values[name]

        class Secrets:
            def get(self, scope, key):
                return secret

        self._values = dict(values)
        self.widgets, self.secrets = Widgets(), Secrets()


def run_notebook(path, spark, dbutils, displayed):
    code = compile(path.read_text(), str(path), "exec")
    exec(code, {"spark": spark, "dbutils": dbutils, "display": displayed.append, "displayHTML": displayed.append,
                "__name__": "notebook"})


def test_notebooks_are_databricks_sources():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        assert path.read_text().startswith("# Databricks notebook source\n"), path


@pytest.mark.slow   # 38 s; the notebook machinery stays in CI through the analytics notebook below
def test_pipeline_notebook_runs_and_the_review_notebook_reads_its_tables(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("ECOMLAKE_PSEUDONYM_KEY", "replaced-by-the-notebook")  # restored afterwards
    values = {"lake_root": str(tmp_path / "lake"), "raw_root": str(tmp_path / "raw"), "events": "2000"}
    displayed = []
    run_notebook(notebook("00_pipeline.py"), spark, FakeDbutils(values, "notebook-secret-key-123"), displayed)
    truth = json.loads((tmp_path / "raw" / "_ground_truth" / "generator.json").read_text())
    assert displayed[0].agg({"views": "sum"}).head()[0] > 0
    assert spark.read.format("delta").load(f"{tmp_path}/lake/bronze/products").count() == truth["products"]
    review = FakeDbutils({"lake_root": str(tmp_path / "lake")}, "")
    run_notebook(notebook("01_quarantine_review.py"), spark, review, displayed)
    by_reason = displayed[1]
    assert by_reason.agg({"count": "sum"}).head()[0] == sum(truth["dirty_rows"].values())


@pytest.mark.slow
def test_models_notebook_trains_scores_and_shows_the_runs(spark, generated_lake, tmp_path, monkeypatch):
    from tests.conftest import copy_generated_lake

    monkeypatch.setenv("ECOMLAKE_PSEUDONYM_KEY", "notebook-secret-key-123")
    copy_generated_lake(generated_lake, tmp_path / "lake")
    values = {"lake_root": str(tmp_path / "lake"), "raw_root": generated_lake["raw"],
              "train_tasks": "segments, elasticity", "score_tasks": "segments"}
    displayed = []
    run_notebook(notebook("02_models.py"), spark, FakeDbutils(values, "notebook-secret-key-123"), displayed)
    shown = {(r.task, r.model, r.metric) for r in displayed[0].collect()}
    assert ("segments", "rfm_kmeans", "silhouette") in shown
    assert ("elasticity", "log_log_wls", "mean_abs_error_vs_planted") in shown
    segments = spark.read.format("delta").load(f"{tmp_path}/lake/gold/segments")
    assert segments.where("as_of_date = '2019-12-01'").count() > 0


def test_analytics_notebook_builds_the_report(spark, tmp_path, monkeypatch):
    from ecomlake import lake, tables
    from tests.test_sentiment import planted_reviews

    monkeypatch.setenv("ECOMLAKE_PSEUDONYM_KEY", "notebook-secret-key-123")
    root = str(tmp_path / "lake")
    reviews = spark.createDataFrame(planted_reviews(), "review_id long, item_id long, age int, title string, "
                                    "review_text string, rating int, recommended int, positive_feedback int, "
                                    "division string, department string, class_name string")
    lake.overwrite_table(reviews, root, tables.BRONZE_CLOTHING_REVIEWS)
    values = {"lake_root": root, "raw_root": str(tmp_path / "raw"), "steps": "sentiment, report",
              "embeddings": "false"}
    displayed = []
    run_notebook(notebook("03_analytics.py"), spark, FakeDbutils(values, "notebook-secret-key-123"), displayed)
    page = displayed[-1]
    assert page.startswith("<!DOCTYPE html>") and "<h2>Review sentiment</h2>" in page
    # Only the reviews and their model runs exist in this lake: every other section says what to run.
    assert page.count("Skipped:") == 10 and "<h2>Recommendation and model quality</h2><table>" in page
    assert (tmp_path / "lake" / "reports" / "report.html").exists()

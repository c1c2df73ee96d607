"""Where each table lives (<lake_root>/<layer>/<name>) and which job produces it."""
from __future__ import annotations

from dataclasses import dataclass

LAYERS = ("bronze", "silver", "gold", "quarantine")


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    producer: str  # the job that writes it: named in "run X first" errors

    @property
    def id(self) -> str:
        return f"{self.layer}/{self.name}"

    def path(self, lake_root: str) -> str:
        return f"{lake_root.rstrip('/')}/{self.layer}/{self.name}"


BRONZE_EVENTS = Table("bronze", "events", "ingest")
BRONZE_INGEST_LOG = Table("bronze", "ingest_log", "ingest")
QUARANTINE_EVENTS = Table("quarantine", "events", "ingest / clean")
SILVER_EVENTS = Table("silver", "events", "clean")
SILVER_SESSIONS = Table("silver", "sessions", "sessionize")
GOLD_DAILY_FUNNEL = Table("gold", "daily_funnel", "sessionize")

# Point-in-time features and labels (job `features`), partitioned by as_of_date.
GOLD_USER_FEATURES = Table("gold", "user_features", "features")
GOLD_ITEM_FEATURES = Table("gold", "item_features", "features")
GOLD_INTERACTIONS = Table("gold", "interactions", "features")
GOLD_DAILY_SALES = Table("gold", "daily_sales", "features")
GOLD_USER_LABELS = Table("gold", "user_labels", "features")
GOLD_SALES_LABELS = Table("gold", "sales_labels", "features")
# Model runs (job `train`) and scores (job `score`).
GOLD_MODEL_RUNS = Table("gold", "model_runs", "train")
GOLD_RECOMMENDATIONS = Table("gold", "recommendations", "score")
GOLD_PROPENSITY_SCORES = Table("gold", "propensity_scores", "score")
GOLD_CHURN_RISK = Table("gold", "churn_risk", "score")
GOLD_SEGMENTS = Table("gold", "segments", "score")
GOLD_FORECASTS = Table("gold", "forecasts", "score")
# Real data adapters (job `ingest --source ...`).
BRONZE_MOVIELENS_RATINGS = Table("bronze", "movielens_ratings", "ingest --source movielens100k")
QUARANTINE_MOVIELENS_RATINGS = Table("quarantine", "movielens_ratings", "ingest --source movielens100k")

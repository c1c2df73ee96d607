"""Where each table lives (<lake_root>/<layer>/<name>) and which job produces it."""
from __future__ import annotations

from dataclasses import dataclass

LAYERS = ("bronze", "silver", "gold", "quarantine", "ops")


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
BRONZE_PRODUCTS = Table("bronze", "products", "ingest --source rees46_catalog")
BRONZE_SEARCH_IMPRESSIONS = Table("bronze", "search_impressions", "ingest --source search_log")
QUARANTINE_SEARCH_IMPRESSIONS = Table("quarantine", "search_impressions", "ingest --source search_log")
QUARANTINE_PRODUCTS = Table("quarantine", "products", "ingest --source rees46_catalog")
# The customer master (issue 16 section 1): raw ids in bronze, pseudonymised in silver by `clean`.
BRONZE_CUSTOMERS = Table("bronze", "customers", "ingest --source customers")
QUARANTINE_CUSTOMERS = Table("quarantine", "customers", "ingest --source customers")
SILVER_CUSTOMERS = Table("silver", "customers", "clean")

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
GOLD_NEXT_ITEM = Table("gold", "next_item_recommendations", "score --task next_item")
GOLD_TWO_STAGE_RECOMMENDATIONS = Table("gold", "two_stage_recommendations", "score --task two_stage")
# Real data adapters (job `ingest --source ...`).
BRONZE_MOVIELENS_RATINGS = Table("bronze", "movielens_ratings", "ingest --source movielens100k")
QUARANTINE_MOVIELENS_RATINGS = Table("quarantine", "movielens_ratings", "ingest --source movielens100k")
BRONZE_CDNOW_ORDERS = Table("bronze", "cdnow_orders", "ingest --source cdnow")
QUARANTINE_CDNOW_ORDERS = Table("quarantine", "cdnow_orders", "ingest --source cdnow")
BRONZE_CDNOW_SAMPLE_ORDERS = Table("bronze", "cdnow_sample_orders", "ingest --source cdnow_sample")
QUARANTINE_CDNOW_SAMPLE_ORDERS = Table("quarantine", "cdnow_sample_orders", "ingest --source cdnow_sample")
BRONZE_CLOTHING_REVIEWS = Table("bronze", "clothing_reviews", "ingest --source clothing_reviews")
QUARANTINE_CLOTHING_REVIEWS = Table("quarantine", "clothing_reviews", "ingest --source clothing_reviews")
BRONZE_DOMINICKS_OJ = Table("bronze", "dominicks_oj", "ingest --source dominicks_oj")
QUARANTINE_DOMINICKS_OJ = Table("quarantine", "dominicks_oj", "ingest --source dominicks_oj")
BRONZE_DOMINICKS_STORES = Table("bronze", "dominicks_stores", "ingest --source dominicks_stores")
QUARANTINE_DOMINICKS_STORES = Table("quarantine", "dominicks_stores", "ingest --source dominicks_stores")
BRONZE_PRODUCT_IMAGES = Table("bronze", "product_images", "ingest --source fashion_mnist")
QUARANTINE_PRODUCT_IMAGES = Table("quarantine", "product_images", "ingest --source fashion_mnist")
GOLD_ITEM_IMAGE_EMBEDDINGS = Table("gold", "item_image_embeddings", "train_deep image_cnn")
# Cold-start products (issue 17 section 2): which image shows each product, and the content model.
BRONZE_PRODUCT_IMAGE_LINKS = Table("bronze", "product_image_links", "ingest --source rees46_product_images")
QUARANTINE_PRODUCT_IMAGE_LINKS = Table("quarantine", "product_image_links", "ingest --source rees46_product_images")
GOLD_PRODUCT_CONTENT = Table("gold", "product_content", "cold_start")
GOLD_NEW_ITEM_RECOMMENDATIONS = Table("gold", "new_item_recommendations", "cold_start")
GOLD_VISUALLY_SIMILAR_ITEMS = Table("gold", "visually_similar_items", "cold_start")
GOLD_ITEM_EDGES = Table("gold", "item_edges", "graph")
GOLD_ITEM_RELATIONS = Table("gold", "item_relations", "graph")
GOLD_ITEM_EMBEDDINGS = Table("gold", "item_embeddings", "graph")
# Customer value, reviews, risk, pricing (issue 5).
GOLD_CUSTOMER_VALUE = Table("gold", "customer_value", "clv")
GOLD_CLV_CALIBRATION = Table("gold", "clv_calibration", "clv")
GOLD_REVIEW_SENTIMENT = Table("gold", "review_sentiment", "sentiment")
# Review aspects and service triage (issue 17 section 3).
SILVER_REVIEW_EMBEDDINGS = Table("silver", "review_embeddings", "intents")
SILVER_PRODUCT_TEXT_EMBEDDINGS = Table("silver", "product_text_embeddings", "search")
SILVER_QUERY_EMBEDDINGS = Table("silver", "query_embeddings", "search")
GOLD_SEARCH_PAIR_CLICKS = Table("gold", "search_pair_clicks", "search")
GOLD_SEARCH_PRODUCT_CLICKS = Table("gold", "search_product_clicks", "search")
GOLD_REVIEW_ASPECTS = Table("gold", "review_aspects", "intents")
GOLD_ASPECT_SUMMARY = Table("gold", "aspect_summary", "intents")
GOLD_SERVICE_QUEUE = Table("gold", "service_queue", "intents")
GOLD_ROUTED_MESSAGES = Table("gold", "routed_messages", "intents --route --input FILE")
QUARANTINE_ROUTED_MESSAGES = Table("quarantine", "routed_messages", "intents --route --input FILE")
GOLD_RISK_SIGNALS = Table("gold", "risk_signals", "risk")
GOLD_RISK_ALERTS = Table("gold", "risk_alerts", "risk")
GOLD_PRICE_ELASTICITY = Table("gold", "price_elasticity", "pricing")
GOLD_INVENTORY = Table("gold", "inventory_suggestions", "pricing")
GOLD_STORE_ELASTICITY = Table("gold", "store_elasticity", "pricing")
# Differentially private releases (issue 16 section 3); their budget is OPS_PRIVACY_LEDGER.
GOLD_DP_DAILY_FUNNEL = Table("gold", "dp_daily_funnel", "release daily_funnel")
GOLD_DP_REGIONAL_DEMAND = Table("gold", "dp_regional_demand", "release regional_demand")
# Demand by region (issue 16 section 1).
GOLD_REGIONAL_DEMAND = Table("gold", "regional_demand", "regional")
GOLD_REGIONAL_DAILY = Table("gold", "regional_daily", "regional")
GOLD_REGIONAL_FORECASTS = Table("gold", "regional_forecasts", "regional")
GOLD_REGIONAL_ELASTICITY = Table("gold", "regional_elasticity", "regional")
# Data and model monitoring (issue 16 section 2).
GOLD_MONITORING = Table("gold", "monitoring", "monitor")
# Daily operation: what each run consumed and wrote, file-level quarantine, job leases.
OPS_JOB_RUNS = Table("ops", "job_runs", "every job (its run record)")
OPS_LEASES = Table("ops", "leases", "every job that writes tables (its lease)")
OPS_PRIVACY_LEDGER = Table("ops", "privacy_ledger", "release")
QUARANTINE_FILES = Table("quarantine", "files", "ingest")

"""The decision report: one self-contained HTML file (plots embedded as PNG) from the gold tables.

Every section reads only small aggregates (per day, per category, per cohort week, per model,
the top-N rows), draws them with matplotlib, and ends with suggestions computed from the data.
A section whose tables are missing is skipped with a note naming the job that writes them.
`build_report(spark, lake_root, as_of)` returns the HTML; the `report` job writes it.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.errors import EcomlakeError


class MissingTable(EcomlakeError):
    pass


@dataclass
class Section:
    key: str
    title: str
    parts: list[str] = field(default_factory=list)      # HTML fragments in order
    suggestions: list[str] = field(default_factory=list)
    skipped: str | None = None
    images: int = 0

    def plot(self, figure) -> None:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure)
        data = base64.b64encode(buffer.getvalue()).decode()
        self.parts.append(f'<img alt="{html.escape(self.title)} chart {self.images + 1}" src="data:image/png;base64,{data}">')
        self.images += 1

    def table(self, frame, caption: str = "", formats: dict | None = None) -> None:
        formats = formats or {}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for _, row in frame.iterrows():
            cells = []
            for c in frame.columns:
                value = row[c]
                missing = value is None or (isinstance(value, float) and value != value)
                text = "—" if missing else formats[c].format(value) if c in formats else value
                cells.append(f"<td>{html.escape(str(text))}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")

    def text(self, paragraph: str) -> None:
        self.parts.append(f"<p>{html.escape(paragraph)}</p>")


def _read(spark: SparkSession, root: str, table: tables.Table) -> DataFrame:
    if not lake.table_exists(spark, table.path(root)):
        raise MissingTable(f"{table.id} is missing: run `{table.producer}` to add this section")
    return lake.read_table(spark, root, table)


def _latest(df: DataFrame, column: str = "as_of_date", as_of: str | None = None) -> tuple[DataFrame, str]:
    value = as_of or df.agg(F.max(column)).first()[0]
    if value is None:
        raise MissingTable("the table has no rows")
    rows = df.where(F.col(column) == F.lit(str(value)))
    if rows.limit(1).count() == 0:
        raise MissingTable(f"no rows for {column} {value}")
    return rows, str(value)


def _figure(width=8.0, height=3.2, rows=1, columns=1, **options):
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG only
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(width, height), **options)


# ---- sections --------------------------------------------------------------------------------

def funnel_section(spark, root, as_of) -> Section:
    s = Section("funnel", "Funnel and conversion over time")
    funnel = _read(spark, root, tables.GOLD_DAILY_FUNNEL)
    daily = (funnel.groupBy("event_date").agg(*[F.sum(c).alias(c) for c in
                                               ("views", "carts", "purchases", "sessions_with_view", "sessions_with_purchase", "revenue")])
             .orderBy("event_date").toPandas())  # one row per day
    daily["conversion"] = daily["sessions_with_purchase"] / daily["sessions_with_view"].clip(lower=1)
    fig, ax = _figure()
    for c in ("views", "carts", "purchases"):
        ax.plot(daily["event_date"], daily[c], label=c)
    ax.set_yscale("log"), ax.set_title("Events per day (log scale)"), ax.legend(loc="upper left")
    fig.autofmt_xdate()
    s.plot(fig)
    fig, ax = _figure()
    ax.plot(daily["event_date"], 100 * daily["conversion"], color="tab:green")
    ax.set_title("Sessions that buy, % of sessions that view"), ax.set_ylabel("%")
    fig.autofmt_xdate()
    s.plot(fig)
    by_category = (funnel.groupBy("category").agg(F.sum("sessions_with_view").alias("viewing_sessions"),
                                                  F.sum("sessions_with_cart").alias("carting_sessions"),
                                                  F.sum("sessions_with_purchase").alias("buying_sessions"),
                                                  F.round(F.sum("revenue"), 0).alias("revenue"))
                   .orderBy(F.desc("revenue")).limit(12).toPandas())
    by_category["cart_to_purchase"] = by_category["buying_sessions"] / by_category["carting_sessions"].clip(lower=1)
    s.table(by_category, "Top categories by revenue", {"cart_to_purchase": "{:.1%}", "revenue": "{:,.0f}"})
    weekday = daily.assign(weekday=[d.strftime("%A") for d in daily["event_date"]]).groupby("weekday")["conversion"].mean()
    busy = by_category[by_category["carting_sessions"] >= by_category["carting_sessions"].median()]
    worst = busy.sort_values("cart_to_purchase").iloc[0] if len(busy) else None
    first_week, last_week = daily["conversion"].head(7).mean(), daily["conversion"].tail(7).mean()
    s.suggestions.append(f"Conversion moved from {first_week:.1%} in the first week to {last_week:.1%} in the last; "
                         f"{weekday.idxmax()} converts best ({weekday.max():.1%}) and {weekday.idxmin()} worst "
                         f"({weekday.min():.1%}): schedule campaigns and e-mails for {weekday.idxmax()}.")
    if worst is not None:
        s.suggestions.append(f"'{worst['category']}' loses the most carts: only {worst['cart_to_purchase']:.1%} of sessions "
                             f"that cart buy. Check its checkout (delivery cost, stock, payment options) first.")
    return s


def retention_section(spark, root, as_of) -> Section:
    s = Section("retention", "Sessions and cohort retention")
    sessions = _read(spark, root, tables.SILVER_SESSIONS)
    weekly = sessions.select("user_key", F.date_trunc("week", "session_start").cast("date").alias("week"))
    cohorts = weekly.groupBy("user_key").agg(F.min("week").alias("cohort"))
    matrix = (weekly.distinct().join(cohorts, "user_key")
              .withColumn("weeks_since", (F.datediff("week", "cohort") / 7).cast("int"))
              .groupBy("cohort", "weeks_since").agg(F.count("*").alias("users"))
              .orderBy("cohort", "weeks_since").toPandas())  # cohorts x weeks: a few dozen cells
    import numpy as np

    pivot = matrix.pivot(index="cohort", columns="weeks_since", values="users")  # NaN: week not observed yet
    retention = pivot.div(pivot[0], axis=0)
    fig, ax = _figure(8, 3.6)
    image = ax.imshow(np.ma.masked_invalid(retention.to_numpy() * 100), cmap="Blues", aspect="auto", vmin=0, vmax=100)
    ax.set_yticks(range(len(retention.index)), [str(c) for c in retention.index])
    ax.set_xlabel("weeks since the first session"), ax.set_title("Weekly cohorts: % of users active")
    fig.colorbar(image, ax=ax)
    s.plot(fig)
    stats = sessions.agg(F.count("*").alias("sessions"), F.avg("duration_seconds").alias("duration"),
                         F.avg(F.col("converted").cast("double")).alias("converted")).first()
    s.text(f"{stats['sessions']:,} sessions; mean duration {stats['duration'] / 60:.1f} min; "
           f"{stats['converted']:.1%} end in a purchase.")
    if 1 in retention.columns:
        week1 = retention[1][pivot[0] > 0]
        full = week1.iloc[:-1] if len(week1) > 1 else week1  # the last cohort has no full week 1 yet
        s.suggestions.append(f"On average {full.mean():.0%} of a cohort comes back the week after its first visit. "
                             f"A welcome-back offer in the first 7 days targets the {1 - full.mean():.0%} who do not.")
    return s


def customers_section(spark, root, as_of) -> Section:
    s = Section("customers", "Segments and customer value")
    found = False
    if lake.table_exists(spark, tables.GOLD_SEGMENTS.path(root)):
        segments, day = _latest(_read(spark, root, tables.GOLD_SEGMENTS))
        sizes = (segments.groupBy("segment_name").agg(F.count("*").alias("customers"),
                                                      F.round(F.avg("monetary"), 2).alias("mean_spend"),
                                                      F.round(F.avg("frequency"), 2).alias("mean_orders"))
                 .orderBy(F.desc("customers")).toPandas())
        fig, ax = _figure(8, 3)
        ax.barh(sizes["segment_name"], sizes["customers"], color="tab:purple")
        ax.set_title(f"Customer segments (RFM + KMeans), as of {day}"), ax.invert_yaxis()
        s.plot(fig)
        s.table(sizes, "Segments")
        found = True
    if lake.table_exists(spark, tables.GOLD_CUSTOMER_VALUE.path(root)):
        values = _read(spark, root, tables.GOLD_CUSTOMER_VALUE)
        source = values.agg(F.max("source")).first()[0] if values.where("source = 'cdnow'").limit(1).count() == 0 else "cdnow"
        values = values.where(F.col("source") == source)
        calibration = (_read(spark, root, tables.GOLD_CLV_CALIBRATION).where(F.col("source") == source)
                       .orderBy("bucket_order").toPandas())
        fig, ax = _figure(8, 3)
        x = range(len(calibration))
        ax.bar([i - 0.2 for i in x], calibration["actual_holdout_purchases"], width=0.4, label="actual")
        ax.bar([i + 0.2 for i in x], calibration["predicted_holdout_purchases"], width=0.4, label="BG/NBD predicted")
        ax.set_xticks(list(x), calibration["calibration_frequency"])
        ax.set_xlabel("repeat purchases in the calibration period"), ax.set_ylabel("holdout purchases per customer")
        ax.set_title(f"Customer value model check ({source}): predicted vs actual"), ax.legend()
        s.plot(fig)
        edges = values.approxQuantile("clv", [0.5, 0.9, 0.99], 1e-3)
        total = values.agg(F.sum("clv")).first()[0] or 0.0
        top = values.where(F.col("clv") >= edges[1]).agg(F.sum("clv")).first()[0] or 0.0
        s.text(f"{source}: median CLV {edges[0]:.2f}, top 10% from {edges[1]:.2f}; the top 10% of customers hold "
               f"{top / total if total else 0:.0%} of the expected value.")
        at_risk = values.where((F.col("clv") >= edges[1]) & (F.col("probability_alive") < 0.5))
        n_risk = at_risk.count()
        sample = at_risk.orderBy(F.desc("clv")).limit(5).select("customer_id", F.round("clv", 2).alias("clv"),
                                                               F.round("probability_alive", 2).alias("p_alive")).toPandas()
        s.suggestions.append(f"Send a win-back coupon to the {n_risk:,} high-value customers (top 10% CLV) whose "
                             f"probability of still being active is below 50%; the most valuable are "
                             f"{', '.join(sample['customer_id'].astype(str))}.")
        found = True
    if lake.table_exists(spark, tables.GOLD_CHURN_RISK.path(root)):
        churn, day = _latest(_read(spark, root, tables.GOLD_CHURN_RISK))
        n = churn.where(F.col("decile") == 10).count()
        s.suggestions.append(f"{n:,} past buyers are in the top churn-risk decile as of {day} "
                             f"(gold/churn_risk): target them with a retention offer before they lapse.")
    if not found:
        raise MissingTable(f"{tables.GOLD_SEGMENTS.id} and {tables.GOLD_CUSTOMER_VALUE.id} are missing: "
                           f"run `score` or `clv` to add this section")
    return s


MAIN_METRIC = {"recommend": "ndcg@10", "propensity": "auc", "churn": "auc", "forecast": "category_wape",
               "segments": "silhouette", "elasticity": "mean_abs_error_vs_planted", "next_item": "recall@20",
               "movielens": "ndcg@10", "clv": "mae", "review_recommended": "auc", "review_rating": "macro_f1",
               "risk": "pr_auc", "pricing": "model_wape"}


def models_section(spark, root, as_of) -> Section:
    s = Section("models", "Recommendation and model quality")
    model_runs = _read(spark, root, tables.GOLD_MODEL_RUNS)
    newest = (model_runs.groupBy("task", "model").agg(F.max_by(F.struct("metrics", "is_baseline", "as_of_date"),
                                                                F.col("created_at")).alias("r"))
              .select("task", "model", "r.*").orderBy("task", "is_baseline", "model").toPandas())  # tasks x models
    rows = []
    for _, r in newest.iterrows():
        metric = MAIN_METRIC.get(r["task"])
        value = (r["metrics"] or {}).get(metric) if metric else None
        if value is None and metric and metric.startswith("category_"):
            value = (r["metrics"] or {}).get(metric.replace("category_", ""))
        rows.append({"task": r["task"], "model": r["model"], "baseline": "yes" if r["is_baseline"] else "",
                     "metric": metric or "", "value": value, "trained as of": r["as_of_date"] or ""})
    import pandas as pd

    table = pd.DataFrame(rows)
    s.table(table, "Newest run of every model (held-out data)", {"value": "{:.4f}"})
    lower_is_better = {"forecast", "clv", "pricing", "elasticity"}
    for task, group in table.dropna(subset=["value"]).groupby("task"):
        if len(group) < 2:
            continue
        best = group.sort_values("value", ascending=task in lower_is_better).iloc[0]
        if best["baseline"]:
            s.suggestions.append(f"{task}: the baseline '{best['model']}' is still best on {best['metric']} "
                                 f"({best['value']:.3f}); keep it in production until a model beats it.")
        else:
            s.suggestions.append(f"{task}: '{best['model']}' is best on {best['metric']} ({best['value']:.3f}).")
    return s


def forecasts_section(spark, root, as_of) -> Section:
    s = Section("forecasts", "Forecasts against actuals")
    forecasts, day = _latest(_read(spark, root, tables.GOLD_FORECASTS), as_of=as_of)
    daily, _ = _latest(_read(spark, root, tables.GOLD_DAILY_SALES), as_of=day)
    categories = (daily.where(F.col("level") == "category").groupBy("series_key").agg(F.sum("units").alias("units"))
                  .orderBy(F.desc("units")).limit(4).toPandas()["series_key"].tolist())
    history = (daily.where((F.col("level") == "category") & F.col("series_key").isin(categories))
               .select("series_key", "event_date", "units").toPandas())
    ahead = (forecasts.where((F.col("level") == "category") & F.col("series_key").isin(categories))
             .select("series_key", "forecast_date", "forecast").toPandas())
    fig, axes = _figure(9, 4.6, 2, 2, sharex=True)
    for ax, category in zip(axes.flat, categories):
        h = history[history["series_key"] == category].sort_values("event_date")
        f = ahead[ahead["series_key"] == category].sort_values("forecast_date")
        ax.plot(h["event_date"], h["units"], label="actual units")
        ax.plot(f["forecast_date"], f["forecast"], label="forecast", color="tab:orange")
        ax.set_title(category, fontsize=9)
    axes.flat[0].legend(fontsize=8)
    fig.autofmt_xdate()
    s.plot(fig)
    if lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(root)):
        quality = (_read(spark, root, tables.GOLD_MODEL_RUNS).where(F.col("task") == "forecast")
                   .select("model", "as_of_date", F.col("metrics")["category_wape"].alias("category_wape"),
                           F.col("metrics")["product_wape"].alias("product_wape"))
                   .orderBy("category_wape").toPandas())
        s.table(quality, "Hold-out error of the forecasters (WAPE: lower is better)",
                {"category_wape": "{:.3f}", "product_wape": "{:.3f}"})
    growth = (ahead.groupby("series_key")["forecast"].mean()
              / history.sort_values("event_date").groupby("series_key")["units"].apply(lambda u: u.tail(14).mean())
              .clip(lower=1e-9))
    up = growth.idxmax()
    s.suggestions.append(f"'{up}' is forecast to sell {growth.max():.0%} of its last two weeks' daily rate over the "
                         f"next {ahead['forecast_date'].nunique()} days: plan its stock and promotions first.")
    return s


def elasticity_section(spark, root, as_of) -> Section:
    s = Section("elasticity", "Price elasticities")
    estimates = _read(spark, root, tables.GOLD_PRICE_ELASTICITY).toPandas()  # a row per category / brand
    for source, group in estimates.groupby("source"):
        group = group.sort_values("elasticity")
        fig, ax = _figure(8, 0.3 * len(group) + 1.2)
        errors = [group["elasticity"] - group["ci_low"], group["ci_high"] - group["elasticity"]]
        ax.barh(group["segment"], group["elasticity"], xerr=errors, color="tab:red", alpha=0.7)
        ax.axvline(-1, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"Price elasticity by {'brand' if source == 'dominicks_oj' else 'category'} ({source}), 95% CI; "
                     f"left of -1: a price cut raises revenue", fontsize=9)
        s.plot(fig)
        most, least = group.iloc[0], group.iloc[-1]
        widest = group.assign(width=group["ci_high"] - group["ci_low"]).sort_values("width").iloc[-1]
        s.suggestions.append(f"{source}: demand for '{most['segment']}' reacts most to price "
                             f"({most['elasticity']:.2f}): discounts pay there; '{least['segment']}' reacts least "
                             f"({least['elasticity']:.2f}): the candidate for a price increase.")
        s.suggestions.append(f"{source}: test the price of '{widest['segment']}' next: its elasticity is the least "
                             f"certain (95% CI {widest['ci_low']:.2f} to {widest['ci_high']:.2f}).")
        if group["feature_lift"].notna().any():
            best = group.sort_values("feature_lift").iloc[-1]
            s.suggestions.append(f"{source}: a feature ad lifts '{best['segment']}' the most "
                                 f"({best['feature_lift']:+.0%} units): give it the ad slots.")
    return s


def risk_section(spark, root, as_of) -> Section:
    s = Section("risk", "Risk alerts")
    alerts, day = _latest(_read(spark, root, tables.GOLD_RISK_ALERTS))
    reasons = (alerts.select(F.explode("reasons").alias("reason")).groupBy("reason").count()
               .orderBy(F.desc("count")).toPandas())  # one row per rule
    total = alerts.count()
    if len(reasons):
        fig, ax = _figure(8, 0.35 * len(reasons) + 1.0)
        ax.barh(reasons["reason"], reasons["count"], color="tab:gray")
        ax.set_title(f"Why {total:,} users were alerted (as of {day})", fontsize=9), ax.invert_yaxis()
        s.plot(fig)
    top = (alerts.orderBy("alert_rank").limit(10)
           .select("alert_rank", F.col("user_key").cast("string").alias("user"), F.round("risk_score", 3).alias("risk_score"),
                   F.array_join("reasons", "; ").alias("reasons"), F.round("purchase_value", 2).alias("purchase_value"))
           .toPandas())
    s.table(top, "The ten riskiest users")
    strong = alerts.where(F.size("reasons") >= 2)
    n_strong = strong.count()
    value = strong.agg(F.sum("purchase_value")).first()[0] or 0.0
    s.suggestions.append(f"Hold the orders of the {n_strong:,} alerted users with two or more reasons for review "
                         f"({value:,.0f} in purchase value); send the other {total - n_strong:,} to step-up verification.")
    return s


def reviews_section(spark, root, as_of) -> Section:
    s = Section("reviews", "Review sentiment")
    reviews = _read(spark, root, tables.GOLD_REVIEW_SENTIMENT).where(F.col("model") == "tfidf_lr")
    by_department = (reviews.groupBy("department").agg(F.count("*").alias("reviews"),
                                                        (1 - F.avg("recommended")).alias("not_recommended"),
                                                        F.avg("rating").alias("mean_rating"))
                     .where(F.col("reviews") >= 20).orderBy(F.desc("not_recommended")).toPandas())
    fig, ax = _figure(8, 2.8)
    ax.barh(by_department["department"], 100 * by_department["not_recommended"], color="tab:brown")
    ax.set_title("Reviews that do not recommend the item, % by department"), ax.invert_yaxis()
    s.plot(fig)
    if lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(root)):
        runs_ = (_read(spark, root, tables.GOLD_MODEL_RUNS).where(F.col("task").isin("review_recommended", "review_rating"))
                 .select("task", "model", F.col("metrics")["auc"].alias("auc"), F.col("metrics")["accuracy"].alias("accuracy"),
                         F.col("metrics")["macro_f1"].alias("macro_f1"), "details").orderBy("task", F.desc("auc")).toPandas())
        s.table(runs_.drop(columns=["details"]), "Sentiment models on the held-out reviews",
                {"auc": "{:.3f}", "accuracy": "{:.3f}", "macro_f1": "{:.3f}"})
        tfidf = runs_[(runs_["task"] == "review_recommended") & (runs_["model"] == "tfidf_lr")]
        if len(tfidf):
            terms = json.loads(tfidf.iloc[0]["details"]).get("top_terms", {})
            s.text("Words that push towards recommending: " + ", ".join(t for t, _ in terms.get("for", [])[:10]))
            s.text("Words that push against: " + ", ".join(t for t, _ in terms.get("against", [])[:10]))
            against = ", ".join(f"'{t}'" for t, _ in terms.get("against", [])[:4])
        else:
            against = ""
        worst = by_department.iloc[0]
        s.suggestions.append(f"'{worst['department']}' has the most unhappy reviews ({worst['not_recommended']:.0%} do not "
                             f"recommend, mean rating {worst['mean_rating']:.2f})" +
                             (f"; read its reviews that use the words most predictive of not recommending "
                              f"({against}) to find what to fix first." if against else "."))
    return s


def inventory_section(spark, root, as_of) -> Section:
    s = Section("inventory", "Inventory suggestions")
    inventory, day = _latest(_read(spark, root, tables.GOLD_INVENTORY), as_of=as_of)
    top = (inventory.orderBy(F.desc("reorder_point")).limit(10)
           .select("product_id", "lead_time_demand", "safety_stock", "reorder_point", "recent_daily_mean").toPandas())
    fig, ax = _figure(8, 2.6)
    ax.bar(top["product_id"].astype(str), top["lead_time_demand"], label="expected lead-time demand")
    ax.bar(top["product_id"].astype(str), top["safety_stock"], bottom=top["lead_time_demand"], label="safety stock")
    ax.set_title("Reorder point = lead-time demand + safety stock (top 10 products)"), ax.legend(fontsize=8, loc="lower right")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    s.plot(fig)
    s.table(top, f"Highest reorder points as of {day} (lead time "
                 f"{inventory.first()['lead_time_days']} days)", {"lead_time_demand": "{:.1f}", "safety_stock": "{:.1f}"})
    rising = inventory.where(F.col("lead_time_demand") > 1.5 * F.col("recent_daily_mean") * F.col("lead_time_days"))
    n_rising = rising.count()
    total_safety = inventory.agg(F.sum("safety_stock")).first()[0] or 0.0
    s.suggestions.append(f"Restock first the {n_rising:,} products whose lead-time demand is over 1.5x their recent "
                         f"sales pace; keep {total_safety:,.0f} units of safety stock in total for the service level.")
    s.suggestions.append("Top of the list: " + ", ".join(str(p) for p in top["product_id"].head(5)) +
                         " (reorder points " + ", ".join(str(int(r)) for r in top["reorder_point"].head(5)) + " units).")
    return s


SECTIONS = [funnel_section, retention_section, customers_section, models_section, forecasts_section,
            elasticity_section, risk_section, reviews_section, inventory_section]
SECTION_TITLES = ["Funnel and conversion over time", "Sessions and cohort retention", "Segments and customer value",
                  "Recommendation and model quality", "Forecasts against actuals", "Price elasticities",
                  "Risk alerts", "Review sentiment", "Inventory suggestions"]

STYLE = """body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;color:#222}
h1{margin-bottom:0}section{border-top:1px solid #ddd;padding:.5em 0 1em}img{max-width:100%;display:block;margin:.5em 0}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}.suggest{background:#eef6ee;border-left:4px solid #4a4;padding:.3em 1em}
.skipped{color:#a60}nav a{margin-right:.8em}"""


def build_report(spark: SparkSession, lake_root: str, as_of: str | None = None, generated_at: str = "") -> tuple[str, list[Section]]:
    sections = []
    for build in SECTIONS:
        try:
            section = build(spark, lake_root, as_of)
        except MissingTable as missing:
            title = SECTION_TITLES[SECTIONS.index(build)]
            section = Section(build.__name__.replace("_section", ""), title, skipped=str(missing))
        sections.append(section)
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        body.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>')
        if s.skipped:
            body.append(f'<p class="skipped">Skipped: {html.escape(s.skipped)}</p>')
        body.extend(s.parts)
        if s.suggestions:
            body.append('<div class="suggest"><h3>Suggestions</h3><ul>' +
                        "".join(f"<li>{html.escape(t)}</li>" for t in s.suggestions) + "</ul></div>")
        body.append("</section>")
    page = (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>ecomlake report</title>"
            f"<style>{STYLE}</style></head><body><h1>ecomlake report</h1>"
            f"<p>Lake: {html.escape(lake_root)}{' · as of ' + html.escape(as_of) if as_of else ''}"
            f"{' · generated ' + html.escape(generated_at) if generated_at else ''}</p><nav>{nav}</nav>"
            + "".join(body) + "</body></html>")
    return page, sections

"""The report's business rules: which number matters and what it suggests doing, as pure functions.

Inputs are the small pandas frames the data layer collects (per day, per category, per model,
the top-N rows) or plain numbers; outputs are suggestion texts. The rules that pick rows from a
table that grows with the lake (who gets a coupon, what to restock, which alert to hold) take
their columns as arguments, so the data layer applies them to Spark columns (`F.col(...)`) and a
test to pandas Series or numbers: one rule, no copy. Nothing here needs Spark, matplotlib or HTML.
"""
from __future__ import annotations

import pandas as pd

# The number each task is judged by in the model table, and the tasks where a lower one is better.
MAIN_METRIC = {"recommend": "ndcg@10", "propensity": "auc", "churn": "auc", "forecast": "category_wape",
               "segments": "silhouette", "elasticity": "mean_abs_error_vs_planted", "next_item": "recall@20",
               "movielens": "ndcg@10", "recommend_movielens": "ndcg@10", "next_item_movielens": "ndcg@10",
               "clv": "mae", "review_recommended": "auc", "review_rating": "macro_f1",
               "risk": "pr_auc", "pricing": "model_wape", "cold_start": "ndcg@10",
               "visual_similarity": "same_class_recall@10", "item_complements": "precision@1",
               "item_substitutes": "precision@1", "category_transitions": "precision@1"}
LOWER_IS_BETTER = {"forecast", "clv", "pricing", "elasticity"}


# ---- row predicates: Spark columns or pandas Series -------------------------------------------

def win_back(clv, probability_alive, top_decile_clv):
    """Who gets the win-back coupon: in the top 10% by CLV, and probably no longer active."""
    return (clv >= top_decile_clv) & (probability_alive < 0.5)


def top_churn_risk(decile):
    """Past buyers to target with a retention offer: the top churn-risk decile."""
    return decile == 10


def hold_for_review(reason_count):
    """Alerts whose orders are held for review: two or more reasons; the others get step-up checks."""
    return reason_count >= 2


def restock_first(lead_time_demand, recent_daily_mean, lead_time_days):
    """Products to restock first: demand over the lead time above 1.5x their recent sales pace."""
    return lead_time_demand > 1.5 * recent_daily_mean * lead_time_days


# ---- suggestions -------------------------------------------------------------------------------

def funnel_suggestions(daily: pd.DataFrame, by_category: pd.DataFrame) -> list[str]:
    """daily: event_date, conversion, one row a day in date order; by_category: category,
    carting_sessions, cart_to_purchase. The best weekday for campaigns, and the checkout to fix:
    the category with the lowest cart-to-purchase rate among those with at least the median carts."""
    weekday = daily.assign(weekday=[d.strftime("%A") for d in daily["event_date"]]).groupby("weekday")["conversion"].mean()
    first_week, last_week = daily["conversion"].head(7).mean(), daily["conversion"].tail(7).mean()
    out = [f"Conversion moved from {first_week:.1%} in the first week to {last_week:.1%} in the last; "
           f"{weekday.idxmax()} converts best ({weekday.max():.1%}) and {weekday.idxmin()} worst "
           f"({weekday.min():.1%}): schedule campaigns and e-mails for {weekday.idxmax()}."]
    busy = by_category[by_category["carting_sessions"] >= by_category["carting_sessions"].median()]
    if len(busy):
        worst = busy.sort_values("cart_to_purchase").iloc[0]
        out.append(f"'{worst['category']}' loses the most carts: only {worst['cart_to_purchase']:.1%} of sessions "
                   f"that cart buy. Check its checkout (delivery cost, stock, payment options) first.")
    return out


def retention_suggestions(users: pd.DataFrame) -> list[str]:
    """users: cohort x weeks since the first session -> active users (NaN: not observed yet).
    The share that comes back in week 1, over the cohorts that have had a full week 1."""
    if 1 not in users.columns:
        return []
    week1 = (users[1] / users[0])[users[0] > 0]
    full = week1.iloc[:-1] if len(week1) > 1 else week1  # the last cohort has no full week 1 yet
    return [f"On average {full.mean():.0%} of a cohort comes back the week after its first visit. "
            f"A welcome-back offer in the first 7 days targets the {1 - full.mean():.0%} who do not."]


def win_back_suggestion(customers: int, most_valuable: list) -> str:
    return (f"Send a win-back coupon to the {customers:,} high-value customers (top 10% CLV) whose "
            f"probability of still being active is below 50%; the most valuable are "
            f"{', '.join(str(c) for c in most_valuable)}.")


def churn_suggestion(customers: int, day: str) -> str:
    return (f"{customers:,} past buyers are in the top churn-risk decile as of {day} "
            f"(gold/churn_risk): target them with a retention offer before they lapse.")


def model_table(newest: pd.DataFrame) -> pd.DataFrame:
    """newest: task, model, metrics (dict), is_baseline, as_of_date: the newest run of each model.
    -> task, model, baseline, metric, value, trained as of: each task's main metric."""
    rows = []
    for _, r in newest.iterrows():
        metric = MAIN_METRIC.get(r["task"])
        value = (r["metrics"] or {}).get(metric) if metric else None
        if value is None and metric and metric.startswith("category_"):
            value = (r["metrics"] or {}).get(metric.replace("category_", ""))
        rows.append({"task": r["task"], "model": r["model"], "baseline": "yes" if r["is_baseline"] else "",
                     "metric": metric or "", "value": value, "trained as of": r["as_of_date"] or ""})
    return pd.DataFrame(rows)


def model_suggestions(table: pd.DataFrame) -> list[str]:
    """The best model of every task with two or more scored models; a baseline that wins stays."""
    out = []
    for task, group in table.dropna(subset=["value"]).groupby("task"):
        if len(group) < 2:
            continue
        best = group.sort_values("value", ascending=task in LOWER_IS_BETTER).iloc[0]
        if best["baseline"]:
            out.append(f"{task}: the baseline '{best['model']}' is still best on {best['metric']} "
                       f"({best['value']:.3f}); keep it in production until a model beats it.")
        else:
            out.append(f"{task}: '{best['model']}' is best on {best['metric']} ({best['value']:.3f}).")
    return out


def forecast_suggestions(history: pd.DataFrame, ahead: pd.DataFrame) -> list[str]:
    """history: series_key, event_date, units; ahead: series_key, forecast_date, forecast.
    The series whose forecast daily rate is highest against its last 14 days: stock it first."""
    recent = history.sort_values("event_date").groupby("series_key")["units"].apply(lambda u: u.tail(14).mean())
    growth = ahead.groupby("series_key")["forecast"].mean() / recent.clip(lower=1e-9)
    return [f"'{growth.idxmax()}' is forecast to sell {growth.max():.0%} of its last two weeks' daily rate over the "
            f"next {ahead['forecast_date'].nunique()} days: plan its stock and promotions first."]


def departure_suggestions(departing: pd.DataFrame, horizon_days: int) -> list[str]:
    """departing: series_key, days, recent_level, mean_forecast of the categories with forecast days
    whose backtest band leaves out the recent level. Each is named: check it before planning on it."""
    return [f"'{r.series_key}': the forecast ({r.mean_forecast:.1f} a day on average) leaves its recent level "
            f"({r.recent_level:.1f} a day) by more than the model's backtest errors explain on {r.days} of "
            f"{horizon_days} days: check it before planning stock on it."
            for r in departing.itertuples()]


def elasticity_suggestions(source: str, estimates: pd.DataFrame) -> list[str]:
    """estimates: segment, elasticity, ci_low, ci_high, feature_lift of one source. Discount the
    most elastic segment, raise the least elastic one's price, test the price of the segment whose
    interval is widest, give the feature ads to the one they lift most."""
    group = estimates.sort_values("elasticity")
    most, least = group.iloc[0], group.iloc[-1]
    widest = group.assign(width=group["ci_high"] - group["ci_low"]).sort_values("width").iloc[-1]
    out = [f"{source}: demand for '{most['segment']}' reacts most to price "
           f"({most['elasticity']:.2f}): discounts pay there; '{least['segment']}' reacts least "
           f"({least['elasticity']:.2f}): the candidate for a price increase.",
           f"{source}: test the price of '{widest['segment']}' next: its elasticity is the least "
           f"certain (95% CI {widest['ci_low']:.2f} to {widest['ci_high']:.2f})."]
    if group["feature_lift"].notna().any():
        best = group.sort_values("feature_lift").iloc[-1]
        out.append(f"{source}: a feature ad lifts '{best['segment']}' the most "
                   f"({best['feature_lift']:+.0%} units): give it the ad slots.")
    return out


def risk_suggestion(held: int, held_value: float, alerts: int) -> str:
    return (f"Hold the orders of the {held:,} alerted users with two or more reasons for review "
            f"({held_value:,.0f} in purchase value); send the other {alerts - held:,} to step-up verification.")


def review_suggestion(by_department: pd.DataFrame, against: list[str]) -> str:
    """by_department: department, not_recommended, mean_rating; against: the words that most
    predict a review that does not recommend. The department with the most unhappy reviews."""
    worst = by_department.sort_values("not_recommended", ascending=False, kind="stable").iloc[0]
    words = ", ".join(f"'{t}'" for t in against[:4])
    return (f"'{worst['department']}' has the most unhappy reviews ({worst['not_recommended']:.0%} do not "
            f"recommend, mean rating {worst['mean_rating']:.2f})" +
            (f"; read its reviews that use the words most predictive of not recommending "
             f"({words}) to find what to fix first." if words else "."))


def inventory_suggestions(restock: int, total_safety_stock: float, top: pd.DataFrame) -> list[str]:
    """top: product_id, reorder_point of the products with the highest reorder points."""
    first = top.sort_values("reorder_point", ascending=False, kind="stable").head(5)
    return [f"Restock first the {restock:,} products whose lead-time demand is over 1.5x their recent "
            f"sales pace; keep {total_safety_stock:,.0f} units of safety stock in total for the service level.",
            "Top of the list: " + ", ".join(str(p) for p in first["product_id"]) +
            " (reorder points " + ", ".join(str(int(r)) for r in first["reorder_point"]) + " units)."]


def monitoring_suggestions(alerts: pd.DataFrame, drift: pd.DataFrame, decay: pd.DataFrame, total: int) -> list[str]:
    """alerts: day, check, metric (the first ones); drift: model, feature, psi, alert; decay:
    scored_on, model, auc_now, auc_at_training, alert."""
    if not total:
        return ["Nothing tripped: every daily metric stayed within its trailing norm, and no model input drifted."]
    out = []
    daily = alerts[alerts["check"].isin(["quality", "rule", "schema"])]
    if len(daily):
        days = sorted(daily["day"].unique())
        metrics = ", ".join(sorted(daily["metric"].unique())[:5])
        out.append(f"Look at {len(days)} day(s) with data alerts first ({days[0]} .. {days[-1]}: {metrics}): "
                   "hold the reports and models that read those days until they are explained.")
    drifted = drift[drift["alert"]] if len(drift) else drift
    if len(drifted):
        worst = drifted.iloc[0]
        out.append(f"'{worst['feature']}' drifted most (PSI {worst['psi']:.2f}) for the {worst['model']} model: "
                   "retrain on a recent cutoff, or check whether the feature's meaning changed.")
    decayed = decay[decay["alert"]] if len(decay) else decay
    for _, row in decayed.iterrows():
        out.append(f"The {row['model']} model's AUC on {row['scored_on']} fell to {row['auc_now']:.3f} "
                   f"(test AUC {row['auc_at_training']:.3f}): retrain it.")
    return out


def regional_suggestions(totals: pd.DataFrame, alerts: pd.DataFrame, next_week: pd.DataFrame | None = None,
                         price_response: pd.DataFrame | None = None) -> list[str]:
    """totals: region, revenue, conversion (known regions first by revenue); alerts: region, day,
    conversion_7d, usual; next_week: region ('all regions': the total), from, to, forecast (units);
    price_response: region, price_response, standard_error."""
    known = totals[totals["region"] != "unknown"]
    out = []
    if len(known):
        top, share = known.iloc[0], known.iloc[0]["revenue"] / max(known["revenue"].sum(), 1e-9)
        best = known.sort_values("conversion", ascending=False, kind="stable").iloc[0]
        out.append(f"'{top['region']}' brings {share:.0%} of revenue: stock it first; '{best['region']}' converts "
                   f"best ({best['conversion']:.1%} of sessions buy).")
    if len(alerts):
        for region, group in alerts.groupby("region", sort=False):
            up = (group["conversion_7d"] > group["usual"]).all()
            out.append(f"'{region}' converted {'above' if up else 'below'} its usual rate in the weeks ending "
                       f"{group['day'].iloc[0]} .. {group['day'].iloc[-1]}: find out what ran there"
                       f"{' and repeat it' if up else ' and fix it'}.")
    if next_week is not None and len(next_week):
        regions = next_week[~next_week["region"].isin(["all regions", "unknown"])]
        total = next_week[next_week["region"] == "all regions"]
        if len(regions) and len(total) and total.iloc[0]["forecast"] > 0:
            top = regions.iloc[0]
            out.append(f"{top['from']} .. {top['to']}: '{top['region']}' should sell {top['forecast']:,.0f} units, "
                       f"{top['forecast'] / total.iloc[0]['forecast']:.0%} of the {total.iloc[0]['forecast']:,.0f} "
                       "forecast in all: place stock by these regional forecasts (they add up to the total).")
    if price_response is not None and len(price_response):
        # The regional fits are noisier than their standard errors say (README: unplanted regions
        # spread from 0.44 to 0.94): name only the strongest, and as a lead to test, not a finding.
        known = price_response[price_response["region"] != "unknown"].sort_values("price_response", ascending=False)
        if len(known) and known.iloc[0]["price_response"] - 3 * known.iloc[0]["standard_error"] > 1:
            top = known.iloc[0]
            out.append(f"'{top['region']}' seems to answer prices most strongly ({top['price_response']:.2f} times "
                       "the regions together): test a regional discount there before relying on it.")
    return out

import numpy as np
import pandas as pd
import pytest
from datetime import date, timedelta

from ecomlake import lake, tables
from ecomlake.models import pricing
from ecomlake.report import data, rules


def test_report_on_an_empty_lake_skips_every_section_with_a_note(spark, tmp_path):
    from ecomlake.report import SECTION_TITLES, build_report

    page, sections = build_report(spark, str(tmp_path / "empty-lake"))
    assert [s.title for s in sections] == SECTION_TITLES
    assert all(s.skipped for s in sections) and page.count("Skipped:") == len(SECTION_TITLES)
    assert "run `sessionize`" in page and "<img" not in page


# ---- the report's business rules, on hand-made frames -------------------------------------------

def test_funnel_suggests_the_best_weekday_and_the_busy_category_that_loses_most_carts():
    monday = date(2019, 11, 4)
    conversion = [0.02] * 6 + [0.0] + [0.04, 0.04, 0.04, 0.10, 0.04, 0.04, 0.02]   # two weeks, Monday first
    daily = pd.DataFrame({"event_date": [monday + timedelta(days=i) for i in range(14)], "conversion": conversion})
    # The carting median is 75: B (10%) and D (0%) convert worse than C (20%) but cart too little to count.
    by_category = pd.DataFrame({"category": ["A", "B", "C", "D"], "carting_sessions": [100, 50, 200, 10],
                                "cart_to_purchase": [0.30, 0.10, 0.20, 0.0]})
    # first week 0.12 / 7 = 1.7 %, last 0.32 / 7 = 4.6 %; Thursday (0.02 + 0.10) / 2, Sunday (0 + 0.02) / 2
    assert rules.funnel_suggestions(daily, by_category) == [
        "Conversion moved from 1.7% in the first week to 4.6% in the last; Thursday converts best (6.0%) and "
        "Sunday worst (1.0%): schedule campaigns and e-mails for Thursday.",
        "'C' loses the most carts: only 20.0% of sessions that cart buy. Check its checkout (delivery cost, "
        "stock, payment options) first."]


def test_retention_leaves_out_the_last_cohort_which_has_no_full_week_one():
    users = pd.DataFrame({0: [100, 50, 40], 1: [30, 20, 4], 2: [10, np.nan, np.nan]}, index=["w1", "w2", "w3"])
    # (30/100 + 20/50) / 2 = 35 % come back; w3's 4/40 is left out
    assert rules.retention_suggestions(users) == [
        "On average 35% of a cohort comes back the week after its first visit. "
        "A welcome-back offer in the first 7 days targets the 65% who do not."]
    assert rules.retention_suggestions(users[[0]]) == []   # one week observed: nothing to say yet


def test_the_win_back_coupon_goes_to_top_decile_customers_probably_gone():
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "clv": [100.0, 95.0, 90.0, 50.0],
                              "probability_alive": [0.3, 0.5, 0.1, 0.1]})
    chosen = customers[rules.win_back(customers["clv"], customers["probability_alive"], top_decile_clv=90.0)]
    assert chosen["customer_id"].tolist() == ["a", "c"]   # b is still likely active, d is not top 10 %
    assert rules.win_back_suggestion(1234, ["a", "c"]) == (
        "Send a win-back coupon to the 1,234 high-value customers (top 10% CLV) whose probability of still "
        "being active is below 50%; the most valuable are a, c.")
    assert rules.top_churn_risk(pd.Series([10, 9, 1, 10])).tolist() == [True, False, False, True]


def test_model_suggestions_keep_a_winning_baseline_and_know_which_metrics_fall():
    newest = pd.DataFrame([
        ("clv", "bg_nbd", {"mae": 1.0}, False, "2019-11-17"),          # alone in its task: no suggestion
        ("forecast", "lstm", {"category_wape": 0.40}, False, "2019-11-17"),
        ("forecast", "moving_average", {"wape": 0.35}, True, None),    # read as category_wape
        ("recommend", "als", {"ndcg@10": 0.30}, False, "2019-11-17"),
        ("recommend", "popularity", {"ndcg@10": 0.20}, True, "2019-11-17"),
        ("unknown", "x", {"auc": 0.9}, False, "2019-11-17"),
    ], columns=["task", "model", "metrics", "is_baseline", "as_of_date"])
    table = rules.model_table(newest)
    assert table.loc[2].to_dict() == {"task": "forecast", "model": "moving_average", "baseline": "yes",
                                      "metric": "category_wape", "value": 0.35, "trained as of": ""}
    assert table.loc[5, "metric"] == "" and pd.isna(table.loc[5, "value"])
    assert rules.model_suggestions(table) == [
        "forecast: the baseline 'moving_average' is still best on category_wape (0.350); keep it in production "
        "until a model beats it.",
        "recommend: 'als' is best on ndcg@10 (0.300)."]


def test_forecast_suggestion_compares_with_the_last_fourteen_days():
    days = [date(2019, 11, 1) + timedelta(days=i) for i in range(20)]
    history = pd.DataFrame({"series_key": ["x"] * 20 + ["y"] * 20, "event_date": days + days,
                            "units": [100.0] * 6 + [10.0] * 14 + [20.0] * 20}).iloc[::-1]   # any row order
    ahead = pd.DataFrame({"series_key": ["x"] * 7 + ["y"] * 7,
                          "forecast_date": [date(2019, 11, 21) + timedelta(days=i) for i in range(7)] * 2,
                          "forecast": [15.0] * 7 + [25.0] * 7})
    # x: 15 / 10 = 150 %, y: 25 / 20 = 125 % (over all 20 days x would be 15 / 37 = 41 %)
    assert rules.forecast_suggestions(history, ahead) == [
        "'x' is forecast to sell 150% of its last two weeks' daily rate over the next 7 days: "
        "plan its stock and promotions first."]


def test_each_category_leaving_its_recent_level_is_named_with_its_numbers():
    departing = pd.DataFrame({"series_key": ["phones", "tv"], "days": [9, 2], "recent_level": [80.0, 3.04],
                              "mean_forecast": [171.25, 0.5]})
    assert rules.departure_suggestions(departing, 14) == [
        "'phones': the forecast (171.2 a day on average) leaves its recent level (80.0 a day) by more than the "
        "model's backtest errors explain on 9 of 14 days: check it before planning stock on it.",
        "'tv': the forecast (0.5 a day on average) leaves its recent level (3.0 a day) by more than the "
        "model's backtest errors explain on 2 of 14 days: check it before planning stock on it."]
    assert rules.departure_suggestions(departing.iloc[:0], 14) == []


def test_elasticity_suggests_where_to_discount_raise_and_test_the_price():
    estimates = pd.DataFrame({"segment": ["b", "a", "c"], "elasticity": [-0.5, -2.5, -1.2],
                              "ci_low": [-0.7, -2.9, -2.2], "ci_high": [-0.3, -2.1, -0.2],
                              "feature_lift": [np.nan] * 3})
    assert rules.elasticity_suggestions("generated", estimates) == [
        "generated: demand for 'a' reacts most to price (-2.50): discounts pay there; 'b' reacts least (-0.50): "
        "the candidate for a price increase.",
        "generated: test the price of 'c' next: its elasticity is the least certain (95% CI -2.20 to -0.20)."]
    brands = estimates.assign(feature_lift=[0.5, 1.0, 0.2])
    assert rules.elasticity_suggestions("dominicks_oj", brands)[2] == (
        "dominicks_oj: a feature ad lifts 'a' the most (+100% units): give it the ad slots.")


def test_review_suggestion_names_the_unhappiest_department_and_the_words_against():
    departments = pd.DataFrame({"department": ["Tops", "Dresses", "Bottoms"], "not_recommended": [0.10, 0.25, 0.05],
                                "mean_rating": [4.2, 3.9, 4.5]})
    assert rules.review_suggestion(departments, ["small", "return", "cheap", "thin", "huge"]) == (
        "'Dresses' has the most unhappy reviews (25% do not recommend, mean rating 3.90); read its reviews that "
        "use the words most predictive of not recommending ('small', 'return', 'cheap', 'thin') to find what to "
        "fix first.")
    assert rules.review_suggestion(departments, []).endswith("mean rating 3.90).")


def test_restock_first_the_products_whose_demand_outruns_their_sales_pace():
    products = pd.DataFrame({"product_id": ["p1", "p2", "p3", "p4"], "lead_time_demand": [20.0, 15.0, 8.0, 5.0],
                             "recent_daily_mean": [2.0, 2.0, 0.0, 1.0], "lead_time_days": [5, 5, 5, 7]})
    # 20 > 1.5 * 2 * 5 = 15; 15 is not; 8 > 0 (no recent sales); 5 < 10.5
    chosen = products[rules.restock_first(products["lead_time_demand"], products["recent_daily_mean"],
                                          products["lead_time_days"])]
    assert chosen["product_id"].tolist() == ["p1", "p3"]
    top = pd.DataFrame({"product_id": [f"p{i}" for i in range(6)], "reorder_point": [5, 30, 12, 12, 40, 7]})
    assert rules.inventory_suggestions(2, 10.7, top) == [
        "Restock first the 2 products whose lead-time demand is over 1.5x their recent sales pace; keep 11 units "
        "of safety stock in total for the service level.",
        "Top of the list: p4, p1, p2, p3, p5 (reorder points 40, 30, 12, 12, 7 units)."]   # ties keep their order


# ---- the data layer and the page, on a hand-made lake -------------------------------------------

def test_risk_and_inventory_sections_from_a_small_lake(spark, tmp_path):
    from ecomlake.report import build_report

    root = str(tmp_path / "lake")
    old, new = date(2019, 12, 1), date(2019, 12, 8)
    lake.overwrite_table(spark.createDataFrame([
        (1, 11, 0.9, ["a", "b"], 100.0, new), (2, 12, 0.8, ["a"], 50.0, new), (3, 13, 0.7, ["b", "c", "d"], 30.25, new),
        (4, 14, 0.6, ["c"], 20.0, new), (1, 99, 0.9, ["a", "b"], 1000.0, old)],
        "alert_rank int, user_key long, risk_score double, reasons array<string>, purchase_value double, "
        "as_of_date date"), root, tables.GOLD_RISK_ALERTS)
    lake.overwrite_table(spark.createDataFrame([
        ("p1", 20.0, 2.0, 3.0, 23, 5, new), ("p2", 15.0, 2.0, 2.5, 18, 5, new), ("p3", 8.0, 0.0, 4.0, 12, 5, new),
        ("p4", 5.0, 1.0, 1.2, 6, 5, new), ("p9", 100.0, 1.0, 50.0, 150, 5, old)],
        "product_id string, lead_time_demand double, recent_daily_mean double, safety_stock double, "
        "reorder_point long, lead_time_days int, as_of_date date"), root, tables.GOLD_INVENTORY)

    risk = data.risk(spark, root, None)   # always the newest alerts
    assert (risk["as_of"], risk["alerts"], risk["top"]["user"].tolist()) == ("2019-12-08", 4, ["11", "12", "13", "14"])
    assert dict(zip(risk["reasons"]["reason"], risk["reasons"]["count"])) == {"a": 2, "b": 2, "c": 2, "d": 1}
    # users 11 and 13 have two reasons or more: 100 + 30.25 in purchase value
    assert risk["suggestions"] == ["Hold the orders of the 2 alerted users with two or more reasons for review "
                                   "(130 in purchase value); send the other 2 to step-up verification."]
    inventory = data.inventory(spark, root, None)
    assert (inventory["as_of"], inventory["lead_time_days"], inventory["top"]["product_id"].tolist()) == (
        "2019-12-08", 5, ["p1", "p2", "p3", "p4"])
    # p1 and p3 as in the rule's test; safety stock 3 + 2.5 + 4 + 1.2 = 10.7
    assert inventory["suggestions"] == [
        "Restock first the 2 products whose lead-time demand is over 1.5x their recent sales pace; keep 11 units "
        "of safety stock in total for the service level.",
        "Top of the list: p1, p2, p3, p4 (reorder points 23, 18, 12, 6 units)."]
    assert data.inventory(spark, root, "2019-12-01")["suggestions"][1] == "Top of the list: p9 (reorder points 150 units)."
    with pytest.raises(data.MissingTable, match="no rows for as_of_date 2019-12-02"):
        data.inventory(spark, root, "2019-12-02")

    page, sections = build_report(spark, root, "2019-12-01")
    built = {s.key: (s.images, s.suggestions) for s in sections if not s.skipped}
    assert built == {"risk": (1, risk["suggestions"]),
                     "inventory": (1, data.inventory(spark, root, "2019-12-01")["suggestions"])}
    assert page.count('src="data:image/png;base64,') == 2 and page.count("Skipped:") == 10
    assert "Highest reorder points as of 2019-12-01 (lead time 5 days)" in page
    assert "<li>Top of the list: p9 (reorder points 150 units).</li>" in page


def test_brand_regression_recovers_planted_elasticity_and_promotion_lift():
    rng = np.random.default_rng(3)
    n = 3000
    store = rng.integers(0, 30, n)
    log_price = rng.normal(-3.0, 0.15, n)
    log_other = rng.normal(-3.1, 0.1, n)
    deal = (rng.random(n) < 0.3).astype(float)
    feature = (rng.random(n) < 0.1).astype(float)
    store_effect = rng.normal(0, 0.5, 30)[store]
    log_units = 2 + store_effect - 2.5 * log_price + 1.2 * log_other + np.log(1.3) * deal + np.log(2.0) * feature \
        + rng.normal(0, 0.1, n)
    frame = pd.DataFrame({"store": store, "brand": 1, "brand_name": "planted", "log_units": log_units,
                          "log_price": log_price, "log_other_price": log_other, "deal": deal, "feature": feature})
    fit = pricing._fit_brand(frame).iloc[0]
    assert fit["elasticity"] == pytest.approx(-2.5, abs=0.05)
    assert fit["cross_elasticity"] == pytest.approx(1.2, abs=0.08)
    assert fit["deal_lift"] == pytest.approx(0.3, abs=0.02)
    assert fit["feature_lift"] == pytest.approx(1.0, abs=0.05)
    assert fit["stores"] == 30 and fit["rows"] == n


def test_inventory_suggestion_by_hand(spark):
    forecasts = spark.createDataFrame(
        [("p1", date(2019, 12, 1 + d), 2.0) for d in range(5)], "series_key string, forecast_date date, forecast double")
    history = spark.createDataFrame(
        [("p1", date(2019, 11, 27), 1.0), ("p1", date(2019, 11, 28), 3.0), ("p1", date(2019, 11, 29), 1.0),
         ("p1", date(2019, 11, 30), 3.0), ("p1", date(2019, 10, 1), 100.0)],   # before the 28-day window
        "series_key string, event_date date, units double")
    row = pricing.inventory_suggestions(forecasts, history, lead_time_days=4, service_level=0.95).first()
    # demand over 4 days = 8; std of (1, 3, 1, 3) = 1.1547; safety = 1.6449 * 1.1547 * 2 = 3.80
    assert (row.product_id, row.lead_time_demand, row.recent_daily_std) == ("p1", 8.0, 1.155)
    assert row.safety_stock == pytest.approx(3.80, abs=0.01)
    assert row.reorder_point == 12


def test_store_elasticities_explained_by_planted_demographics():
    """80 stores whose true elasticity is -2.5 + 0.5 x (standardised z1), estimated with sampling
    noise of known se: the weighted regression finds 0.5 per sd of z1, nothing for the unrelated
    z2, and (after removing the noise) about all of the true difference; with elasticities that
    have nothing to do with z1 and z2, leave-one-out explains nothing."""
    rng = np.random.default_rng(11)
    n = 80
    z1, z2 = rng.normal(10, 3, n), rng.normal(0, 1, n)
    se = rng.uniform(0.05, 0.15, n)
    true = -2.5 + 0.5 * (z1 - z1.mean()) / z1.std()
    stores = pd.DataFrame({"store": range(n), "elasticity": true + rng.normal(0, se), "elasticity_std_error": se,
                           "z1": z1, "z2": z2})
    out, metrics = pricing.explain_store_elasticities(stores, ["z1", "z2"])
    assert metrics["coefficients"]["z1"]["per_sd"] == pytest.approx(0.5, abs=0.03)
    assert abs(metrics["coefficients"]["z2"]["t"]) < 3 and metrics["coefficients"]["z1"]["t"] > 20
    assert metrics["mean_elasticity"] == pytest.approx(-2.5, abs=0.15)   # weights by se, not by z1
    # observed variance = 0.25 true + ~0.011 noise: reliability ~0.96
    assert metrics["reliability"] == pytest.approx(0.25 / (0.25 + np.mean(se ** 2)), abs=0.05)
    assert metrics["share_of_true_difference_explained"] == pytest.approx(1.0, abs=0.06)
    assert metrics["loo_r2"] > 0.9 and metrics["baseline_loo_r2"] < 0.0
    assert list(out.columns[-2:]) == ["fitted", "loo_fitted"] and len(out) == n

    unrelated = stores.assign(elasticity=-2.5 + rng.normal(0, 0.3, n) + rng.normal(0, se))
    _, none = pricing.explain_store_elasticities(unrelated, ["z1", "z2"])
    assert none["loo_r2"] < 0.05 and none["r2"] < 0.1


def test_fit_stores_recovers_each_stores_planted_deviation_whatever_its_brand_mix(spark):
    """Brand 1's elasticity is -2, brand 2's -4; store s's shoppers are dev[s] more or less sensitive
    for both. Store 3 sells almost only brand 2: pooling its weeks in one regression would call it
    the most sensitive store; against each brand's median store, its deviation is 0."""
    rng = np.random.default_rng(3)
    dev = {1: -0.5, 2: 0.5, 3: 0.0}
    rows = []
    for store, d in dev.items():
        for brand, base in ((1, -2.0), (2, -4.0)):
            for week in range(80 if (store, brand) != (3, 1) else 12):
                log_price = rng.normal(-3, 0.1)
                rows.append((store, brand, week, 5 + (base + d) * log_price + rng.normal(0, 0.02), log_price,
                             rng.normal(-3, 0.1), float(rng.random() < 0.2), 0.0))
    frame = spark.createDataFrame(pd.DataFrame(rows, columns=["store", "brand", "week", "log_units", *pricing.REGRESSORS]))
    got = {r.store: r for r in pricing.fit_stores(frame).collect()}
    assert {s: got[s].elasticity for s in dev} == pytest.approx(dev, abs=0.05)   # price noise sd 0.1: se ~0.01
    assert (got[3].brands, got[3].rows) == (2, 92) and got[1].elasticity_std_error < 0.05

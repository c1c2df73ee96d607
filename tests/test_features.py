"""Point-in-time features and labels on a tiny hand-built history (as of 2019-10-10 00:00 UTC)."""
from datetime import datetime

import pytest

from ecomlake import features

SCHEMA = ("event_time timestamp, event_date date, event_type string, product_id long, "
          "category_code string, price double, user_key long, user_session string")
AS_OF = "2019-10-10"


def ev(ts, event_type, product, category, price, user, session):
    t = datetime.fromisoformat(ts)
    return (t, t.date(), event_type, product, category, price, user, session)


HISTORY = [
    ev("2019-10-01 10:00:00", "view", 1, "electronics.phone", 100.0, 1, "s1"),
    ev("2019-10-01 10:05:00", "cart", 1, "electronics.phone", 100.0, 1, "s1"),
    ev("2019-10-01 10:10:00", "purchase", 1, "electronics.phone", 100.0, 1, "s1"),
    ev("2019-10-09 12:00:00", "view", 2, "apparel.shoes", 50.0, 1, "s2"),
    ev("2019-10-09 12:10:00", "cart", 2, "apparel.shoes", 50.0, 1, "s2"),    # abandoned cart
    ev("2019-09-15 09:00:00", "view", 1, "electronics.phone", 100.0, 2, "s3"),
    ev("2019-09-15 09:20:00", "purchase", 1, "electronics.phone", 100.0, 2, "s3"),
]
FUTURE = [
    ev("2019-10-10 00:00:00", "view", 2, "apparel.shoes", 50.0, 1, "s4"),     # exactly at the cutoff
    ev("2019-10-10 01:00:00", "purchase", 2, "apparel.shoes", 50.0, 1, "s4"),
    ev("2019-10-12 08:00:00", "view", 3, "kids.toys", 10.0, 3, "s5"),         # a new user
]


@pytest.fixture(scope="module")
def history(spark):
    return spark.createDataFrame(HISTORY, SCHEMA)


@pytest.fixture(scope="module")
def everything(spark):
    return spark.createDataFrame(HISTORY + FUTURE, SCHEMA)


def by_key(df, key):
    return {r[key]: r.asDict() for r in df.collect()}


def test_user_features(everything):
    users = by_key(features.user_features(everything, AS_OF), "user_key")
    assert set(users) == {1, 2}
    u1, u2 = users[1], users[2]
    assert (u1["events"], u1["purchases"], u1["frequency"], u1["monetary"]) == (5, 1, 1, 100.0)
    assert (u1["views_1d"], u1["carts_1d"], u1["purchases_1d"]) == (1, 1, 0)
    assert (u1["views_7d"], u1["carts_7d"], u1["views_30d"], u1["carts_30d"], u1["purchases_30d"]) == (1, 1, 2, 2, 1)
    assert u1["recency_days"] == pytest.approx(round(710 / 1440, 4))           # 11 h 50 min
    assert u1["days_since_first_seen"] == pytest.approx(round(8 + 840 / 1440, 4))
    assert u1["days_since_last_purchase"] == pytest.approx(round(8 + 830 / 1440, 4))
    assert (u1["sessions"], u1["mean_session_seconds"], u1["cart_abandonment_rate"]) == (2, 600.0, 0.5)
    assert list(u1["category_affinity"].items()) == [("apparel", 0.4), ("electronics", 0.6)]  # sorted
    assert (u1["top_category"], u1["top_category_share"]) == ("electronics", 0.6)
    assert (u1["avg_viewed_price"], u1["avg_purchased_price"]) == (75.0, 100.0)
    assert (u1["distinct_products_viewed"], u1["active_days_30d"]) == (2, 2)
    assert str(u1["as_of_date"]) == AS_OF
    assert (u2["views_7d"], u2["views_30d"], u2["purchases_30d"]) == (0, 1, 1)
    assert (u2["sessions"], u2["mean_session_seconds"], u2["cart_abandonment_rate"]) == (1, 1200.0, None)


def test_item_features(everything):
    items = by_key(features.item_features(everything, AS_OF), "product_id")
    assert set(items) == {1, 2}
    p1, p2 = items[1], items[2]
    assert (p1["views"], p1["carts"], p1["purchases"], p1["view_to_purchase_rate"]) == (2, 1, 2, 1.0)
    assert (p1["price_mean"], p1["price_std"], p1["views_last_7d"]) == (100.0, 0.0, 0)
    assert (p2["views"], p2["carts"], p2["purchases"], p2["cart_to_purchase_rate"]) == (1, 1, 0, 0.0)
    assert (p2["views_last_7d"], p2["views_prev_7d"], p2["popularity_trend"]) == (1, 0, 2.0)


def test_interactions_use_weights_and_decay(everything):
    got = by_key(features.interactions(everything, AS_OF, {"view": 1.0, "cart": 3.0, "purchase": 5.0},
                                       half_life_days=14.0).where("user_key = 1"), "product_id")
    age = {"10:00": 8 + 840 / 1440, "10:05": 8 + 835 / 1440, "10:10": 8 + 830 / 1440}
    p1 = 1 * 0.5 ** (age["10:00"] / 14) + 3 * 0.5 ** (age["10:05"] / 14) + 5 * 0.5 ** (age["10:10"] / 14)
    p2 = 1 * 0.5 ** ((720 / 1440) / 14) + 3 * 0.5 ** ((710 / 1440) / 14)
    assert got[1]["strength"] == pytest.approx(p1, abs=1e-6)
    assert got[2]["strength"] == pytest.approx(p2, abs=1e-6)
    assert (got[1]["purchased"], got[2]["purchased"]) == (True, False)


def test_daily_sales_fill_zero_days_and_lag(everything):
    daily = features.daily_sales(everything, AS_OF)
    rows = {(r.level, r.series_key, str(r.event_date)): r for r in daily.collect()}
    # History starts 2019-09-15 (first event); the last day is the day before the cutoff.
    assert len([k for k in rows if k[0] == "category"]) == 25
    assert len([k for k in rows if k[0] == "product"]) == 25
    assert ("category", "apparel.shoes", "2019-10-09") not in rows   # never sold before the cutoff
    oct1 = rows[("category", "electronics.phone", "2019-10-01")]
    assert (oct1.units, oct1.revenue, oct1.units_lag_14, oct1.units_lag_7) == (1, 100.0, 0, 0)
    sep29 = rows[("product", "1", "2019-09-29")]
    assert (sep29.units, sep29.units_lag_14, sep29.units_lag_21) == (0, 1, None)
    assert (sep29.day_of_week, sep29.is_weekend) == (1, True)          # a Sunday


def test_labels(everything):
    labels = by_key(features.user_labels(everything, AS_OF, horizon_days=14), "user_key")
    assert (labels[1]["purchased_next"], labels[1]["churned"]) == (True, False)
    assert (labels[2]["purchased_next"], labels[2]["churned"]) == (False, True)
    assert 3 not in labels                                             # first seen after the cutoff


# A session that straddles the cutoff: user 1 views at 23:50 the evening before, then carts and
# buys a few minutes after midnight in the same session (within the 30-minute gap).
LATE = [ev("2019-10-09 23:50:00", "view", 1, "electronics.phone", 100.0, 1, "s6")]
STRADDLING = [
    ev("2019-10-10 00:05:00", "cart", 1, "electronics.phone", 100.0, 1, "s6"),
    ev("2019-10-10 00:12:00", "purchase", 1, "electronics.phone", 100.0, 1, "s6"),
    ev("2019-10-10 00:14:00", "view", 2, "apparel.shoes", 50.0, 1, "s6"),
]


def test_no_leakage_events_after_the_cutoff_change_nothing(spark, history, everything):
    late_history = spark.createDataFrame(HISTORY + LATE, SCHEMA)
    late_everything = spark.createDataFrame(HISTORY + LATE + FUTURE + STRADDLING, SCHEMA)
    for build in (lambda e: features.user_features(e, AS_OF),
                  lambda e: features.item_features(e, AS_OF),
                  lambda e: features.interactions(e, AS_OF),
                  lambda e: features.daily_sales(e, AS_OF)):
        for before, after in ((build(history), build(everything)), (build(late_history), build(late_everything))):
            assert before.count() > 0
            assert sorted(map(str, before.collect())) == sorted(map(str, after.collect()))
    # The late half-session counts as it stands before the cutoff: one view, 10 minutes before it.
    u1 = features.user_features(late_everything, AS_OF).where("user_key = 1").head()
    assert (u1.sessions, u1.events, u1.purchases, u1.recency_days) == (3, 6, 1, round(10 / 1440, 4))
    assert u1.mean_session_seconds == (600 + 600 + 0) / 3 and u1.cart_abandonment_rate == 0.5

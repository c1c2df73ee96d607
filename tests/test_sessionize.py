from datetime import date, datetime

import pytest

from ecomlake import sessionize

EVENTS_SCHEMA = ("user_key long, event_time timestamp, event_date date, event_type string, "
                 "product_id long, category_code string, price double")


def ev(user, ts, event_type, product, category, price=1.0):
    t = datetime.fromisoformat(ts)
    return (user, t, t.date(), event_type, product, category, price)


# Deliberately out of order: sessions must not depend on input order.
EVENTS = [
    ev(1, "2019-10-01 11:15:00", "purchase", 3, "apparel.shoes", 20.0),
    ev(1, "2019-10-01 10:40:00", "view", 2, "electronics.tv"),        # gap exactly 30:00: same session
    ev(2, "2019-10-02 00:10:00", "purchase", 4, None, 5.0),            # across midnight: same session
    ev(1, "2019-10-01 10:00:00", "view", 1, "electronics.phone"),
    ev(1, "2019-10-01 11:10:01", "view", 3, "apparel.shoes"),          # gap 30:01: new session
    ev(2, "2019-10-01 23:50:00", "view", 4, None),
    ev(1, "2019-10-01 10:10:00", "cart", 1, "electronics.phone"),
]


@pytest.fixture
def sessionized(spark):
    return sessionize.assign_sessions(spark.createDataFrame(EVENTS, EVENTS_SCHEMA), gap_minutes=30)


def test_sessions_split_exactly_at_the_gap(sessionized):
    got = sorted((r.user_key, str(r.event_time), r.session_number) for r in sessionized.collect())
    assert got == [
        (1, "2019-10-01 10:00:00", 1), (1, "2019-10-01 10:10:00", 1), (1, "2019-10-01 10:40:00", 1),
        (1, "2019-10-01 11:10:01", 2), (1, "2019-10-01 11:15:00", 2),
        (2, "2019-10-01 23:50:00", 1), (2, "2019-10-02 00:10:00", 1),
    ]


def test_a_shorter_gap_splits_more(spark):
    df = sessionize.assign_sessions(spark.createDataFrame(EVENTS, EVENTS_SCHEMA), gap_minutes=20)
    assert sorted(r.session_number for r in df.where("user_key = 1").collect()) == [1, 1, 2, 3, 3]


def test_session_rows(sessionized):
    rows = sessionize.sessions(sessionized).orderBy("user_key", "session_number").collect()
    got = [(r.user_key, r.session_number, r.session_start, r.session_end, r.session_date, r.duration_seconds,
            r.events, r.views, r.carts, r.removes, r.purchases, r.distinct_products, r.revenue, r.converted,
            r.first_category) for r in rows]
    assert got == [
        (1, 1, datetime(2019, 10, 1, 10, 0), datetime(2019, 10, 1, 10, 40), date(2019, 10, 1), 2400,
         3, 2, 1, 0, 0, 2, 0.0, False, "electronics.phone"),
        (1, 2, datetime(2019, 10, 1, 11, 10, 1), datetime(2019, 10, 1, 11, 15), date(2019, 10, 1), 299,
         2, 1, 0, 0, 1, 1, 20.0, True, "apparel.shoes"),
        (2, 1, datetime(2019, 10, 1, 23, 50), datetime(2019, 10, 2, 0, 10), date(2019, 10, 1), 1200,
         2, 1, 0, 0, 1, 1, 5.0, True, None),
    ]
    assert len({r.session_id for r in rows}) == 3


def test_daily_funnel(sessionized):
    rows = sessionize.daily_funnel(sessionized).orderBy("event_date", "category").collect()
    got = [(r.event_date, r.category, r.views, r.carts, r.purchases, r.sessions_with_view, r.sessions_with_cart,
            r.sessions_with_purchase, r.revenue, r.view_to_cart_rate, r.cart_to_purchase_rate,
            r.view_to_purchase_rate) for r in rows]
    d1, d2 = date(2019, 10, 1), date(2019, 10, 2)
    assert got == [
        (d1, "apparel", 1, 0, 1, 1, 0, 1, 20.0, 0.0, None, 1.0),
        (d1, "electronics", 2, 1, 0, 1, 1, 0, 0.0, 1.0, 0.0, 0.0),
        (d1, "unknown", 1, 0, 0, 1, 0, 0, 0.0, 0.0, None, 0.0),
        (d2, "unknown", 0, 0, 1, 0, 0, 1, 5.0, None, None, None),
    ]


def test_missing_column_is_a_clear_error(spark):
    from ecomlake.errors import InputError

    df = spark.createDataFrame([(1, datetime(2019, 1, 1))], "user_key long, event_time timestamp")
    with pytest.raises(InputError, match=r"silver/events is missing column\(s\) event_type, product_id"):
        sessionize.assign_sessions(df, 30)

"""The models' pure functions on tiny hand-made data, against values computed by hand (or in closed
form in the test): classify, elasticity, forecast, segments, risk."""
import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.functions import array_to_vector
from pyspark.sql import Window
from pyspark.sql import functions as F

from ecomlake.models import classify, direct_forecast, elasticity, forecast, risk, segments

# ---- classify --------------------------------------------------------------------------------

UF_SCHEMA = ("user_key long, " + ", ".join(f"{c} double" for c in (*classify.LOG_SCALE, *classify.LINEAR))
             + ", category_affinity map<string,double>")


def user_row(user_key, affinity=None, **values):
    return (user_key, *[values.get(c) for c in (*classify.LOG_SCALE, *classify.LINEAR)], affinity)


def test_prepare_takes_log1p_fills_nulls_and_reads_the_affinities(spark):
    uf = spark.createDataFrame([
        user_row(1, {"electronics": 0.6, "apparel": 0.4}, events=9.0, monetary=-5.0, active_days_30d=3.0,
                 top_category_share=0.6),                                   # never bought
        user_row(2, None, events=0.0, days_since_last_purchase=2.0, cart_abandonment_rate=0.5),
    ], UF_SCHEMA)
    categories = ["electronics", "kids"]
    prepared = classify.prepare(uf, categories)
    assert prepared.columns == ["user_key", *classify.feature_columns(categories)]
    rows = {r.user_key: r for r in prepared.collect()}
    u1, u2 = rows[1], rows[2]
    assert u1.events == pytest.approx(math.log(10))                      # log1p(9)
    assert (u1.monetary, u1.purchases, u1.sessions) == (0.0, 0.0, 0.0)   # negative clipped, nulls are 0
    assert u1.days_since_last_purchase == pytest.approx(math.log(366))   # never bought: 365 days
    assert (u1.never_purchased, u1.active_days_30d, u1.top_category_share) == (1.0, 3.0, 0.6)  # linear: as is
    assert (u1.cart_abandonment_rate, u1.affinity_electronics, u1.affinity_kids) == (0.0, 0.6, 0.0)
    assert u2.days_since_last_purchase == pytest.approx(math.log(3))     # log1p(2)
    assert (u2.never_purchased, u2.cart_abandonment_rate, u2.affinity_electronics) == (0.0, 0.5, 0.0)


def test_holdout_is_a_deterministic_fifth_of_the_users_nested_in_larger_fractions(spark):
    users = spark.range(20000).withColumnRenamed("id", "user_key")
    split = users.select(
        "user_key",
        classify.holdout(F.col("user_key"), 7).alias("a"),
        classify.holdout(F.col("user_key"), 7, fraction=0.5).alias("half"),
        classify.holdout(F.col("user_key"), 8).alias("other_seed"))
    row = split.agg(*[F.avg(F.col(c).cast("double")).alias(c) for c in ("a", "half", "other_seed")],
                    F.avg((F.col("a") & F.col("other_seed")).cast("double")).alias("both"),
                    F.sum((F.col("a") & ~F.col("half")).cast("int")).alias("not_nested")).head()
    # Binomial(20000, 0.2): sd 0.0028, so 0.19..0.21 is 3.5 sd; two seeds are independent: 0.2^2.
    assert 0.19 < row["a"] < 0.21 and 0.19 < row["other_seed"] < 0.21 and 0.48 < row["half"] < 0.52
    assert 0.035 < row["both"] < 0.045 and row["not_nested"] == 0
    # The same users whatever the partitioning (a hash of the key, not a random draw).
    again = users.repartition(7).where(classify.holdout(F.col("user_key"), 7))
    assert sorted(r.user_key for r in again.collect()) == sorted(r.user_key for r in split.where("a").collect())


class _FixedProbability:
    """Stands for a fitted pipeline: its probability vector is [1 - p, p] for the column p."""

    def transform(self, df):
        return df.withColumn("probability", array_to_vector(F.array(1 - F.col("p"), F.col("p"))))


def test_predict_undoes_the_class_weight_shift_of_the_odds(spark):
    raw = spark.createDataFrame([(1, 0.5), (2, 0.75), (3, 0.0)], "user_key long, p double")
    got = {r.user_key: r.probability for r in classify.predict(_FixedProbability(), raw, math.log(1 / 3)).collect()}
    # odds 1 -> 1/3 -> p 0.25; odds 3 -> 1 -> p 0.5; p 0 is clipped to 1e-12 first: odds 1e-12 / 3.
    assert got[1] == pytest.approx(0.25, abs=1e-12)
    assert got[2] == pytest.approx(0.5, abs=1e-12)
    assert got[3] == pytest.approx(1e-12 / 3, rel=1e-6)


def test_fit_returns_the_prior_log_odds_and_refuses_one_class(spark):
    rows = [user_row(i, {"kids": i / 10}, events=float(i), recency_days=float(10 - i)) for i in range(1, 9)]
    prepared = classify.prepare(spark.createDataFrame(rows, UF_SCHEMA), ["kids"])
    labelled = prepared.withColumn("label", F.col("user_key") >= 7)          # 2 positives of 8
    model, shift = classify.fit(labelled, "label", ["kids"])
    assert shift == pytest.approx(math.log(2 / 6))
    assert set(classify.coefficients(model, ["kids"])) == set(classify.feature_columns(["kids"]))
    with pytest.raises(ValueError, match="one class only in the training set \\(0 positive of 8\\)"):
        classify.fit(prepared.withColumn("label", F.lit(False)), "label", ["kids"])


def test_top_categories_by_users_ties_by_name(spark):
    uf = spark.createDataFrame([(c,) for c in "aabbcccd"], "top_category string")
    assert classify.top_categories(uf, n=3) == ["c", "a", "b"]
    assert classify.top_categories(uf, n=2) == ["c", "a"]


# ---- elasticity ------------------------------------------------------------------------------

def test_fit_category_recovers_an_exact_log_log_slope():
    x = np.log([5.0, 10.0, 20.0, 40.0])
    views = np.array([100, 200, 50, 400])
    pdf = pd.DataFrame({"category_code": "c", "log_price": x, "views": views,
                        "purchases": views * np.exp(0.3 - 1.7 * x)})
    out = elasticity._fit_category(pdf).iloc[0]
    assert out["elasticity"] == pytest.approx(-1.7, abs=1e-6)
    assert out["std_error"] < 1e-6 and out["ci_low"] == pytest.approx(-1.7, abs=1e-6)
    assert (out["bins"], out["views"]) == (4, 750)


def test_fit_category_is_weighted_least_squares_with_a_t_interval():
    x = np.log([5.0, 10.0, 20.0, 40.0])
    w = np.array([100.0, 200.0, 50.0, 400.0])
    y = 0.3 - 1.7 * x + np.array([0.1, -0.2, 0.05, 0.1])
    pdf = pd.DataFrame({"category_code": "c", "log_price": x, "views": w.astype(int), "purchases": w * np.exp(y)})
    out = elasticity._fit_category(pdf).iloc[0]
    # Closed form: slope = sum w (x - xw)(y - yw) / sum w (x - xw)^2 (weighted means xw, yw);
    # se^2 = [sum w r^2 / (n - 2)] / sum w (x - xw)^2 (the same for any scaling of w); t(0.975, 2 df).
    xw, yw = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    sxx = (w * (x - xw) ** 2).sum()
    slope = (w * (x - xw) * (y - yw)).sum() / sxx
    residuals = y - (yw + slope * (x - xw))
    se = math.sqrt((w * residuals ** 2).sum() / 2 / sxx)
    assert out["elasticity"] == pytest.approx(slope, abs=1e-9)
    assert out["std_error"] == pytest.approx(se, rel=1e-9)
    assert out["ci_low"] == pytest.approx(slope - 4.302653 * se, rel=1e-6)
    assert out["ci_high"] == pytest.approx(slope + 4.302653 * se, rel=1e-6)


def test_fit_category_needs_three_bins_and_two_prices():
    two = pd.DataFrame({"category_code": "c", "log_price": [1.0, 2.0], "views": [50, 60], "purchases": [5, 3]})
    flat = pd.DataFrame({"category_code": "c", "log_price": [1.0] * 3, "views": [50, 60, 70], "purchases": [5, 3, 2]})
    for pdf in (two, flat):
        out = elasticity._fit_category(pdf).iloc[0]
        assert math.isnan(out["elasticity"]) and out["bins"] == len(pdf) and out["purchases"] == pdf["purchases"].sum()


def test_price_bins_pool_weekly_cells_by_log_price(spark):
    week1, week2 = datetime(2019, 10, 8, 12), datetime(2019, 10, 15, 12)   # a Tuesday each: two weeks

    def events(n, event_type, product, price, when=week1, category="cat.a"):
        return [(event_type, category, product, when, price)] * n

    rows = (events(20, "view", 1, 9.0) + events(20, "view", 1, 11.0)      # cell price: the mean view price 10
            + events(2, "purchase", 1, 12.0)                              # a purchase price is not a view price
            + events(10, "view", 2, 10.2)                                 # log 2.322: the same bin (23) as 10
            + events(30, "view", 1, 11.0, week2) + events(1, "purchase", 1, 11.0, week2)  # next week: bin 24
            + events(5, "cart", 1, 11.0, week2)                           # neither a view nor a purchase
            + events(20, "view", 3, 30.0) + events(1, "purchase", 3, 30.0)  # 20 views < 30: dropped
            + events(35, "view", 4, 100.0)                                # no purchase: dropped
            + events(40, "view", 6, 0.0) + events(1, "purchase", 6, 0.0)  # price 0: no log, dropped
            + events(30, "view", 5, 5.0, category=None) + events(1, "purchase", 5, 5.0, category=None))
    df = spark.createDataFrame(rows, "event_type string, category_code string, product_id long, "
                                     "event_time timestamp, price double")
    got = {(r.category_code, r.bin): (r.views, r.purchases, r.log_price)
           for r in elasticity.price_bins(df, min_views=30).collect()}
    assert set(got) == {("cat.a", 23.0), ("cat.a", 24.0), ("unknown", 16.0)}
    assert got[("cat.a", 23.0)][:2] == (50, 2)
    assert got[("cat.a", 23.0)][2] == pytest.approx((40 * math.log(10) + 10 * math.log(10.2)) / 50)
    assert got[("cat.a", 24.0)] == (30, 1, pytest.approx(math.log(11)))
    assert got[("unknown", 16.0)] == (30, 1, pytest.approx(math.log(5)))


def test_elasticities_per_category_recover_the_planted_slopes(spark):
    # log(purchases / views) = e * log_price exactly: log_price = log(purchases / views) / e.
    rows = []
    for category, e in (("a", -1.2), ("b", -2.5)):
        for views in (100, 200, 400, 1000):
            rows.append((category, views, 10, math.log(10 / views) / e))
    bins = spark.createDataFrame(rows, "category_code string, views long, purchases long, log_price double")
    got = {r.category_code: r for r in elasticity.elasticities(bins).collect()}
    assert got["a"].elasticity == pytest.approx(-1.2, abs=1e-6)
    assert got["b"].elasticity == pytest.approx(-2.5, abs=1e-6)
    assert (got["b"].bins, got["b"].views, got["b"].purchases) == (4, 1700, 40)


def test_elasticities_by_region_and_their_response_relative_to_all(spark):
    """The same exact slopes split by region: north answers -1.2 in a and -2.5 in b, east 1.5 times
    as strongly (-1.8, -3.75), each fitted on its own. relative_to_pooled by hand on noisy fits: region r
    has -2 (se 0.5) in x and -3 (se 1) in y against pooled -1 and -2: ratios 2 and 1.5, weights
    (1 / 0.5)^2 = 4 and (2 / 1)^2 = 4, so 1.75 with standard error 1 / sqrt(8)."""
    rows = []
    for region, factor in (("north", 1.0), ("east", 1.5)):
        for category, e in (("a", -1.2), ("b", -2.5)):
            for views in (100, 200, 400, 1000):
                rows.append((region, category, views, 10, math.log(10 / views) / (e * factor)))
    bins = spark.createDataFrame(rows, "region string, category_code string, views long, purchases long, "
                                       "log_price double")
    fits = elasticity.elasticities(bins, by=("region",))
    got = {(r.region, r.category_code): r.elasticity for r in fits.collect()}
    assert got == pytest.approx({("north", "a"): -1.2, ("north", "b"): -2.5, ("east", "a"): -1.8,
                                 ("east", "b"): -3.75})

    noisy = spark.createDataFrame([("r", "x", -2.0, 0.5), ("r", "y", -3.0, 1.0), ("s", "x", -1.0, 0.25),
                                   ("s", "z", float("nan"), 1.0)],
                                  "region string, category_code string, elasticity double, std_error double")
    pooled = spark.createDataFrame([("x", -1.0), ("y", -2.0), ("z", -1.0)], "category_code string, elasticity double")
    out = {r.region: r for r in elasticity.relative_to_pooled(noisy, pooled, "region").collect()}
    assert (out["r"].ratio, out["r"].ratio_std_error, out["r"].categories) == pytest.approx((1.75, 8 ** -0.5, 2))
    assert (out["s"].ratio, out["s"].categories) == (1.0, 1)


# ---- forecast --------------------------------------------------------------------------------

DAY1 = date(2019, 10, 1)          # day d of the history is DAY1 + d - 1
ORIGIN = "2019-11-05"             # day 36


def day(d):
    return DAY1 + timedelta(days=d - 1)


@pytest.fixture(scope="module")
def daily(spark):
    rows = [("category", "s", day(d), d) for d in range(1, 36)]                # units = day number
    rows += [("category", "s", day(d), 1000) for d in range(36, 41)]           # after the origin: unseen
    rows += [("category", "z", day(d), 0) for d in range(1, 36)]               # never sold
    rows += [("category", "short", day(d), 5) for d in range(33, 36)]          # three days of history
    return spark.createDataFrame(rows, "level string, series_key string, event_date date, units long")


def test_forecast_frame_lags_and_seasonal_naive_by_hand(daily):
    frame = forecast.forecast_frame(daily, ORIGIN, 14)
    assert "units" not in frame.columns
    rows = {(r.series_key, r.event_date): r for r in frame.collect()}
    assert len(rows) == 3 * 14
    for k in range(14):                                   # day 36 + k
        r = rows[("s", day(36 + k))]
        assert r.units_lag_7 == (29 + k if k < 7 else None)           # the days after the origin are unknown
        assert (r.units_lag_14, r.units_lag_21, r.units_lag_28) == (22 + k, 15 + k, 8 + k)
        assert r.units_mean_lag_14_20 == pytest.approx(19 + k)        # mean of days 16+k .. 22+k
        assert r.seasonal_naive == (29 + k if k < 7 else 22 + k)      # last week, then the week before
        assert r.series_scale == pytest.approx(18.0)                  # mean of 1..35
        assert r.day_of_week == (day(36 + k).isoweekday() % 7) + 1    # 1 = Sunday
        zero = rows[("z", day(36 + k))]
        assert (zero.seasonal_naive, zero.series_scale) == (0, 0.01)  # the scale is floored at 0.01
    short = rows[("short", day(36))]
    assert (short.units_lag_7, short.seasonal_naive, short.series_scale) == (None, None, 5.0)
    for horizon in (0, 15):
        with pytest.raises(ValueError, match="forecast horizon must be 1..14 days"):
            forecast.forecast_frame(daily, ORIGIN, horizon)


class _Prediction:
    """Stands for a fitted pipeline: prediction = sign * units_lag_14_scaled."""

    def __init__(self, sign):
        self.sign = sign

    def transform(self, df):
        return df.withColumn("prediction", self.sign * F.col("units_lag_14_scaled"))


def test_predict_scales_back_clips_at_zero_and_fills_the_naive(daily):
    frame = forecast.forecast_frame(daily, ORIGIN, 14)
    up = {(r.series_key, r.event_date): r for r in forecast.predict(_Prediction(1.0), frame).collect()}
    assert up[("s", day(40))].forecast == pytest.approx(26.0)           # lag 14 of day 40 = day 26
    assert up[("s", day(40))].seasonal_naive == 33.0                     # day 33
    assert (up[("short", day(36))].forecast, up[("short", day(36))].seasonal_naive) == (0.0, 0.0)  # null lags
    down = forecast.predict(_Prediction(-1.0), frame).agg(F.min("forecast"), F.max("forecast")).head()
    assert tuple(down) == (0.0, 0.0)                                     # negative forecasts become 0


def test_training_rows_need_every_lag_and_scale_by_the_history_before_the_origin(spark):
    daily = spark.createDataFrame(
        [("category", "s", day(1), 2, None), ("category", "s", day(2), 4, None), ("category", "s", day(3), 6, 1),
         ("category", "s", day(4), 100, 1), ("category", "z", day(3), 0, 0)],
        "level string, series_key string, event_date date, units long, units_lag_28 long")
    got = {r.series_key: r for r in forecast.training_rows(daily, day(4).isoformat()).collect()}
    assert (got["s"].event_date, got["s"].series_scale, got["s"].target_scaled) == (day(3), 4.0, 1.5)
    assert (got["z"].series_scale, got["z"].target_scaled) == (0.01, 0.0)


def test_fit_and_predict_a_weekly_pattern_at_two_scales(spark):
    # Two series that repeat the same week (one 100x the other): every lag equals the value itself.
    pattern = [3, 5, 8, 13, 8, 5, 2]
    rows = [("category", key, day(d), size * pattern[d % 7])
            for key, size in (("small", 1), ("large", 100)) for d in range(1, 71)]
    history = spark.createDataFrame(rows, "level string, series_key string, event_date date, units long")
    series = Window.partitionBy("series_key").orderBy("event_date")
    for lag in (14, 21, 28):
        history = history.withColumn(f"units_lag_{lag}", F.lag("units", lag).over(series))
    history = (history.withColumn("units_mean_lag_14_20", F.avg("units").over(series.rowsBetween(-20, -14)))
               .withColumn("day_of_week", F.dayofweek("event_date")))
    origin = day(57).isoformat()
    model = forecast.fit(forecast.training_rows(history, origin))
    got = forecast.predict(model, forecast.forecast_frame(history, origin, 14)).collect()
    assert len(got) == 28
    truth = {(key, day(d)): size * pattern[d % 7] for key, size in (("small", 1), ("large", 100)) for d in range(57, 71)}
    assert all(r.seasonal_naive == truth[(r.series_key, r.event_date)] for r in got)
    # Measured: a relative error of at most 0.7 % (ridge 0.01 shrinks the coefficients a little).
    assert max(abs(r.forecast / truth[(r.series_key, r.event_date)] - 1) for r in got) < 0.03


# ---- direct multi-horizon forecast -----------------------------------------------------------


def ramp(spark, days=21):
    """One category series selling i units on day i (2019-10-01 = day 0)."""
    return spark.createDataFrame([("category", "c", date(2019, 10, 1) + timedelta(days=i), i) for i in range(days)],
                                 "level string, series_key string, event_date date, units long")


def test_direct_forecast_rows_levels_and_same_weekday_by_hand(spark):
    rows = {r.horizon: r for r in direct_forecast.forecast_rows(ramp(spark), "2019-10-22", 14).collect()}
    assert sorted(rows) == list(range(1, 15))
    first = rows[1]
    # History Oct 1..21 = 0..20: last 7 days 14..20 (mean 17: the scale), all 21 days (mean 10), last day 20.
    assert (first.target_date, first.scale, first.mean_7_scaled) == (date(2019, 10, 22), 17.0, 1.0)
    assert (first.mean_28_scaled, first.last_day_scaled) == (pytest.approx(10 / 17), pytest.approx(20 / 17))
    assert (first.trend, first.is_product) == (pytest.approx(17.1 / 10.1), 0.0)
    # Same weekday of the last observed week: Oct 22 -> Oct 15 (14); Oct 28 -> Oct 21 (20); Oct 29 -> Oct 15.
    assert (rows[1].seasonal_naive, rows[7].seasonal_naive, rows[8].seasonal_naive, rows[14].seasonal_naive) == (14, 20, 14, 20)
    assert rows[3].target_day_of_week == 5.0                         # Thursday Oct 24 (Sunday = 1)
    assert rows[8].same_weekday_scaled == pytest.approx(14 / 17) and rows[8].horizon == 8


def test_direct_training_rows_have_observed_targets_only(spark):
    train = direct_forecast.training_rows(ramp(spark), "2019-10-22", 3)
    # Origins with a week of history: Oct 8 .. Oct 21, each with the horizons whose target day
    # (origin + horizon - 1) is observed, i.e. before Oct 22: 3 horizons up to Oct 19, then 2, then 1.
    expected = [(f"2019-10-{d:02d}", h) for d in range(8, 22) for h in (1, 2, 3) if d + h - 1 < 22]
    assert len(expected) == 12 * 3 + 2 + 1
    assert sorted((str(r.origin_date), r.horizon) for r in train.collect()) == expected
    row = train.where("origin_date = '2019-10-15' AND horizon = 2").head()
    # History Oct 1..14 = 0..13: the last week 7..13 has mean 10 (the scale); the target Oct 16 sold 15.
    assert (row.target_date, row.actual, row.scale, row.target_scaled) == (date(2019, 10, 16), 15.0, 10.0, 1.5)
    assert direct_forecast.backtest_origins("2019-11-17", 14, 3) == ["2019-11-03", "2019-10-27", "2019-10-20"]


def test_direct_forecast_learns_a_weekly_pattern_at_two_scales(spark):
    pattern = [3, 5, 8, 13, 8, 5, 2]
    rows = [(level, key, day(d), size * pattern[d % 7])
            for level, key, size in (("category", "small", 1), ("product", "large", 100)) for d in range(1, 71)]
    daily = spark.createDataFrame(rows, "level string, series_key string, event_date date, units long")
    origin = day(57).isoformat()
    models = direct_forecast.fit(direct_forecast.training_rows(daily, origin, 14), max_iter=20)
    assert sorted(models) == ["category", "product"]     # one model per level
    got = direct_forecast.predict(models, direct_forecast.forecast_rows(daily, origin, 14)).collect()
    truth = {(key, day(d)): size * pattern[d % 7] for key, size in (("small", 1), ("large", 100)) for d in range(57, 71)}
    assert len(got) == 28 and all(r.seasonal_naive == truth[(r.series_key, r.event_date)] for r in got)
    assert max(abs(r.forecast / truth[(r.series_key, r.event_date)] - 1) for r in got) < 0.05


def test_error_bands_and_the_departure_flag_by_hand(spark):
    backtest = spark.createDataFrame(
        [("category", 1 + i % 7, 2.0, 10.0 + 2 * i, 10.0) for i in range(20)]    # scaled errors 0..19, week 1
        + [("product", 8, 1.0, 2.0, 1.0)],                                       # one scaled error of 1, week 2
        "level string, horizon int, scale double, actual double, gbt_direct double")
    bands = direct_forecast.error_bands(backtest, forecast="gbt_direct")
    # 5 % of 20 errors: the smallest (0); 95 %: the 19th (18).
    assert bands == [{"level": "category", "horizon_week": 1, "low": 0.0, "high": 18.0, "rows": 20},
                     {"level": "product", "horizon_week": 2, "low": 1.0, "high": 1.0, "rows": 1}]
    predicted = spark.createDataFrame(
        [("category", "inside", 3, 10.0, 12.0, 2.0), ("category", "below", 3, 10.0, 9.0, 2.0),
         ("product", "above", 9, 0.5, 0.2, 1.0), ("product", "no_band", 1, 0.5, 0.2, 1.0)],
        "level string, series_key string, horizon int, forecast double, recent_level double, scale double")
    got = {r.series_key: (r.forecast_low, r.forecast_high, r.departs_recent_level)
           for r in direct_forecast.with_band(predicted, bands).collect()}
    # band = forecast + scale x [low, high]: 10 + 2 x [0, 18] = [10, 46]; 0.5 + 1 x [1, 1] = [1.5, 1.5].
    assert got == {"inside": (10.0, 46.0, False), "below": (10.0, 46.0, True), "above": (1.5, 1.5, True),
                   "no_band": (None, None, None)}


# ---- segments --------------------------------------------------------------------------------

def test_buyers_keep_purchasers_with_log_rfm(spark):
    uf = spark.createDataFrame([(1, 2.0, 0, 0.0), (2, 3.0, 2, 99.0)],
                               "user_key long, recency_days double, frequency long, monetary double")
    [row] = segments.buyers(uf).collect()
    assert row.user_key == 2
    assert (row.log_recency_days, row.log_frequency, row.log_monetary) == pytest.approx(
        (math.log(4), math.log(3), math.log(100)))


def test_quintile_edges_of_one_to_a_hundred(spark):
    df = spark.createDataFrame([(float(d), d, 10.0 * d) for d in range(1, 101)],
                               "recency_days double, frequency long, monetary double")
    assert segments.quintile_edges(df) == {"recency_days": [20.0, 40.0, 60.0, 80.0],
                                           "frequency": [20.0, 40.0, 60.0, 80.0],
                                           "monetary": [200.0, 400.0, 600.0, 800.0]}


def test_rfm_scores_by_hand(spark):
    edges = {"recency_days": [1, 2, 3, 4], "frequency": [1, 2, 3, 4], "monetary": [10, 20, 30, 40]}
    df = spark.createDataFrame([(1, 0.5, 5, 45.0), (2, 2.0, 1, 20.0), (3, 9.0, 3, 30.5)],
                               "user_key long, recency_days double, frequency long, monetary double")
    got = {r.user_key: (r.r_score, r.f_score, r.m_score, r.rfm_cell) for r in segments.rfm_scores(df, edges).collect()}
    # recency: fewer days is better (5 = above no edge); a value equal to an edge is not above it.
    assert got == {1: (5, 5, 5, "555"), 2: (4, 1, 2, "412"), 3: (1, 3, 4, "134")}


def test_profiles_and_names(spark):
    assigned = spark.createDataFrame(
        [(0, 1.0, 4, 100.0, 5, 4, 4), (0, 2.0, 3, 50.0, 4, 3, 3),
         (1, 30.0, 1, 10.0, 1, 1, 2), (1, 20.0, 1, 12.0, 2, 1, 1), (1, 25.0, 2, 20.0, 3, 3, 1)],
        "segment int, recency_days double, frequency long, monetary double, r_score int, f_score int, m_score int")
    assert segments.profiles(assigned) == [
        {"segment": 0, "customers": 2, "mean_recency_days": 1.5, "mean_frequency": 3.5, "mean_monetary": 75.0,
         "mean_r_score": 4.5, "mean_f_score": 3.5, "mean_m_score": 3.5, "name": "recent frequent high-spend"},
        {"segment": 1, "customers": 3, "mean_recency_days": 25.0, "mean_frequency": 1.33, "mean_monetary": 14.0,
         "mean_r_score": 2.0, "mean_f_score": 1.67, "mean_m_score": 1.33, "name": "lapsed one-time low-spend"},
    ]
    assert segments.segment_name(3.49, 2.5, 2.49) == "lapsing occasional low-spend"
    assert segments.segment_name(2.49, 3.5, 2.5) == "lapsed frequent mid-spend"


def test_kmeans_separates_two_obvious_groups(spark):
    uf = spark.createDataFrame(
        [(1, 1.0, 10, 1000.0), (2, 2.0, 12, 1200.0), (3, 1.5, 9, 900.0),
         (4, 50.0, 1, 10.0), (5, 60.0, 1, 12.0), (6, 55.0, 2, 8.0)],
        "user_key long, recency_days double, frequency long, monetary double")
    buyers = segments.buyers(uf)
    assigned = segments.fit(buyers, 2, seed=1).transform(buyers)
    groups = {}
    for r in assigned.collect():
        groups.setdefault(r.segment, set()).add(r.user_key)
    assert sorted(groups.values(), key=min) == [{1, 2, 3}, {4, 5, 6}]


# ---- risk ------------------------------------------------------------------------------------

SESSION_SCHEMA = ("user_key long, session_id long, session_start timestamp, events long, views long, carts long, "
                  "purchases long, revenue double, duration_seconds long")


def test_session_signals_by_hand(spark):
    t = datetime(2019, 10, 1)
    sessions = spark.createDataFrame([
        (1, 1, t, 11, 11, 2, 3, 30.0, 20),     # 20 s / 10 gaps = 2.0 s per event: a burst
        (1, 2, t, 10, 10, 0, 0, 0.0, 30),      # 3.33 s per event: not a burst
        (1, 3, t, 2, 1, 3, 1, 5.0, 100),       # under 3 events: no rate; 2 carts abandoned
        (1, 4, t, 10, 10, 0, 0, 0.0, 27),      # exactly 3.0 s per event: a burst
    ], SESSION_SCHEMA)
    got = {r.session_id: (r.seconds_per_event, r.is_burst, r.abandoned_carts)
           for r in risk.session_signals(sessions).collect()}
    assert got == {1: (2.0, True, 0), 2: (pytest.approx(30 / 9), False, 0), 3: (None, False, 2), 4: (3.0, True, 0)}


def test_user_signals_by_hand(spark):
    as_of = datetime(2019, 10, 10)
    sessions = [
        (1, 1, datetime(2019, 10, 5), 11, 5, 2, 3, 300.0, 20),     # a burst, all carts bought
        (1, 2, datetime(2019, 10, 1), 4, 4, 2, 0, 0.0, 60),        # 20 s per event, 2 carts abandoned
        (2, 3, datetime(2019, 9, 1), 2, 2, 0, 1, 50.0, 5),
        (3, 4, datetime(2019, 10, 9, 12), 3, 3, 1, 0, 0.0, 3),     # 1.5 s per event
    ]
    day5, sept = datetime(2019, 10, 5), datetime(2019, 9, 1)
    purchases = [(1, 7, 100.0, day5)] * 3 + [(2, 7, 50.0, sept)]   # category 7's median price: 100
    # 40 old buyers of 10.0 each: with 42 buyers the 95th percentile of purchase value is 10.0.
    sessions += [(100 + i, 100 + i, datetime(2019, 8, 1), 3, 2, 0, 1, 10.0, 600) for i in range(40)]
    purchases += [(100 + i, 8, 10.0, datetime(2019, 8, 1)) for i in range(40)]
    events = spark.createDataFrame([(u, "purchase", c, p, t) for u, c, p, t in purchases]
                                   + [(3, "view", 7, 1.0, datetime(2019, 10, 9, 12))],
                                   "user_key long, event_type string, category_id long, price double, "
                                   "event_time timestamp")
    signals = risk.user_signals(spark.createDataFrame(sessions, SESSION_SCHEMA), events, F.lit(as_of))
    got = {r.user_key: r.asDict() for r in signals.collect()}
    assert set(got[1]) == {"user_key", *risk.SIGNALS}
    expected = {
        1: dict(sessions=2, events=15, purchases=3, purchase_value=300.0, burst_session_share=0.5,
                fastest_seconds_per_event=2.0, purchase_view_ratio=3 / 9, cart_abandon_ratio=0.5, price_ratio=1.0,
                account_age_days=9.0, new_high_value=1.0,          # 9 days old, 300 > 10
                mean_session_views=4.5, categories_viewed=0.0, surprise_purchases=0.0),
        2: dict(sessions=1, events=2, purchases=1, purchase_value=50.0, burst_session_share=0.0,
                fastest_seconds_per_event=9999.0, purchase_view_ratio=0.5, cart_abandon_ratio=0.0, price_ratio=0.5,
                account_age_days=39.0, new_high_value=0.0),        # 50 > 10 but 39 days old
        3: dict(sessions=1, events=3, purchases=0, purchase_value=0.0, burst_session_share=0.0,
                fastest_seconds_per_event=1.5, purchase_view_ratio=0.0, cart_abandon_ratio=1.0, price_ratio=0.0,
                account_age_days=0.5, new_high_value=0.0, mean_session_views=3.0, categories_viewed=1.0),
    }
    for user, values in expected.items():
        assert {k: got[user][k] for k in values} == pytest.approx(values), user
    assert got[100]["new_high_value"] == 0.0 and got[100]["account_age_days"] == 70.0


def test_surprise_purchases_by_hand(spark):
    """An old account (>= 14 days) buying in a category it first touched < 24 h before."""
    d = lambda day, hour=0: datetime(2019, 9, day, hour)  # noqa: E731
    events = spark.createDataFrame([
        (10, "view", 1, 20.0, d(1)),
        (10, "purchase", 1, 20.0, d(20)),         # a category seen 19 days before: no surprise
        (10, "view", 2, 500.0, d(20, 10)),
        (10, "purchase", 2, 500.0, d(20, 12)),    # first touched 2 h before, account 19 days old
        (10, "purchase", 3, 300.0, d(21)),        # bought at the first touch
        (10, "view", 4, 70.0, d(18)),
        (10, "purchase", 4, 70.0, d(19)),         # exactly 24 h after the first touch: no surprise
        (11, "view", 1, 20.0, d(15)),
        (11, "purchase", 2, 400.0, d(20)),        # a new category, but the account is 5 days old
    ], "user_key long, event_type string, category_id long, price double, event_time timestamp")
    got = {r.user_key: (r.categories_viewed, r.surprise_purchases, r.surprise_purchase_value)
           for r in risk.category_signals(events).collect()}
    assert got == {10: (3.0, 2.0, 800.0), 11: (1.0, 0.0, 0.0)}


def test_rules_fire_at_their_thresholds_with_their_reasons(spark):
    text = {signal: reason for signal, _, reason in risk.rules()}
    signals = spark.createDataFrame([
        ("below", 0.49, 2.0, 0.79, 5, 1.99, 0.0),
        ("at", 0.5, 1.99, 0.8, 3, 2.0, 0.0),
        ("few_purchases", 0.0, 9999.0, 1.0, 2, 3.0, 1.0),   # buys all it views, but only twice
        ("one_purchase", 0.0, 9999.0, 0.9, 1, 5.0, 0.0),
    ], "user string, burst_session_share double, fastest_seconds_per_event double, purchase_view_ratio double, "
       "purchases long, price_ratio double, new_high_value double")
    got = {r.user: (r.reasons, r.rule_score) for r in risk.with_reasons(signals).collect()}
    assert got == {
        "below": ([], 0.0),
        "at": ([text["burst_session_share"], text["fastest_seconds_per_event"], text["purchase_view_ratio"],
                text["price_ratio"]], 4.0),
        "few_purchases": ([text["price_ratio"], text["new_high_value"]], 2.0),
        "one_purchase": ([], 0.0),
    }
    assert text["new_high_value"] == "new account (< 21 days) with top-5% purchase value"


def test_precision_recall_at_a_threshold(spark):
    scored = spark.createDataFrame([(0.9, 1), (0.8, 0), (0.6, 1), (0.5, 0), (0.2, 1), (0.1, 0)],
                                   "score double, label int")
    # >= 0.5 flags 4 rows, 2 of them positive, of 3 positives.
    assert risk.precision_recall_at(scored, "score", 0.5) == pytest.approx(
        {"precision": 0.5, "recall": 2 / 3, "flagged": 4.0})
    assert risk.precision_recall_at(scored, "score", 0.95) == {"precision": 0.0, "recall": 0.0, "flagged": 0.0}


def test_ranked_alerts_order_and_membership(spark):
    scored = spark.createDataFrame([
        (1, 0.9, 0.0, []), (2, 0.3, 1.0, ["r"]), (3, 0.3, 2.0, ["r", "s"]), (4, 0.4, 0.0, []), (5, 0.9, 0.0, []),
    ], "user_key long, score double, rule_score double, reasons array<string>")
    got = [(r.alert_rank, r.user_key) for r in risk.ranked_alerts(scored, "score", 0.5).orderBy("alert_rank").collect()]
    # 4 is below the threshold without a reason; ties go to more rules, then the smaller key.
    assert got == [(1, 1), (2, 5), (3, 3), (4, 2)]

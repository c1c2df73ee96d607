import math
from datetime import date

import pytest
from pyspark.sql import functions as F

from ecomlake import datasets
from ecomlake.models import clv

# Published CDNOW sample parameters: Fader, Hardie & Lee (2005), "Counting your customers the easy
# way" (BG/NBD, LL -9582.4) and Fader & Hardie's Gamma-Gamma note (p 6.25, q 3.74, gamma 15.44).
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}


def paper_bgnbd_likelihood(r, alpha, a, b, x, t_x, T):
    """Eq. 6 of the paper, written with Beta functions (a different form from the code's)."""
    def beta(u, v):
        return math.exp(math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v))
    common = math.exp(math.lgamma(r + x) - math.lgamma(r)) * alpha ** r
    value = beta(a, b + x) / beta(a, b) * common / (alpha + T) ** (r + x)
    if x > 0:
        value += beta(a + 1, b + x - 1) / beta(a, b) * common / (alpha + t_x) ** (r + x)
    return math.log(value)


def test_bgnbd_log_likelihood_matches_the_paper_for_a_few_customers():
    params = tuple(PUBLISHED_BGNBD.values())
    customers = [(0, 0.0, 38.86), (2, 30.43, 38.86), (7, 29.43, 35.0), (1, 1.71, 32.0)]
    got = clv.bgnbd_log_likelihood(params, *zip(*customers))
    expected = [paper_bgnbd_likelihood(*params, *c) for c in customers]
    assert got == pytest.approx(expected, rel=1e-10)
    # By hand for x = 0: ln (alpha / (alpha + T))^r = 0.243 * ln(0.102001) = -0.55471
    assert got[0] == pytest.approx(-0.55471, abs=1e-5)


def test_gamma_gamma_log_likelihood_matches_its_density():
    p, q, v = PUBLISHED_GAMMA_GAMMA.values()
    for x, m in [(1, 10.0), (3, 35.5), (12, 14.2)]:
        density = (math.lgamma(p * x + q) - math.lgamma(p * x) - math.lgamma(q) + q * math.log(v)
                   + (p * x - 1) * math.log(m) + p * x * math.log(x) - (p * x + q) * math.log(v + m * x))
        assert clv.gamma_gamma_log_likelihood((p, q, v), [x], [m])[0] == pytest.approx(density, rel=1e-12)
    # Expected spend shrinks a one-purchase customer towards the population mean p v / (q - 1) = 35.2
    assert clv.gamma_gamma_expected_spend(PUBLISHED_GAMMA_GAMMA, 1, 10.0) == pytest.approx(6.25 * 25.44 / 8.99)   # = 17.69


def test_rfm_summary_by_hand(spark):
    orders = spark.createDataFrame([
        ("a", date(2020, 1, 1), 10.0), ("a", date(2020, 1, 1), 5.0),   # same day: one purchase of 15
        ("a", date(2020, 1, 15), 20.0), ("a", date(2020, 1, 29), 40.0),
        ("a", date(2020, 2, 12), 7.0),                                    # holdout
        ("b", date(2020, 1, 22), 9.0),                                    # one purchase only
        ("c", date(2020, 2, 10), 3.0),                                    # first buys after calibration
    ], "customer_id string, order_date date, amount double")
    got = {r.customer_id: r for r in clv.rfm_summary(orders, "2020-02-05", "2020-02-19").collect()}
    assert set(got) == {"a", "b"}
    a, b = got["a"], got["b"]
    assert (a.frequency, a.recency, a.T, a.monetary) == (2.0, 4.0, 5.0, 30.0)
    assert (a.frequency_holdout, a.monetary_holdout, a.holdout_length) == (1.0, 7.0, 2.0)
    assert (b.frequency, b.recency, b.T, b.monetary, b.frequency_holdout) == (0.0, 0.0, 2.0, 0.0, 0.0)


def test_fits_reproduce_the_published_cdnow_parameters(spark):
    lines = datasets.read_text_lines(spark, datasets.CDNOW_SAMPLE.locate())
    orders = datasets.cdnow_orders(lines).where(F.col("_reject_reason").isNull())
    summary = clv.rfm_summary(orders, "1997-09-30", "1998-06-30").cache()
    bgnbd = clv.fit_bgnbd(summary)
    assert bgnbd["customers"] == 2357
    for k, v in PUBLISHED_BGNBD.items():
        assert bgnbd[k] == pytest.approx(v, abs=0.001), k
    assert bgnbd["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    gamma_gamma = clv.fit_gamma_gamma(summary)
    assert gamma_gamma["customers"] == 946
    for k, v in PUBLISHED_GAMMA_GAMMA.items():
        assert gamma_gamma[k] == pytest.approx(v, abs=0.01), k
    values = clv.customer_values(summary, bgnbd, gamma_gamma, 52.0).cache()
    metrics = clv.holdout_metrics(values)
    assert metrics["actual_holdout_purchases"] == 1882
    assert 1500 < metrics["predicted_holdout_purchases"] < 1900
    assert metrics["mae"] < metrics["naive_rate_mae"]
    by_frequency = clv.calibration_table(values).collect()
    assert [r.calibration_frequency for r in by_frequency] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(r.customers for r in by_frequency) == 2357
    # Predictions rise with calibration frequency, as the actuals do.
    predicted = [r.predicted_holdout_purchases for r in by_frequency]
    assert predicted == sorted(predicted)
    alive = values.where("frequency = 0").agg(F.min("probability_alive")).first()[0]
    assert alive == 1.0   # BG/NBD: a customer who never repeated cannot have dropped out yet
    summary.unpersist()

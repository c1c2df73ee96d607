"""Metrics against values computed by hand (see the comments for the arithmetic)."""
import math

import pytest

from ecomlake import evaluation


def test_ranking_metrics_match_hand_computed_values(spark):
    recs = spark.createDataFrame(
        [("A", "i1", 1), ("A", "i2", 2), ("A", "i3", 3),
         ("B", "i4", 1), ("B", "i1", 2), ("B", "i2", 3),
         ("D", "i1", 1)],                      # D has no truth: not evaluated
        "user string, item string, rank int")
    truth = spark.createDataFrame(
        [("A", "i2"), ("A", "i4"), ("B", "i4"), ("B", "i2"), ("C", "i1")],  # C has no recs
        "user string, item string")
    m = evaluation.ranking_metrics(recs, truth, k=3, catalogue_size=8)
    # A: one hit at rank 2 of 2 relevant; B: hits at ranks 1 and 3 of 2 relevant.
    idcg = 1 + 1 / math.log2(3)
    ndcg_a, ndcg_b = (1 / math.log2(3)) / idcg, (1 + 1 / math.log2(4)) / idcg
    ap_a, ap_b = (1 / 2) / 2, (1 / 1 + 2 / 3) / 2
    assert m["users_evaluated"] == 2
    assert m["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["ndcg@3"] == pytest.approx((ndcg_a + ndcg_b) / 2)
    assert m["map@3"] == pytest.approx((ap_a + ap_b) / 2)
    assert m["map_over_relevant@3"] == pytest.approx(((1 / 2) / 2 + (1 / 1 + 2 / 3) / 2) / 2)
    assert m["coverage@3"] == pytest.approx(4 / 8)   # i1..i4 recommended, 8 in the catalogue


def test_ranking_metrics_only_count_the_top_k(spark):
    recs = spark.createDataFrame([("A", "i1", 1), ("A", "i2", 2)], "user string, item string, rank int")
    truth = spark.createDataFrame([("A", "i2")], "user string, item string")
    m = evaluation.ranking_metrics(recs, truth, k=1, catalogue_size=2)
    assert (m["precision@1"], m["recall@1"], m["ndcg@1"], m["map@1"]) == (0.0, 0.0, 0.0, 0.0)


def test_ranking_metrics_per_group_equal_each_group_measured_alone(spark):
    from pyspark.sql import functions as F

    recs = spark.createDataFrame(
        [("m1", "A", "i1", 1), ("m1", "A", "i2", 2), ("m2", "A", "i2", 1), ("m2", "A", "i1", 2),
         ("m2", "B", "i3", 1), ("m3", "D", "i9", 1)],   # m3: no user with truth, one item recommended
        "model string, user string, item string, rank int")
    truth = spark.createDataFrame([("A", "i2"), ("B", "i3")], "user string, item string")
    per = evaluation.ranking_metrics_per(recs, truth, k=2, catalogue_size=4, group="model")
    # m1: A's hit at rank 2 -> nDCG (1/log2 3) / 1; m2: A's and B's hits at rank 1 -> 1.
    assert per["m1"]["ndcg@2"] == pytest.approx(1 / math.log2(3)) and per["m2"]["ndcg@2"] == 1.0
    assert per["m3"]["users_evaluated"] == 0.0 and per["m3"]["coverage@2"] == 0.25
    for model in ("m1", "m2"):
        alone = evaluation.ranking_metrics(recs.where(F.col("model") == model), truth, k=2, catalogue_size=4)
        assert per[model] == pytest.approx(alone)


def test_binary_metrics(spark):
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    labels = [1, 1, 0, 1, 0, 0, 0, 1, 0, 0]
    df = spark.createDataFrame(list(zip(labels, scores)), "label int, score double")
    m = evaluation.binary_metrics(df)
    # 4 positives x 6 negatives; correctly ordered pairs: 6 + 6 + 5 + 2 = 19.
    assert m["auc"] == pytest.approx(19 / 24)
    assert m["base_rate"] == pytest.approx(0.4)
    expected_log_loss = -sum(y * math.log(p) + (1 - y) * math.log(1 - p) for y, p in zip(labels, scores)) / 10
    assert m["log_loss"] == pytest.approx(expected_log_loss)


def test_top_decile_lift(spark):
    # 40 rows, base rate 10/40; the 4 highest scores are all positive: lift = 1 / 0.25 = 4.
    rows = [(1, 1.0 - i / 100) for i in range(4)] + [(1 if i < 6 else 0, 0.5 - i / 100) for i in range(36)]
    df = spark.createDataFrame(rows, "label int, score double")
    assert evaluation.binary_metrics(df, probability=False)["lift_top_decile"] == pytest.approx(4.0)


def test_calibration_table(spark):
    df = spark.createDataFrame([(1, 0.95), (0, 0.91), (0, 0.05), (0, 0.02), (1, 0.15)],
                               "label int, probability double")
    table = evaluation.calibration_table(df)
    assert table == [
        {"bin": "0.0-0.1", "rows": 2, "mean_predicted": 0.035, "observed_rate": 0.0},
        {"bin": "0.1-0.2", "rows": 1, "mean_predicted": 0.15, "observed_rate": 1.0},
        {"bin": "0.9-1.0", "rows": 2, "mean_predicted": 0.93, "observed_rate": 0.5},
    ]


def test_calibration_table_bin_edges_and_bin_count(spark):
    df = spark.createDataFrame([(0, 0.0), (1, 0.1), (0, 0.18), (1, 0.5), (0, 0.5), (0, 0.5), (1, 0.95), (1, 1.0)],
                               "label int, probability double")
    # 0.1 opens the second bin; 1.0 belongs to the last bin, not an eleventh.
    assert evaluation.calibration_table(df) == [
        {"bin": "0.0-0.1", "rows": 1, "mean_predicted": 0.0, "observed_rate": 0.0},
        {"bin": "0.1-0.2", "rows": 2, "mean_predicted": 0.14, "observed_rate": 0.5},
        {"bin": "0.5-0.6", "rows": 3, "mean_predicted": 0.5, "observed_rate": 0.3333},
        {"bin": "0.9-1.0", "rows": 2, "mean_predicted": 0.975, "observed_rate": 1.0},
    ]
    assert evaluation.calibration_table(df, bins=5) == [
        {"bin": "0.0-0.2", "rows": 3, "mean_predicted": 0.0933, "observed_rate": 0.3333},
        {"bin": "0.4-0.6", "rows": 3, "mean_predicted": 0.5, "observed_rate": 0.3333},
        {"bin": "0.8-1.0", "rows": 2, "mean_predicted": 0.975, "observed_rate": 1.0},
    ]


def test_forecast_metrics(spark):
    df = spark.createDataFrame([(10.0, 8.0), (0.0, 0.0), (5.0, 10.0)], "actual double, forecast double")
    m = evaluation.forecast_metrics(df)
    assert m["wape"] == pytest.approx(7 / 15)
    assert m["rmse"] == pytest.approx(math.sqrt(29 / 3))
    assert m["smape"] == pytest.approx((4 / 18 + 0 + 10 / 15) / 3)


def test_map_denominators_differ_when_more_items_are_relevant_than_k(spark):
    recs = spark.createDataFrame([("A", "i1", 1), ("A", "x", 2)], "user string, item string, rank int")
    truth = spark.createDataFrame([("A", "i1"), ("A", "i2"), ("A", "i3")], "user string, item string")
    m = evaluation.ranking_metrics(recs, truth, k=1, catalogue_size=4)
    assert m["map@1"] == pytest.approx(1.0)                  # 1 / min(3 relevant, k=1)
    assert m["map_over_relevant@1"] == pytest.approx(1 / 3)  # 1 / 3 relevant
    assert m["recall@1"] == pytest.approx(1 / 3)


def test_next_item_metrics(spark):
    df = spark.createDataFrame([([5, 7, 9], 7), ([1, 2, 3], 4), ([4, 1, 2], 4), (None, 3)],
                               "predicted array<int>, target int")
    m = evaluation.next_item_metrics(df, k=2)
    # hits: 7 at rank 2, 4 at rank 1; 9 would be rank 3 (outside k); a null prediction misses.
    assert m["recall@2"] == pytest.approx(2 / 4)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 1) / 4)
    assert m["examples"] == 4

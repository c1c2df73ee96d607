"""The two-stage recommender's pieces on hand-built data: the candidate union, labels, features,
and a ranker that must learn which feature marks the relevant item."""
import math

import pytest

from ecomlake.models import ranker

LIST = "user_key long, product_id long, rank int, score double"


def test_candidates_union_ranks_and_standardised_scores(spark):
    als = spark.createDataFrame([(1, 10, 1, 3.0), (1, 11, 2, 1.0), (1, 12, 3, 0.5)], LIST)
    pop = spark.createDataFrame([(1, 11, 1, 7.0), (1, 13, 2, 7.0)], LIST)
    rows = {r.product_id: r for r in ranker.candidates({"als": als, "popularity": pop}, depth=2).collect()}
    assert sorted(rows) == [10, 11, 13]                       # 12 is below depth 2
    assert (rows[10].als_rank, rows[10].popularity_rank, rows[10].generators) == (1, 3, 1)  # absent: depth + 1
    assert (rows[11].als_rank, rows[11].popularity_rank, rows[11].generators) == (2, 1, 2)
    # als list kept: scores 3 and 1, mean 2, population std 1 -> z = +1, -1
    assert rows[10].als_z == pytest.approx(1.0) and rows[11].als_z == pytest.approx(-1.0)
    assert rows[13].als_z == ranker.ABSENT_Z
    assert rows[13].popularity_z == 0.0                       # equal scores: no spread
    assert ranker.generator_columns(["als", "popularity"]) == [
        "als_rank", "als_z", "popularity_rank", "popularity_z", "generators"]


def test_labels_recall_and_interaction_features(spark):
    cands = spark.createDataFrame([(1, 10), (1, 11), (2, 10)], "user_key long, product_id long")
    truth = spark.createDataFrame([(1, 11), (1, 99), (2, 10), (3, 10)], "user_key long, product_id long")
    labelled = {(r.user_key, r.product_id): r.label for r in ranker.with_labels(cands, truth).collect()}
    assert labelled == {(1, 10): 0, (1, 11): 1, (2, 10): 1}
    # user 3 has no candidates: not counted; of 3 truth pairs of users 1 and 2, 2 are candidates
    assert ranker.candidate_recall(cands, truth) == pytest.approx(2 / 3)

    inter = spark.createDataFrame(
        [(1, 10, 2.0, 0), (1, 12, 1.0, 86400 * 2), (2, 10, 1.0, 86400 * 4), (2, 11, 1.0, 86400 * 10)],
        "user_key long, product_id long, strength double, t long")
    rows = {(r.user_key, r.product_id): r for r in ranker.interaction_features(cands, inter, "t").collect()}
    assert (rows[(1, 10)].user_items, rows[(1, 10)].item_users, rows[(1, 10)].own_strength) == (2, 2, 2.0)
    assert (rows[(1, 11)].item_users, rows[(1, 11)].own_strength) == (1, 0.0)
    # item 11's median time is day 10; user 1's median (of days 0 and 2, lower median) is day 0
    assert rows[(1, 11)].days_from_user == pytest.approx(10.0)


def test_category_features_share_and_price_ratio(spark):
    cands = spark.createDataFrame([(1, 10), (1, 20), (1, 30)], "user_key long, product_id long")
    inter = spark.createDataFrame([(1, 10, 3.0), (1, 11, 1.0)], "user_key long, product_id long, strength double")
    attrs = spark.createDataFrame([(10, 5, 100.0), (11, 6, 100.0), (20, 5, 250.0), (30, 7, None)],
                                  "product_id long, category_id long, price double")
    rows = {r.product_id: r for r in ranker.category_features(cands, inter, attrs).collect()}
    assert rows[20].category_share == pytest.approx(0.75) and rows[20].price_ratio == pytest.approx(2.5)
    assert rows[30].category_share == 0.0 and rows[30].price_ratio is None


def test_ranker_learns_the_feature_that_marks_the_relevant_item(spark):
    # 60 users x 5 candidates; the relevant one has signal 1. "decoy" is noise. Trained on fold 0,
    # the ranker must put the relevant item first for unseen users and name `signal` as the reason.
    rows = []
    for user in range(60):
        relevant = (user * 7) % 5
        for item in range(5):
            rows.append((0, user, item, int(item == relevant), float(item == relevant), float((user + item) % 3)))
    schema = "fold int, user_key long, product_id long, label int, signal double, decoy double"
    data = spark.createDataFrame(rows, schema)
    model = ranker.fit(data.where("user_key < 40"), ["signal", "decoy"], trees=20, max_depth=2,
                       learning_rate=0.3, min_child_weight=0.0, seed=1)
    top = ranker.rerank(model, data.where("user_key >= 40").drop("label"), ["signal", "decoy"], k=1, explain=True)
    got = top.collect()
    assert len(got) == 20
    assert all(r.product_id == (r.user_key * 7) % 5 for r in got)
    assert all(r.top_features[0].feature == "signal" for r in got)
    assert all(len(r.top_features) == 2 and not math.isnan(r.top_features[0].contribution) for r in got)


def test_category_popularity_draws_from_the_users_strongest_categories(spark):
    from ecomlake.models import recommend

    # categories: 1 -> {10, 11, 12}, 2 -> {20, 21}; user 1 is 3/4 category 1, 1/4 category 2
    inter = spark.createDataFrame(
        [(1, 10, 3.0), (1, 20, 1.0), (2, 11, 1.0), (3, 11, 1.0), (2, 12, 1.0), (2, 21, 1.0), (3, 21, 1.0), (4, 21, 1.0)],
        "user_key long, product_id long, strength double")
    cats = spark.createDataFrame([(10, 1), (11, 1), (12, 1), (20, 2), (21, 2)], "product_id long, category_id long")
    users = spark.createDataFrame([(1,)], "user_key long")
    recs = recommend.category_popularity(inter, cats, users, 3).orderBy("rank").collect()
    # item users: 11 -> 2, 10 -> 1, 12 -> 1, 21 -> 3, 20 -> 1; scores 0.75 * 2, 0.25 * 3, 0.75 * 1 (10 and 12)
    assert [(r.product_id, r.score) for r in recs] == [(11, 1.5), (10, 0.75), (12, 0.75)]
    # the user's own items out: 11, 12, then 21 (0.75)
    seen = inter.where("user_key = 1")
    assert [r.product_id for r in recommend.category_popularity(inter, cats, users, 3, seen).orderBy("rank").collect()] \
        == [11, 12, 21]


def test_item_categories_take_the_latest_category_and_median_price(spark):
    from ecomlake.models import recommend

    events = spark.createDataFrame(
        [(10, 1, 5.0, "2019-10-01 00:00:00"), (10, 2, 7.0, "2019-10-03 00:00:00"), (10, 2, 9.0, "2019-10-02 00:00:00"),
         (11, None, 1.0, "2019-10-01 00:00:00")],
        "product_id long, category_id long, price double, event_time string").selectExpr(
        "product_id", "category_id", "price", "CAST(event_time AS timestamp) AS event_time")
    rows = {r.product_id: r for r in recommend.item_categories(events).collect()}
    assert set(rows) == {10} and (rows[10].category_id, rows[10].price) == (2, 7.0)


BARRIER_JOB = """
import sys
from pyspark import BarrierTaskContext
from pyspark.sql import SparkSession
from ecomlake.cli import exit_with

spark = SparkSession.builder.master("local[1]").getOrCreate()
def wait_all(rows):
    BarrierTaskContext.get().barrier()   # what xgboost.spark's training does
    return rows
print(spark.sparkContext.parallelize([1], 1).barrier().mapPartitions(wait_all).collect())
exit_with(0)
"""


@pytest.mark.subprocess
def test_a_job_that_ran_a_barrier_stage_ends_its_spark_submit(tmp_path):
    # Spark 3.5 leaves a non-daemon timer thread after a barrier stage; under spark-submit (the
    # JVM is the parent) the job finished but the process never ended until exit_with cancelled it.
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pyspark

    script = tmp_path / "barrier_job.py"
    script.write_text(BARRIER_JOB)
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    done = subprocess.run([str(submit), "--driver-java-options", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
                           str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "[1]" in done.stdout


def test_graph_features_from_bought_after_and_viewed_next_edges(spark):
    from ecomlake.models import two_stage

    def at(day, minute=0):
        return f"2019-10-{day:02d} 10:{minute:02d}:00"
    rows = [(1, "s1", "purchase", 1, at(1)), (1, "s1b", "view", 3, at(8)),
            (2, "s2", "purchase", 1, at(1)), (2, "s2b", "view", 2, at(2)),
            (3, "s3", "purchase", 1, at(1)), (3, "s3b", "view", 2, at(2)),
            (4, "s4", "view", 3, at(3)), (4, "s4", "view", 2, at(3, 1)),
            (5, "s5", "view", 3, at(4)), (5, "s5", "view", 2, at(4, 1))]
    events = spark.createDataFrame(rows, "user_key long, user_session string, event_type string, product_id long, "
                                         "t string").selectExpr("*", "CAST(t AS timestamp) AS event_time").drop("t")
    cands = spark.createDataFrame([(1, 2), (1, 4)], "user_key long, product_id long")
    got = {r.product_id: r for r in two_stage.graph_features(cands, events, window_days=7).collect()}
    # bought 1 -> met 2 within 7 days: users 2 and 3 of 3 buyers of 1; 4 of the 5 users met 2:
    # lift = 2 * 5 / (3 * 4). Viewed 3 -> next 2: both steps from 3 go to 2, both steps end at 2: lift 1.
    assert got[2].complement_lift == pytest.approx(2 * 5 / (3 * 4))
    assert got[2].next_view_lift == pytest.approx(1.0)     # user 1 viewed 3 in the last 7 days
    assert (got[4].complement_lift, got[4].next_view_lift) == (0.0, 0.0)


def test_blend_ranks_by_the_weighted_standardised_scores(spark):
    rows = spark.createDataFrame([(1, 10, 1.0, -1.0), (1, 11, 0.0, 2.0), (1, 12, -1.0, 0.0)],
                                 "user_key long, product_id long, ease_z double, als_z double")
    # weights 0.7 / 0.3: 10 -> 0.4, 11 -> 0.6, 12 -> -0.7; ALS alone: 11, 12, 10
    top = ranker.blend(rows, {"ease": 0.7, "als": 0.3}, 2).orderBy("rank").collect()
    got = [(r.product_id, round(r.score, 6)) for r in top]
    assert got == [(11, 0.6), (10, 0.4)]
    als_only = ranker.blend(rows, {"ease": 0.0, "als": 1.0}, 3).orderBy("rank").collect()
    assert [r.product_id for r in als_only] == [11, 12, 10]

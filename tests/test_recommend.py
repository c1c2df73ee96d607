"""Recommenders and the MovieLens adapter on hand-built data."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomlake import datasets, lake, tables
from ecomlake.errors import InputError
from ecomlake.jobs import ingest
from ecomlake.models import recommend

INTER = "user_key long, product_id long, strength double"


def top(df):
    return sorted((r.user_key, r.rank, r.product_id) for r in df.collect())


@pytest.fixture(scope="module")
def interactions(spark):
    # u1 {a, b}, u2 {a, c}, u3 {a, b}, u4 {b (strength 2)}; items a=1, b=2, c=3
    return spark.createDataFrame([(1, 1, 1.0), (1, 2, 1.0), (2, 1, 1.0), (2, 3, 1.0), (3, 1, 1.0),
                                  (3, 2, 1.0), (4, 2, 2.0)], INTER)


def test_popularity_ranks_by_users_and_can_exclude_seen_items(spark, interactions):
    users = spark.createDataFrame([(4,)], "user_key long")
    assert top(recommend.popularity(interactions, users, 2)) == [(4, 1, 1), (4, 2, 2)]   # a and b: 3 users each; tie -> lower id
    seen = interactions.where("user_key = 4")
    assert top(recommend.popularity(interactions, users, 2, exclude=seen)) == [(4, 1, 1), (4, 2, 3)]


def test_co_occurrence_scores_by_shared_users(spark, interactions):
    users = spark.createDataFrame([(4,)], "user_key long")
    # C[b, b] = 3 (u1, u3, u4), C[b, a] = 2 (u1, u3), C[b, c] = 0; u4 has b with strength 2.
    recs = recommend.co_occurrence(interactions, users, 5)
    assert [(r.product_id, r.score) for r in recs.orderBy("rank").collect()] == [(2, 6.0), (1, 4.0)]
    seen = interactions.where("user_key = 4")
    assert top(recommend.co_occurrence(interactions, users, 5, exclude=seen)) == [(4, 1, 1)]


def test_stratified_split_keeps_a_share_of_each_user(spark):
    rows = [(1, i, 1.0) for i in range(8)] + [(2, 100, 1.0)]
    split = recommend.stratified_split(spark.createDataFrame(rows, INTER), 0.75, seed=42)
    counts = {(r.user_key, r._is_train): r["count"] for r in split.groupBy("user_key", "_is_train").count().collect()}
    assert counts == {(1, True): 6, (1, False): 2, (2, True): 1}
    again = recommend.stratified_split(spark.createDataFrame(rows, INTER), 0.75, seed=42)
    assert sorted(split.collect()) == sorted(again.collect())


def test_leave_last_out_and_next_after_last_by_hand(spark):
    # u1: 10, 11, 12; u2: 10, 11, 13; u3: 11, 12 (times 1, 2, 3); u4 rated 20 and 21 in the same second.
    rows = [(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 10, 1), (2, 11, 2), (2, 13, 3), (3, 11, 1), (3, 12, 2),
            (4, 20, 5), (4, 21, 5)]
    sequences = spark.createDataFrame([(u, i, 1.0, t) for u, i, t in rows], INTER + ", rated_at long")
    split = {(r.user_key, r.product_id): r._from_end for r in recommend.leave_last_out(sequences, "rated_at").collect()}
    assert [split[(1, i)] for i in (12, 11, 10)] == [1, 2, 3]
    assert (split[(4, 21)], split[(4, 20)]) == (1, 2)       # equal times: the higher id counts as later
    # T[10, 11] = 2, T[11, 12] = 2 (u1, u3), T[11, 13] = 1, T[20, 21] = 1.
    # u1's last items 12, 11, 10 weigh 1, 1/2, 1/3: 12 <- T[11, 12] / 2 = 1, 11 <- T[10, 11] / 3, 13 <- 1/2.
    users = spark.createDataFrame([(1,), (3,)], "user_key long")
    recs = recommend.next_after_last(sequences, "rated_at", users, 5)
    got = {(r.user_key, r.rank): (r.product_id, round(r.score, 4)) for r in recs.collect()}
    assert got == {(1, 1): (12, 1.0), (1, 2): (11, round(2 / 3, 4)), (1, 3): (13, 0.5),
                   (3, 1): (12, 1.0), (3, 2): (13, 0.5)}
    seen = sequences.where("user_key = 3")
    assert top(recommend.next_after_last(sequences, "rated_at", users.where("user_key = 3"), 5, seen)) == [(3, 1, 13)]


def test_ease_weights_and_scores_by_hand(spark):
    from ecomlake.models import ease

    # u1 {a, b}, u2 {a, b}, u3 {b, c}, u4 {a}; a=1, b=2, c=3. G = X^T X = [[3,2,0],[2,3,1],[0,1,1]];
    # with lambda 1, P = (G + I)^-1 = [[7,-4,2],[-4,8,-4],[2,-4,12]] / 20 (det 20, by cofactors), and
    # B[i, j] = -P[i, j] / P[j, j]: B[a,b] = 4/8, B[a,c] = -2/12, B[b,a] = 4/7, B[b,c] = 4/12,
    # B[c,a] = -2/7, B[c,b] = 4/8, zero diagonal.
    inter = spark.createDataFrame([(1, 1, 1.0), (1, 2, 1.0), (2, 1, 1.0), (2, 2, 1.0), (3, 2, 1.0), (3, 3, 1.0),
                                   (4, 1, 1.0)], INTER)
    with pytest.raises(InputError, match="EASE has no interactions to learn from"):
        ease.fit(inter.where("user_key = 0"), [1.0])
    items, gram, by_lambda = ease.fit(inter, [1.0])
    # items by users (b: 3, a: 3 -> lower id first; c: 1)
    assert sorted((r.item_index, r.product_id) for r in items.collect()) == [(0, 1), (1, 2), (2, 3)]
    assert gram.tolist() == [[3, 2, 0], [2, 3, 1], [0, 1, 1]]
    expected = [[0, 1 / 2, -1 / 6], [4 / 7, 0, 1 / 3], [-2 / 7, 1 / 2, 0]]
    assert by_lambda[1.0].tolist() == [pytest.approx(row, abs=1e-6) for row in expected]
    model = ease.EaseModel(items, by_lambda[1.0], 1.0)
    users = spark.createDataFrame([(3,), (4,)], "user_key long")
    # u4 has only a: its scores are row a (b 1/2, c -1/6); u3 has b and c: rows b + c (a 2/7, b 1/2,
    # c 1/3), and with its items excluded only a remains.
    recs = recommend.ease_recommend(model, inter, users, 2)
    assert [(r.user_key, r.rank, r.product_id, round(r.score, 4)) for r in recs.orderBy("user_key", "rank").collect()] \
        == [(3, 1, 2, 0.5), (3, 2, 3, 0.3333), (4, 1, 2, 0.5), (4, 2, 1, 0.0)]
    assert top(recommend.ease_recommend(model, inter, users, 2, exclude=inter)) == [(3, 1, 1), (4, 1, 2), (4, 2, 3)]
    # only the 2 items with the most users are modelled: c is neither scored nor recommended
    items2, gram2, _ = ease.fit(inter, [1.0], max_items=2)
    assert items2.count() == 2 and gram2.tolist() == [[3, 2], [2, 3]]


def test_dense_index_is_contiguous_and_sorted(spark, interactions):
    index = recommend.dense_index(interactions, "product_id", "item_index")
    assert sorted((r.product_id, r.item_index) for r in index.collect()) == [(1, 0), (2, 1), (3, 2)]


def test_als_blocks_from_config_reach_spark_als(spark, interactions):
    from ecomlake.jobs.train import _als_blocks

    assert _als_blocks({"als_blocks": 0}) == {}                      # Spark's default (10)
    options = _als_blocks({"als_blocks": 3})
    assert options == {"numUserBlocks": 3, "numItemBlocks": 3}
    users, items = recommend.index_frames(spark, interactions)
    model = recommend.fit_als(interactions, users, items, 2, 0.1, 1.0, 2, 1, **options)
    # ALS keeps each side's factors in one partition per block
    assert model.userFactors.rdd.getNumPartitions() == 3 and model.itemFactors.rdd.getNumPartitions() == 3


@pytest.mark.e2e
def test_movielens_adapter_on_a_slice_of_the_real_file(spark, tmp_path, make_config):
    real = pq.read_table(str(datasets.MOVIELENS_100K.locate())).slice(0, 500).to_pydict()
    real["rating"][0] = 7   # one bad row
    sliced = tmp_path / "ml-slice.parquet"
    pq.write_table(pa.table(real), str(sliced))
    config = make_config()
    first = ingest.run(spark, config, "movielens100k", str(sliced))
    assert (first["input_lines"], first["bronze_rows"], first["quarantined_rows"]) == (500, 499, 1)
    bad = lake.read_table(spark, config["lake_root"], tables.QUARANTINE_MOVIELENS_RATINGS).collect()
    assert [(r.reason, r.rating) for r in bad] == [("rating_out_of_range", 7)]
    assert ingest.run(spark, config, "movielens100k", str(sliced))["files"] == 0   # nothing new
    assert lake.read_table(spark, config["lake_root"], tables.BRONZE_MOVIELENS_RATINGS).count() == 499


SLICE_ALS = ("train.als_ranks=[8]", "train.als_reg_params=[0.1]", "train.als_alphas=[1.0]", "train.als_max_iter=3")


def _ingest_movielens_slice(spark, tmp_path, config, rows: int = 3000):
    """The first `rows` ratings of the real file, ingested into the config's lake; returns them."""
    real = pq.read_table(str(datasets.MOVIELENS_100K.locate())).slice(0, rows)
    sliced = tmp_path / "ml-slice.parquet"
    pq.write_table(real, str(sliced))
    ingest.run(spark, config, "movielens100k", str(sliced))
    return real


@pytest.mark.e2e
@pytest.mark.slow  # `make movielens` runs the task on the whole file; `make test-slow` runs this slice
def test_movielens_as_a_next_item_task_on_a_slice(spark, tmp_path, make_config):
    from ecomlake.jobs import train

    config = make_config(*SLICE_ALS)
    real = _ingest_movielens_slice(spark, tmp_path, config)
    users = len(set(real.column("user_id").to_pylist()))
    records = {r["model"]: r for r in train.run(spark, config, "movielens_sequential", None)}
    assert set(records) == {"als", "ease", "popularity", "co_occurrence", "next_after_last"}
    assert all(r["task"] == "next_item_movielens" for r in records.values())
    # Every user's last rating is asked for; most-popular answers every user.
    assert records["popularity"]["metrics"]["users_evaluated"] == users
    for r in records.values():
        assert 0 <= r["metrics"]["ndcg@10"] <= r["metrics"]["hr@10"] <= 1
    assert records["popularity"]["metrics"]["hr@10"] > 0


@pytest.mark.e2e
@pytest.mark.slow  # `make movielens` runs the task on the whole file; `make test-slow` runs this slice
def test_movielens_two_stage_on_a_slice(spark, tmp_path, make_config):
    from ecomlake.jobs import train

    config = make_config(*SLICE_ALS, "train.ease_lambdas=[100.0]", "train.ranker_folds=2",
                         "train.ranker_trees=20", "train.ranker_depth=20")
    _ingest_movielens_slice(spark, tmp_path, config)
    records = {r["model"]: r for r in train.run(spark, config, "movielens", None)}
    assert set(records) == {"als", "ease", "popularity", "co_occurrence", "two_stage", "ease_als_blend"}
    assert records["ease_als_blend"]["params"]["als_weight"] in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    stage = records["two_stage"]["metrics"]
    # the ranker reorders stage one's union: it cannot find more than the candidates hold
    assert 0 < stage["recall@10"] <= stage["candidate_recall"] <= 1
    assert stage["users_evaluated"] == records["ease"]["metrics"]["users_evaluated"]
    assert stage["ndcg@10"] > 0   # on a 3,000-rating slice it need not beat anything (the README has the whole file)
    assert 0 < records["ease_als_blend"]["metrics"]["ndcg@10"] <= 1
    assert records["two_stage"]["params"]["folds"] == 2
    assert set(records["two_stage"]["details"]["feature_total_gain"]) >= {"ease_z", "days_from_user"}

"""Cold-start products (issue 17 section 2): planted new arrivals and styles in the generator, the
product-image links adapter, the content features by hand, and the cold_start job on planted data."""
import math

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from ecomlake import datasets, lake, tables
from ecomlake.errors import ConfigError, InputError
from ecomlake import generate as gen
from ecomlake.models import cold_start

AS_OF = "2019-11-17"  # start 2019-10-01 + 61 days - 14: new arrivals come after it
PLANTED = dict(events=8000, seed=5, new_product_fraction=0.2, style_affinity=0.9, product_images=True)
IMAGES_PER_CLASS = 30
# Events of GeneratorParams(events=3000, seed=7): count and sum of a hash, measured at 3a49315
# (before new arrivals and styles existed). The default parameters must still give these.
DEFAULT_EVENTS_CHECKSUM = (3007, -54726503)


@pytest.fixture(scope="module")
def planted(spark):
    p = gen.GeneratorParams(**PLANTED)
    users = gen.users(spark, p)
    users = gen.scaled_users(users, p, gen.rate_scale(users, p)).persist()
    events = gen.events(gen.sessions(users, p), p).persist()
    truth = gen.products_truth(spark, p).persist()
    yield p, users, events, truth
    for frame in (users, events, truth):
        frame.unpersist()


def class_images(spark):
    """A stand-in image collection: IMAGES_PER_CLASS image ids per Fashion-MNIST class."""
    return spark.range(10 * IMAGES_PER_CLASS).select(F.col("id").alias("image_id"),
                                                     (F.col("id") % 10).cast("int").alias("label"))


def test_new_arrivals_are_never_seen_before_they_arrive_and_users_keep_to_their_style(spark, planted):
    p, users, events, truth = planted
    per_cat, n_new = p.products_per_category, p.new_products_per_category
    assert (per_cat, n_new) == (20, 4)
    new = truth.where("new_arrival").collect()
    assert len(new) == n_new * len(gen.CATEGORIES)
    first_arrival = gen.date.fromisoformat(p.start_date) + gen.timedelta(days=p.days - gen.NEW_ARRIVAL_DAYS)
    assert all(r.arrival_date >= first_arrival and (r.product_id - 1_000_000) % per_cat >= per_cat - n_new for r in new)
    seen = events.join(truth, "product_id").withColumn("day", F.to_date(F.timestamp_seconds("epoch_second")))
    assert seen.where(F.col("day") < F.col("arrival_date")).count() == 0
    assert seen.where("new_arrival").count() > 100
    # Normal users' apparel views: the user's style with probability 0.9, else any of 3: 0.933.
    apparel = (seen.where(F.col("style_class").isNotNull() & (F.col("kind") == "normal"))
               .join(users.select("user_id", "user_index"), "user_id")
               .withColumn("category", F.floor((F.col("product_id") - 1_000_000) / per_cat))
               .select((F.pmod(F.pmod(F.col("product_id") - 1_000_000, per_cat), 3) == gen.user_style(p, F.col("category")))
                       .cast("double").alias("own_style")))
    share = apparel.agg(F.avg("own_style"), F.count(F.lit(1))).first()
    assert share[1] > 200 and 0.88 < share[0] < 0.98


def test_default_parameters_plant_nothing_and_leave_the_events_as_they_were(spark):
    p = gen.GeneratorParams(events=3000, seed=7)
    assert not p.plants_products and p.new_products_per_category == 0
    users = gen.users(spark, p)
    users = gen.scaled_users(users, p, gen.rate_scale(users, p))
    checksum = gen.events(gen.sessions(users, p), p).agg(
        F.count(F.lit(1)), F.sum(F.xxhash64("epoch_second", "event_type", "product_id", "user_id") % 1_000_003)).first()
    # Measured before new arrivals and styles existed (generator version 2): the same events.
    assert tuple(checksum) == DEFAULT_EVENTS_CHECKSUM


def test_each_apparel_product_gets_one_image_of_its_style_class(spark, planted):
    p, _, _, truth = planted
    links = gen.product_images(truth, class_images(spark))
    rows = (links.join(truth, "product_id")
            .select("product_id", "image_id", "style_class", "category_code").collect())
    apparel = truth.where(F.col("style_class").isNotNull()).count()
    assert apparel == len(gen.APPAREL_STYLES) * p.products_per_category == len(rows)
    assert len({r.product_id for r in rows}) == len(rows)
    assert all(r.image_id % 10 == r.style_class for r in rows)  # the stand-in's label is image_id mod 10
    shoes = {r.style_class for r in rows if r.category_code == "apparel.shoes"}
    assert shoes == {5, 7, 9}
    assert sorted(tuple(r) for r in links.collect()) == sorted(tuple(r) for r in
                                                                gen.product_images(truth, class_images(spark)).collect())


def test_product_image_links_ingest_with_quarantine_and_reconciliation(spark, make_config, tmp_path):
    from ecomlake.jobs import ingest

    config = make_config()
    path = tmp_path / "product_images.csv"
    path.write_text("product_id,image_id\n1000140,5\n1000141,x\n1000142,\n1000140,6\n1000143,7,9\n1000144,8\n")
    out = ingest.run(spark, config, "rees46_product_images", str(path))
    assert (out["input_lines"], out["bronze_rows"], out["quarantined_rows"]) == (6, 2, 4)
    root = config["lake_root"]
    assert sorted(tuple(r) for r in lake.read_table(spark, root, tables.BRONZE_PRODUCT_IMAGE_LINKS)
                  .select("product_id", "image_id").collect()) == [(1000140, 5), (1000144, 8)]
    reasons = sorted((r.raw_line, r.reason) for r in lake.read_table(spark, root, tables.QUARANTINE_PRODUCT_IMAGE_LINKS)
                     .collect())
    assert reasons == [("1000140,6", "duplicate_product_id"), ("1000141,x", "unparseable_image_id"),
                       ("1000142,", "missing_image_id"), ("1000143,7,9", "wrong_column_count")]
    assert ingest.run(spark, config, "rees46_product_images", str(path))["input_lines"] == 0  # nothing new
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("product_id,picture\n1,2\n")
    with pytest.raises(InputError, match="wrong.csv"):
        ingest.run(spark, config, "rees46_product_images", str(wrong))


def hand_items() -> cold_start.ItemMatrix:
    return cold_start.ItemMatrix(
        product_ids=np.array([11, 12, 13]), categories=["a", "a", "b"],
        text=np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32),
        image=np.array([[1, 0], [0, 1], [0, 0]], dtype=np.float32),
        log_price_ratio=np.array([0.0, 0.5, -0.5], dtype=np.float32),
        popularity=np.log(np.array([0.75, 0.75, 0.25], dtype=np.float32)))


def test_pair_features_and_rankings_by_hand(spark):
    batch = pd.DataFrame({"user_key": ["u1", "u2"], "text_profile": [[3.0, 4.0], [0.0, 2.0]],
                          "image_profiles": [{"a": [1.0, 1.0]}, None],
                          "category_shares": [{"a": 0.75, "b": 0.25}, {"b": 1.0}],
                          "price_profile": [0.1, None]})
    f = cold_start.pair_features(batch, hand_items())
    s = math.sqrt(0.5)
    expected = {"category_affinity": [[0.75, 0.75, 0.25], [0, 0, 1]],
                "text_similarity": [[0.6, 0.6, 0.8], [0, 0, 1]],
                "image_similarity": [[s, s, 0], [0, 0, 0]],
                "price_closeness": [[-0.1, -0.4, -0.6], [0, -0.5, -0.5]],
                "category_popularity": [[math.log(0.75)] * 2 + [math.log(0.25)]] * 2}
    for name, values in expected.items():
        np.testing.assert_allclose(f[name], values, atol=1e-6, err_msg=name)
    profiles = spark.createDataFrame(batch.astype({"price_profile": float}),
                                     "user_key string, text_profile array<double>, image_profiles map<string,array<double>>, "
                                     "category_shares map<string,double>, price_profile double")
    weights = {"content": {"category_affinity": 1.0, "image_similarity": 1.0, "price_closeness": 1.0,
                           "text_similarity": 0.0, "category_popularity": 0.0},
               "content_without_image": {"category_affinity": 1.0, "text_similarity": 0.0,
                                         "price_closeness": 0.0, "category_popularity": 0.0}}
    ranked = {}
    for r in cold_start.ranked(profiles, hand_items(), weights, k=2).orderBy("user_key", "model", "rank").collect():
        ranked.setdefault((r.user_key, r.model), []).append(r.product_id)
    # u1 content: 0.75 + s - 0.1 (11) > 0.75 + s - 0.4 (12) > 0.25 - 0.6 (13); equal scores: lower id first.
    assert ranked[("u1", "content")] == [11, 12]
    assert ranked[("u1", "popularity")] == [11, 12] and ranked[("u2", "popularity")] == [11, 12]
    assert ranked[("u2", "category_affinity")] == [13, 11]
    assert ranked[("u1", "text_only")] == [13, 11]


def test_a_category_without_pictures_scores_0_and_too_many_items_is_a_config_error(spark):
    no_pictures = cold_start.ItemMatrix(
        product_ids=np.array([21, 22]), categories=["b", "b"], text=np.eye(2, dtype=np.float32),
        image=np.zeros((2, 1), dtype=np.float32), log_price_ratio=np.zeros(2, dtype=np.float32),
        popularity=np.zeros(2, dtype=np.float32))
    batch = pd.DataFrame({"user_key": ["u"], "text_profile": [[1.0, 0.0]], "image_profiles": [{"b": [0.6, 0.8]}],
                          "category_shares": [{"b": 1.0}], "price_profile": [0.0]})
    np.testing.assert_array_equal(cold_start.pair_features(batch, no_pictures)["image_similarity"], [[0, 0]])
    content = spark.createDataFrame([(1, "a", [1.0], None, 0.0), (2, "a", [1.0], None, 0.0)],
                                    "product_id long, category_code string, text_embedding array<double>, "
                                    "image_embedding array<double>, log_price_ratio double")
    with pytest.raises(ConfigError, match="2 candidate products exceed cold_start.max_items \\(1\\)"):
        cold_start.ItemMatrix.collect(content, {"a": 0.0}, max_items=1)


@pytest.mark.e2e
def test_cold_start_job_recommends_new_products_and_similar_pictures(spark, planted, make_config):
    from ecomlake.jobs import cold_start as job

    p, _, events, truth = planted
    config = make_config("cold_start.negatives=10", "cold_start.max_iter=30")
    root = config["lake_root"]
    silver = events.select(F.col("user_id").alias("user_key"), "product_id", "event_type",
                           F.timestamp_seconds("epoch_second").alias("event_time"),
                           F.to_date(F.timestamp_seconds("epoch_second")).alias("event_date"),
                           "category_code", "brand", "price", "user_session")
    lake.overwrite_table(silver, root, tables.SILVER_EVENTS)
    lake.overwrite_table(gen.catalog(spark, p), root, tables.BRONZE_PRODUCTS)
    lake.overwrite_table(gen.product_images(truth, class_images(spark)), root, tables.BRONZE_PRODUCT_IMAGE_LINKS)
    # Stand-in CNN embeddings: the class's axis plus noise, so pictures of a class are nearest each other.
    names = F.create_map(*[x for i, n in enumerate(datasets.FASHION_MNIST_CLASSES) for x in (F.lit(i), F.lit(n))])
    axis = F.transform(F.sequence(F.lit(0), F.lit(15)), lambda d: (
        F.when(d == F.col("label"), 1.0).otherwise(0.0) + 0.3 * F.pmod(F.xxhash64("image_id", d), 1000) / 1000.0
    ).cast("float"))
    lake.overwrite_table(class_images(spark).select(
        "image_id", F.lit("train").alias("split"), "label", names[F.col("label")].alias("label_name"),
        F.col("label").alias("predicted_label"), axis.alias("embedding"), F.lit("image_cnn").alias("model"),
        F.lit("stand-in").alias("run_id")), root, tables.GOLD_ITEM_IMAGE_EMBEDDINGS)

    with pytest.raises(InputError, match="silver/events ends before 2019-11-25 \\+ 14 days"):
        job.run(spark, config, "2019-11-25")  # the data end on 2019-11-30: no whole horizon to measure
    out = job.run(spark, config, AS_OF)
    ndcg = {m: v["ndcg@10"] for m, v in out["metrics"].items()}
    assert out["metrics"]["content"]["users_evaluated"] > 50
    assert ndcg["content"] > 1.5 * ndcg["popularity"]
    assert ndcg["image_only"] > ndcg["popularity"]
    assert out["details"]["new_items"] == p.new_products_per_category * len(gen.CATEGORIES)
    # Each class holds 20 / 3 products of one category: its 6-7 others are all among the 10 nearest.
    assert out["visual"]["same_class_recall@10"] == 1.0
    sizes = [n for n in np.bincount([r.style_class for r in truth.where("style_class IS NOT NULL").collect()]) if n]
    assert out["visual"]["same_class_precision@10"] == pytest.approx(
        sum(n * min(10, n - 1) / 10 for n in sizes) / sum(sizes))

    recs = lake.read_table(spark, root, tables.GOLD_NEW_ITEM_RECOMMENDATIONS)
    old = silver.where(F.col("event_time") < F.lit(AS_OF).cast("timestamp")).select("product_id").distinct()
    assert recs.count() > 0 and recs.join(old, "product_id").count() == 0  # only products nobody had touched
    assert recs.groupBy("user_key").count().where("count != 10").count() == 0
    runs = lake.read_table(spark, root, tables.GOLD_MODEL_RUNS)
    assert runs.where("task = 'cold_start'").count() == len(cold_start.MODELS)
    assert runs.where("task = 'visual_similarity'").count() == 1
    similar = lake.read_table(spark, root, tables.GOLD_VISUALLY_SIMILAR_ITEMS)
    assert similar.count() == len(gen.APPAREL_STYLES) * p.products_per_category * 10

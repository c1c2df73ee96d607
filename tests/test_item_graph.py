"""The item graph (issue 13 sections 1-2): planted relations in the generator, edges and lift by
hand, complements a plain count gets wrong, taxonomy edges, the planted-pair metrics, and the
graph job on a hand-built lake."""
import json
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from ecomlake import generate as gen
from ecomlake import lake, tables
from ecomlake.errors import ConfigError
from ecomlake.models import item_graph

PLANTED = dict(events=8000, seed=5, item_relations=True)  # fewer leaves too few main-product purchases to judge
DAY0 = datetime(2019, 10, 1)
EVENT_SCHEMA = "user_key string, user_session string, event_time timestamp, event_type string, product_id long"
# Products of the hand-built lake: a phone P whose planted accessory is the headset H; C is a cable
# everyone meets (popular); S1 and S2 are phones viewed side by side (substitutes).
P, H, C, S1, S2 = 1, 2, 3, 4, 5
PRODUCTS = [(P, "electronics.smartphone", "acme"), (H, "electronics.audio.headphone", "Sony"),
            (C, "electronics.audio.headphone", None), (S1, "electronics.smartphone", "acme"),
            (S2, "electronics.smartphone", "zeta")]


@pytest.fixture(scope="module")
def planted(spark):
    p = gen.GeneratorParams(**PLANTED)
    users = gen.users(spark, p)
    users = gen.scaled_users(users, p, gen.rate_scale(users, p))
    events = gen.events(gen.sessions(users, p), p).persist()
    yield p, events
    events.unpersist()


def test_generate_plants_substitutes_complements_and_category_transitions(spark, planted):
    p, events = planted
    n_old = p.products_per_category
    truth = gen.item_relations_truth(spark, p)
    counts = {r["relation"]: r["count"] for r in truth.groupBy("relation").count().collect()}
    assert counts == {"substitute": len(gen.CATEGORIES) * n_old, "complement": len(gen.COMPLEMENT_CATEGORIES) * n_old}

    # A view at an even slot of a normal session is followed by its substitute about
    # SUBSTITUTE_SHARE of the time (less where a category transition fires first).
    views = events.where((F.col("kind") == "normal") & (F.col("event_type") == "view"))
    nxt = views.select("session_key", (F.col("event_index") - 1).alias("event_index"),
                       F.col("product_id").alias("next_product"))
    substitutes = truth.where("relation = 'substitute'").select(
        "product_id", F.col("related_product_id").alias("next_product"), F.lit(1).alias("is_substitute"))
    followed = (views.where(F.col("event_index") % 2 == 0).join(nxt, ["session_key", "event_index"])
                .join(substitutes, ["product_id", "next_product"], "left")
                .agg(F.avg(F.coalesce("is_substitute", F.lit(0))), F.count(F.lit(1))).first())
    assert followed[1] > 1000 and 0.27 < followed[0] < 0.40

    # After buying a main product, a normal user meets its accessory within COMPLEMENT_DAYS days
    # about COMPLEMENT_FOLLOW_UP of the time (purchases in the window's last days have less room).
    complements = truth.where("relation = 'complement'")
    bought = (events.where((F.col("kind") == "normal") & (F.col("event_type") == "purchase")
                           & (F.col("epoch_second") < p.start_epoch + (p.days - gen.COMPLEMENT_DAYS) * 86400))
              .join(complements, "product_id")
              .select("user_id", "session_key", "related_product_id", F.col("epoch_second").alias("bought_at")))
    met = events.select("user_id", F.col("product_id").alias("related_product_id"), "epoch_second")
    followed_up = (bought.join(met, ["user_id", "related_product_id"], "left")
                   .groupBy("session_key").agg(F.max(F.when(
                       (F.col("epoch_second") > F.col("bought_at"))
                       & (F.col("epoch_second") <= F.col("bought_at") + gen.COMPLEMENT_DAYS * 86400 + 86400), 1)
                       .otherwise(0)).alias("met"))
                   .agg(F.avg("met"), F.count(F.lit(1))).first())
    assert followed_up[1] > 30 and 0.45 < followed_up[0] < 0.8, followed_up

    # Each planted source category's most frequent other next category is its target.
    transitions = gen.category_transitions(events).where("from_category != to_category").collect()
    for source, target in gen.CATEGORY_TRANSITIONS.items():
        after = sorted((r for r in transitions if r["from_category"] == gen.CATEGORIES[source][0]),
                       key=lambda r: -r["share"])
        assert after[0]["to_category"] == gen.CATEGORIES[target][0]


def hand_events(spark):
    """Users u1-u4 buy P on day 1; u1-u3 view H on day 2 (its accessory); u1-u4 and u5-u8 view C (a
    cable everyone meets); u9 buys P and views H 10 days later (outside a 7-day window). Sessions
    x1-x3 view S1 then S2 (x3 also C); nobody buys both."""
    rows = []

    def add(user, session, day, kind, product, minute=0):
        rows.append((user, session, DAY0 + timedelta(days=day, minutes=minute), kind, product))

    for i in range(1, 5):
        add(f"u{i}", f"b{i}", 1, "view", P)
        add(f"u{i}", f"b{i}", 1, "purchase", P, 1)
        add(f"u{i}", f"c{i}", 3, "view", C)
    for i in range(1, 4):
        add(f"u{i}", f"h{i}", 2, "view", H)
    for i in range(5, 9):
        add(f"u{i}", f"c{i}", 3, "view", C)
    add("u1", "c1", 3, "purchase", C, 1)
    add("u9", "b9", 1, "purchase", P)
    add("u9", "h9", 11, "view", H)
    for i in range(1, 4):
        add(f"v{i}", f"x{i}", 4, "view", S1)
        add(f"v{i}", f"x{i}", 4, "view", S2, 1)
    add("v3", "x3", 4, "view", C, 2)
    add("v1", "x1", 4, "purchase", S2, 3)
    return spark.createDataFrame(rows, EVENT_SCHEMA)


def hand_products(spark):
    return spark.createDataFrame(PRODUCTS, "product_id long, category_code string, brand string")


def test_edges_lift_by_hand_and_complements_a_plain_count_gets_wrong(spark):
    product_edges = item_graph.product_edges(hand_events(spark), window_days=7, max_session_items=50).persist()
    edges = {(r["relation"], int(r["src"]), int(r["dst"])): (r["count"], r["lift"]) for r in product_edges.collect()}
    # 12 users; P bought by u1-u4 and u9 (5); H met by u1-u3, u9 (4); C by u1-u8 and v3 (9).
    # P -> H: u1-u3 within 7 days (u9's view is on day 11): 3 * 12 / (5 * 4).
    assert edges[("bought_after", P, H)] == (3, pytest.approx(3 * 12 / (5 * 4)))
    assert edges[("bought_after", P, C)] == (4, pytest.approx(4 * 12 / (5 * 9)))
    # co_view: 19 sessions with views (b1-b4, c1-c8, h1-h3, h9, x1-x3; b9 only buys);
    # S1 and S2 share x1-x3: 3 * 19 / (3 * 3).
    assert edges[("co_view", S1, S2)] == (3, pytest.approx(3 * 19 / (3 * 3)))
    assert edges[("viewed_next", S1, S2)][0] == 3 and ("viewed_next", S2, S1) not in edges
    # co_purchase: 6 users bought; P by 5 of them, C by u1 alone, who also bought P.
    assert edges[("co_purchase", P, C)] == (1, pytest.approx(1 * 6 / (5 * 1)))
    assert ("co_purchase", P, S2) not in edges  # nobody bought both

    pairs = item_graph.candidates(product_edges, hand_products(spark), None)
    top = {(r["method"], r["product_id"], r["rank"]): r["related_product_id"]
           for r in item_graph.top_related(item_graph.method_scores(pairs, min_count=2), k=5).collect()}
    assert top[("bought_after_count", P, 1)] == C   # the popular cable: more buyers met it
    assert top[("bought_after_lift", P, 1)] == H    # lift corrects for the cable's reach
    assert top[("co_view_lift", S1, 1)] == S2
    assert ("co_view_lift", S1, 2) not in top      # C is not a phone; the pair needs 2 sessions anyway
    product_edges.unpersist()


def test_taxonomy_edges(spark):
    rows = {tuple(r[c] for c in ("src_kind", "src", "dst_kind", "dst", "relation"))
            for r in item_graph.taxonomy_edges(hand_products(spark).union(
                spark.createDataFrame([(9, None, None)], "product_id long, category_code string, brand string")))
            .collect()}
    assert ("product", "2", "category", "electronics.audio.headphone", "in_category") in rows
    assert ("category", "electronics.audio.headphone", "category", "electronics.audio", "subcategory_of") in rows
    assert ("category", "electronics.audio", "category", "electronics", "subcategory_of") in rows
    assert ("product", "2", "brand", "sony", "has_brand") in rows
    assert not any(r[1] == "9" for r in rows)
    assert len([r for r in rows if r[4] == "subcategory_of"]) == 3  # each parent link once (smartphone, headphone, audio)


def test_planted_pair_metrics_by_hand(spark, monkeypatch):
    top = spark.createDataFrame(
        [("complement", "m", 1, 10, 1), ("complement", "m", 1, 11, 2), ("complement", "m", 2, 12, 1),
         ("complement", "m", 2, 20, 2), ("complement", "m", 4, 40, 1)],
        "relation string, method string, product_id long, related_product_id long, rank int")
    truth = spark.createDataFrame([("complement", 1, 11), ("complement", 2, 20), ("complement", 3, 30),
                                   ("complement", 4, 41)],
                                  "relation string, product_id long, related_product_id long")
    queries = spark.createDataFrame([("complement", 1), ("complement", 2), ("complement", 3)],
                                    "relation string, product_id long")
    monkeypatch.setattr(item_graph, "METHODS", {("complement", "m"): "", ("substitute", "m"): ""})
    metrics = item_graph.planted_pair_metrics(top, truth, queries, k=2)
    # Products 1 and 2 find theirs at rank 2, product 3 has no list; product 4 was not asked about.
    assert metrics[("complement", "m")] == {"precision@1": 0.0, "precision@2": pytest.approx(2 / 6),
                                            "recall@2": pytest.approx(2 / 3), "mrr@2": pytest.approx(1 / 3),
                                            "queries": 3.0}
    assert metrics[("substitute", "m")]["queries"] == 0.0


@pytest.mark.e2e
def test_graph_job_writes_the_graph_and_measures_it_against_the_planted_pairs(spark, make_config, tmp_path):
    from ecomlake.jobs import graph

    config = make_config("graph.communities=2", "graph.community_max_iter=3", "graph.item2vec_min_count=1",
                         "graph.item2vec_max_iter=1")
    root = config["lake_root"]
    lake.overwrite_table(hand_events(spark), root, tables.SILVER_EVENTS)
    lake.overwrite_table(hand_products(spark), root, tables.BRONZE_PRODUCTS)
    planted = tmp_path / "raw" / "_ground_truth"
    planted.mkdir(parents=True)
    (planted / "generator.json").write_text(json.dumps({"item_relations": {
        "category_transitions": {"electronics.smartphone": "electronics.audio.headphone"}}}))
    spark.createDataFrame([(P, H, "complement"), (S1, S2, "substitute"), (S2, S1, "substitute")],
                          "product_id long, related_product_id long, relation string") \
        .write.parquet(str(planted / "item_relations"))

    out = graph.run(spark, config, "2019-10-20")
    assert out["metrics"]["pairs"]["complement:bought_after_lift"]["precision@1"] == 1.0
    assert out["metrics"]["pairs"]["complement:bought_after_count"]["precision@1"] == 0.0
    assert out["metrics"]["pairs"]["substitute:co_view_lift"]["precision@1"] == 1.0
    relations = {(r["product_id"], r["relation"], r["rank"]): r for r in
                 lake.read_table(spark, root, tables.GOLD_ITEM_RELATIONS).collect()}
    assert relations[(P, "complement", 1)]["related_product_id"] == H
    assert relations[(P, "complement", 1)]["bought_after"] == 3
    assert relations[(S1, "substitute", 1)]["related_product_id"] == S2
    assert relations[(S1, "substitute", 1)]["co_purchases"] == 0
    edges = lake.read_table(spark, root, tables.GOLD_ITEM_EDGES)
    kinds = {r["relation"] for r in edges.select("relation").distinct().collect()}
    assert kinds == {"co_view", "co_purchase", "viewed_next", "bought_after", "in_category", "subcategory_of",
                     "has_brand", "in_community"}
    runs = lake.read_table(spark, root, tables.GOLD_MODEL_RUNS).where("task = 'item_complements'")
    assert runs.count() == 3
    before = edges.count()
    graph.run(spark, config, "2019-10-20")  # a re-run replaces its partition
    assert lake.read_table(spark, root, tables.GOLD_ITEM_EDGES).count() == before
    assert lake.read_table(spark, root, tables.GOLD_MODEL_RUNS).where("task = 'item_complements'").count() == 3
    with pytest.raises(ConfigError, match="graph.k"):
        graph.run(spark, make_config("graph.k=0"), "2019-10-20")

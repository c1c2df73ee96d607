"""Review aspects and service triage: the hand-labelled test set, the rules by hand, the metrics by
hand, and the intents job (and its route mode) on planted reviews."""
import csv

import numpy as np
import pytest
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.models import aspects

MESSAGE_SCHEMA = "message_id long, title string, body string, rating int, recommended int"


def test_the_hand_labelled_set_is_the_documented_random_sample_with_valid_labels():
    import pyarrow.parquet as pq

    from ecomlake.datasets import CLOTHING_REVIEWS

    rows = aspects.labels()
    assert len(rows) == 420 and len({r["review_id"] for r in rows}) == 420
    # docs/review_labelling.md: default_rng(20261201), 420 of the reviews that have text.
    text = pq.read_table(str(CLOTHING_REVIEWS.locate()), columns=["Review Text"]).column(0).to_pylist()
    with_text = np.array([i for i, t in enumerate(text) if t and t.strip()])
    sample = np.random.default_rng(20261201).choice(with_text, size=420, replace=False)
    assert sorted(r["review_id"] for r in rows) == sorted(sample.tolist())
    for r in rows:
        assert all(r[a] in (None, *aspects.SENTIMENTS) for a in aspects.ASPECTS)
        assert r["action"] in aspects.ACTIONS
        assert r["fit_direction"] in (None, *aspects.FIT_DIRECTIONS)
        assert r["fit_direction"] is None or r["fit_size"] is not None
    counts = {a: sum(r["action"] == a for r in rows) for a in aspects.ACTIONS}
    assert counts == {"none": 57, "sizing_help": 120, "quality_complaint": 33, "return_follow_up": 30,
                      "share_praise": 180}


PRAISE = ("Gorgeous colour and so comfortable. I get compliments every time I wear it and it is true to size. "
          "Worth every penny. I wore it to a wedding and then to work with a blazer and flats and it worked for "
          "both occasions beautifully, so I bought a second one in black.")


def test_keyword_rules_by_hand(spark):
    messages = spark.createDataFrame([
        (1, "Runs small", "I had to size up. The fabric is soft and lovely.", 4, 1),
        (2, "Fell apart", "The seams ripped after one wash. Poor quality for the price, returning it.", 1, 0),
        (3, "Love it", PRAISE, 5, 1),
        (4, None, "Too big in the shoulders and boxy, I will exchange it for a smaller size.", 3, 1),
        (5, "Not for me", "The colour was not as pictured and it looked frumpy on me.", 2, 0),
        (6, None, "It is fine. The fabric is linen.", 4, 1),
        (7, None, "Runs large, I sized down", None, None),   # a routed message: no rating
        (8, None, "Not too short and not itchy at all. Love it, so comfortable.", 5, 1),
        (9, None, "I get compliments every time, the colour is gorgeous and so comfortable!", None, None),
        (10, None, "Lovely colour, so comfortable.", None, None),   # no rating: two cues are not enough
        (11, None, "The seams ripped after one wash, poor quality.", None, None),
        (12, None, "Not long enough for me, I'm tall.", 3, 1),
        (13, None, "Paid $120 for this, it is lovely.", 4, 1),
    ], MESSAGE_SCHEMA).select("message_id", aspects.message_text("title", "body").alias("text"),
                              "rating", "recommended")
    got = {r.message_id: r.asDict() for r in aspects.rule_labels(messages).collect()}
    expected = {  # fit, fabric, colour, look, price, comfort, fit direction, action
        1: ("negative", "positive", None, "positive", None, "positive", "small", "sizing_help"),
        2: (None, "negative", None, None, "negative", None, None, "quality_complaint"),
        3: ("positive", None, "positive", "positive", "positive", "positive", "true", "share_praise"),
        4: ("negative", None, None, None, None, None, "large", "sizing_help"),
        5: (None, None, "negative", "negative", None, None, None, "return_follow_up"),
        6: (None, "positive", None, None, None, None, None, "none"),   # no cue: the 4-star rating
        7: ("negative", None, None, None, None, None, "large", "sizing_help"),  # no rating needed
        8: ("positive", None, None, None, None, "positive", None, "share_praise"),  # negated complaints
        9: (None, None, "positive", "positive", None, "positive", None, "share_praise"),
        10: (None, None, "positive", "positive", None, "positive", None, "none"),
        11: (None, "negative", None, None, None, None, None, "quality_complaint"),   # no rating: the words
        12: ("negative", None, None, None, None, None, "small", "sizing_help"),
        13: (None, None, None, "positive", "positive", None, None, "none"),
    }
    for message_id, values in expected.items():
        row = got[message_id]
        assert tuple(row[c] for c in (*aspects.ASPECTS, "fit_direction", "action")) == values, message_id


def test_zero_shot_similarity_and_action_softmax_by_hand(spark):
    names = ["aspect:fit_size", "aspect:fit_size", *[f"action:{a}" for a in aspects.ACTIONS]]
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0], [1, 0, 0], [0, 1, 0], [0, 0, -1]])
    df = spark.createDataFrame([(1, [0.6, 0.8, 0.0]), (2, [0.0, 0.0, 1.0])], "message_id long, embedding array<float>")
    got = {r.message_id: r for r in aspects.zero_shot_action(aspects.zero_shot_scores(df, names, vectors)).collect()}
    assert got[1].zs_aspect_fit_size == pytest.approx(0.8)          # the better of 0.6 and 0.8
    assert got[2].zs_aspect_fit_size == pytest.approx(0.0)
    assert got[1].zs_action == "sizing_help" and got[2].zs_action == "none"
    # message 1: similarities none 0, sizing 1, quality .6, return .8, praise 0; temperature 0.05
    e = np.exp((np.array([0, 1, 0.6, 0.8, 0]) - 1) / 0.05)
    assert got[1].zs_action_confidence == pytest.approx(1 / e.sum(), rel=1e-5)


def test_detection_and_action_metrics_by_hand():
    blank = {f"{p}{a}": None for p in ("true_", "", "ml_") for a in aspects.ASPECTS}
    rows = [blank | {"true_fit_size": "negative", "fit_size": "positive", "true_action": "none", "action": "none"},
            blank | {"fit_size": "negative", "true_action": "none", "action": "sizing_help"},
            blank | {"true_fit_size": "positive", "true_action": "sizing_help", "action": "sizing_help"},
            blank | {"true_colour": "positive", "colour": "mixed", "true_action": "share_praise", "action": "none"}]
    detection = aspects.detection_metrics(rows, {"rules": ""})["rules"]
    # fit: tp 1 (row 1), predicted 2, true 2 -> P .5 R .5; colour: tp 1 of 1 -> F1 1; other aspects: 0
    assert detection["per_aspect"]["fit_size"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2.0}
    assert detection["per_aspect"]["colour"]["f1"] == 1.0
    assert detection["macro_f1"] == pytest.approx((0.5 + 1.0) / 6)
    metrics = aspects.action_metrics(rows, "action", classes=("none", "sizing_help", "share_praise"))
    # none: tp 1, predicted 2, true 2 -> F1 .5; sizing: tp 1, predicted 2, true 1 -> 2/3; praise: 0
    assert metrics["accuracy"] == 0.5
    assert metrics["per_class"]["sizing_help"]["f1"] == pytest.approx(2 / 3)
    assert metrics["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)


LONG_PRAISE = ("gorgeous colour and so comfortable. i get compliments every time i wear it to work or out to dinner. "
               "worth every penny: i already ordered a second one in another colour because it is the best "
               "dress i have bought this year.")
TEMPLATES = [  # (text, rating, recommended); 0 is planted in half the dresses
    ("runs small, i had to size up. the fabric is soft.", 4, 1),
    ("poor quality, the seams ripped after one wash, returning it.", 1, 0),
    (LONG_PRAISE, 5, 1),
    ("too big and boxy, i will exchange it for a smaller size.", 3, 1),
    ("overpriced for what it is, wait for a sale.", 3, 0),
    ("the colour was not as pictured and it looked frumpy on me.", 2, 0),
    ("itchy and uncomfortable to wear.", 2, 0),
    ("nice basic top.", 4, 1),
]


def planted_messages(n=120):
    """Even ids are dresses, odd ones tops; every fourth review (all dresses) says it runs small."""
    rows = []
    for i in range(n):
        template = 0 if i % 4 == 0 else 1 + (i // 2) % 7
        text, rating, recommended = TEMPLATES[template]
        rows.append((10_000_000 + i, 900_000 + i % 5, 30, f"Review {i}", text, rating, recommended, 0, "General",
                     "General", "Dresses" if i % 2 == 0 else "Tops"))
    return rows


def labelled_reviews(n=10):
    """The first n hand-labelled reviews as the real file has them (ingest's columns)."""
    import pyarrow.parquet as pq

    from ecomlake.datasets import CLOTHING_COLUMNS, CLOTHING_REVIEWS

    ids = sorted(r["review_id"] for r in aspects.labels())[:n]
    frame = pq.read_table(str(CLOTHING_REVIEWS.locate())).to_pandas().rename(columns=CLOTHING_COLUMNS)
    return [(i, int(r.item_id), int(r.age), r.title, r.review_text, int(r.rating), int(r.recommended),
             int(r.positive_feedback), r.division, r.department, r.class_name) for i, r in frame.loc[ids].iterrows()]


@pytest.mark.e2e
def test_intents_job_triages_reviews_summarises_aspects_and_routes_new_messages(spark, make_config, tmp_path, capsys):
    from ecomlake.jobs import intents

    config = make_config("intents.min_mentions=8", "intents.max_iter=10")
    root = config["lake_root"]
    reviews = spark.createDataFrame(planted_messages() + labelled_reviews(), "review_id long, item_id long, "
                                    "age int, title string, review_text string, rating int, recommended int, "
                                    "positive_feedback int, division string, department string, class_name string")
    lake.overwrite_table(reviews, root, tables.BRONZE_CLOTHING_REVIEWS)
    # Their embeddings are already cached (as `sentiment` leaves them): one unit vector per text, so the
    # job embeds nothing (MiniLM itself is tested in test_sentiment.py; the route below runs it).
    rows, rng = planted_messages() + labelled_reviews(), np.random.default_rng(5)
    bodies = sorted({r[4] for r in rows})
    vectors = dict(zip(bodies, rng.normal(size=(len(bodies), 384))))   # one direction per template

    def unit(v):
        return [float(x) for x in v / np.linalg.norm(v)]

    cached = spark.createDataFrame([(r[0], unit(vectors[r[4]] + 0.1 * rng.normal(size=384)),
                                     ". ".join(part for part in (r[3], r[4]) if part)) for r in rows],
                                   "review_id long, embedding array<float>, text string")
    lake.overwrite_table(cached.select("review_id", F.sha2("text", 256).alias("text_sha"), "embedding"), root,
                         tables.SILVER_REVIEW_EMBEDDINGS)
    out = intents.run(spark, config)
    # The 10 hand-labelled reviews are measured against (the 6 not in the development part), never trained on.
    assert (out["messages"], out["train_rows"], out["test_rows"]) == (130, 120, 6)
    assert lake.read_table(spark, root, tables.SILVER_REVIEW_EMBEDDINGS).count() == 130
    runs_ = lake.read_table(spark, root, tables.GOLD_MODEL_RUNS)
    assert sorted((r.task, r.model) for r in runs_.collect()) == [
        ("review_aspects", "keyword_rules"), ("review_aspects", "weak_lr"), ("review_aspects", "zero_shot_minilm"),
        ("service_triage", "keyword_rules"), ("service_triage", "majority"), ("service_triage", "weak_lr"),
        ("service_triage", "zero_shot_minilm")]
    assert runs_.where("model = 'weak_lr' AND task = 'service_triage'").first().metrics["n"] == 6

    queue = lake.read_table(spark, root, tables.GOLD_SERVICE_QUEUE)
    assert queue.count() == queue.select("review_id").distinct().count() == 130
    assert queue.where(~F.col("action").isin(*aspects.ACTIONS)).count() == 0
    assert queue.where(F.col("confidence").isNull()).count() == 0
    assert queue.where((F.col("confidence") < 0.4) != (F.col("queue") == "human")).count() == 0
    # The queue's actions are the rules' (hand-derived from the priority chain for the planted templates).
    rule_action = {r.review_id: r.action for r in queue.where("review_id >= 10000000").collect()}
    assert rule_action[10_000_001] == "quality_complaint"            # template 1
    assert rule_action[10_000_003] == "share_praise"                 # template 2 (long, 5 stars)
    assert rule_action[10_000_005] == "sizing_help"                  # template 3 (3 stars, too big)
    assert rule_action[10_000_000] == "sizing_help"                  # template 0: runs small

    summary = {(r.class_name, r.aspect): r for r in lake.read_table(spark, root, tables.GOLD_ASPECT_SUMMARY)
               .where("level = 'class' AND department = 'General'").collect()}
    dresses = summary[("Dresses", "fit_size")]
    # 60 dresses: 30 say "runs small"; 4 (ids 2 mod 4 with (id // 2) % 7 == 2) "too big and boxy".
    assert (dresses.reviews, dresses.mentions) == (60, 34)
    assert dresses.small_share == pytest.approx(30 / 34) and dresses.large_share == pytest.approx(4 / 34)
    assert dresses.suggestion == ("General / Dresses runs small: 88% of 34 reviews on fit say so; "
                                  "suggest sizing up in the size guide")
    # 60 tops: 9 "too big and boxy" ((id // 2) % 7 == 2), every one saying large.
    assert summary[("Tops", "fit_size")].suggestion == ("General / Tops runs large: 100% of 9 reviews on fit say so; "
                                                        "suggest sizing down in the size guide")
    # Item 900000 (ids 0 mod 5): 6 "runs small" (ids 0 mod 20) and 2 "too big" (ids 5 and 75).
    item = lake.read_table(spark, root, tables.GOLD_ASPECT_SUMMARY).where(
        "level = 'item' AND item_id = 900000 AND aspect = 'fit_size'").first()
    assert item.suggestion == "item 900000 runs small: 75% of 8 reviews on fit say so; suggest sizing up in the size guide"
    # The report's section: the biggest class-level suggestion first, the heat maps drawn.
    from ecomlake.report import data as report_data
    from ecomlake.report import render

    content = report_data.aspects(spark, root, None)
    assert content["suggestions"][0] == dresses.suggestion
    assert content["queue"]["reviews"].sum() == 130
    section = render.Section("aspects", "Review aspects and service triage", suggestions=content["suggestions"])
    render.aspects(section, content)
    assert section.images == 1

    # Route: new messages from a file; the same file again replaces its rows.
    messages = tmp_path / "messages.csv"
    with open(messages, "w", newline="") as handle:
        csv.writer(handle).writerows([["message_id", "text", "rating"],
                                      ["m1", "The seams ripped after one wash, poor quality.", "1"],
                                      ["m2", "runs small, i had to size up", ""], ["m3", "nice basic top", "4"],
                                      ["m4", "  ", "3"]])
    for _ in range(2):
        routed = intents.route(spark, config, str(messages))
    assert (routed["routed"], routed["skipped"]) == (3, 1)   # m4 has no text
    assert [(r.message_id, r.reason, r.source) for r in
            lake.read_table(spark, root, tables.QUARANTINE_ROUTED_MESSAGES).collect()] == [("m4", "missing_text", str(messages))]
    table = {r.message_id: r for r in lake.read_table(spark, root, tables.GOLD_ROUTED_MESSAGES).collect()}
    assert sorted(table) == ["m1", "m2", "m3"] and table["m1"].action == "quality_complaint"
    assert "fabric_quality:negative" in table["m1"].aspects

    bad = tmp_path / "bad.csv"
    bad.write_text("message_id,body\n1,hello\n")
    assert intents.main(["--route", "--input", str(bad), "--lake", root, "--conf", "spark.master=local[2]"]) == 2
    err = capsys.readouterr().err
    assert f"--input {bad} is missing column(s) text" in err and "Traceback" not in err

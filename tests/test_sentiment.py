import numpy as np
import pytest
from pyspark.sql import functions as F

from ecomlake import evaluation, lake, sentence_embeddings, tables
from ecomlake.deep import text
from ecomlake.jobs import sentiment as sentiment_job

# First 4 numbers of each sentence's embedding from sentence-transformers 5.x with the same
# all-MiniLM-L6-v2 weights (recorded once; our numpy and TensorFlow passes must reproduce them).
REFERENCE = {
    "This dress is lovely and fits perfectly.": [-0.02418, 0.06665, 0.07562, -0.0023],
    "I love this beautiful dress, great fit!": [-0.05345, 0.07161, 0.02999, -0.00795],
    "The fabric ripped after one wash, terrible quality.": [-0.02272, 0.0537, 0.07815, 0.03139],
    "Stock markets fell sharply today.": [0.04005, -0.02606, 0.08235, 0.05636],
}


@pytest.mark.parametrize("engine", ["numpy", "tensorflow"])
def test_minilm_matches_sentence_transformers(engine):
    sentences = list(REFERENCE)
    embeddings = sentence_embeddings.embed_texts(sentences, engine=engine)
    assert embeddings.shape == (4, 384)
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx([1, 1, 1, 1], abs=1e-5)
    for got, expected in zip(embeddings, REFERENCE.values()):
        assert got[:4] == pytest.approx(expected, abs=1e-4)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.8 > similarity[0, 2] > similarity[0, 3]   # paraphrase > same topic > unrelated


def test_both_engines_give_the_same_embeddings_whatever_the_batching():
    # Lengths from 1 to ~120 tokens, more texts than a batch: several padded shapes, a partial batch.
    texts = [" ".join(["word"] * n) + f" number {n}" for n in (1, 15, 60, 118)] * 3 + ["", "Fits!"]
    numpy_pass = sentence_embeddings.embed_texts(texts, engine="numpy")
    tensorflow_pass = sentence_embeddings.embed_texts(texts, engine="tensorflow", batch_size=8)
    assert numpy_pass.shape == tensorflow_pass.shape == (14, 384)
    assert np.abs(numpy_pass - tensorflow_pass).max() < 1e-5
    # Each text's embedding does not depend on the texts it is batched with.
    alone = sentence_embeddings.embed_texts(texts[3:4], engine="numpy")
    assert np.abs(alone[0] - numpy_pass[3]).max() < 1e-5


def test_vocabulary_and_token_ids_by_hand(spark):
    train = spark.createDataFrame([(1, "Love love the fit"), (2, "the fit is poor"), (3, "LOVE it")],
                                  "review_id long, text string")
    vocab = {r.token: r.id for r in text.vocabulary(train, size=3).collect()}
    # counts: love 3, fit 2, the 2, (is, poor, it: 1 -> below min_count); ties alphabetical
    assert vocab == {"love": 2, "fit": 3, "the": 4}
    texts = spark.createDataFrame([(7, "the fit, I LOVE"), (8, ""), (9, "love " * 10)], "review_id long, text string")
    encoded = {r.review_id: [r[text.token_name(i)] for i in range(5)]
               for r in text.encode(texts, text.vocabulary(train, size=3), max_len=5).collect()}
    assert encoded == {7: [4, 3, 1, 2, 0], 8: [0, 0, 0, 0, 0], 9: [2, 2, 2, 2, 2]}


def test_classification_metrics_by_hand(spark):
    df = spark.createDataFrame([(1.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], "y double, p double")
    m = evaluation.classification_metrics(df, "y", "p")
    # class 1: tp 3, true 4, predicted 4 -> F1 0.75; class 0: tp 1, true 2, predicted 2 -> 0.5
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx(0.625)
    assert m["majority_accuracy"] == pytest.approx(4 / 6)
    assert m["majority_macro_f1"] == pytest.approx((2 * 4 / (4 + 6)) / 2)


def planted_reviews(n=240):
    """Recommended reviews praise, the others complain; a tenth of each get the other side's words."""
    good = ["love the fit and the soft fabric", "perfect dress, flattering and comfortable",
            "beautiful colour, great quality, fits true to size", "so comfortable and cute, love it"]
    bad = ["poor quality, the fabric ripped", "not flattering at all, returned it",
           "runs small and looks cheap", "itchy and unflattering, disappointed"]
    rows = []
    for i in range(n):
        recommended = int(i % 3 != 0)
        words = (good if recommended else bad)[i % 4]
        if i % 10 == 0:
            words = (bad if recommended else good)[i % 4]
        rows.append((i, 1000 + i % 7, 20 + i % 50, f"Title {i % 5}", words, 5 if recommended else 2, recommended,
                     0, "General", "Dresses" if i % 2 else "Tops", "Knits"))
    return rows


@pytest.mark.e2e
def test_sentiment_job_end_to_end_beats_the_trivial_baselines(spark, make_config):
    config = make_config("sentiment.embedding_train_rows=60", "sentiment.vocabulary_size=500")
    reviews = spark.createDataFrame(planted_reviews(), "review_id long, item_id long, age int, title string, "
                                    "review_text string, rating int, recommended int, positive_feedback int, "
                                    "division string, department string, class_name string")
    lake.overwrite_table(reviews, config["lake_root"], tables.BRONZE_CLOTHING_REVIEWS)
    out = sentiment_job.run(spark, config, embeddings=True)
    metrics = {(r["task"], r["model"]): r["metrics"] for r in out["records"]}
    flag, majority = metrics[("review_recommended", "tfidf_lr")], metrics[("review_recommended", "majority")]
    assert flag["auc"] > 0.85 and flag["accuracy"] > majority["accuracy"] and flag["macro_f1"] > majority["macro_f1"]
    assert metrics[("review_recommended", "minilm_lr")]["auc"] > 0.75
    # Stacked on the same 60 rows: the planted words carry it, as they carry TF-IDF on 60 rows.
    assert metrics[("review_recommended", "stacked_lr")]["auc"] > 0.85
    assert metrics[("review_recommended", "tfidf_lr_same_rows")]["auc"] > 0.5
    assert metrics[("review_rating", "tfidf_lr")]["macro_f1"] > metrics[("review_rating", "majority")]["macro_f1"]
    details = next(r["details"] for r in out["records"] if r["model"] == "tfidf_lr" and r["task"] == "review_recommended")
    against = [t for t, _ in details["top_terms"]["against"]]
    assert {"poor", "ripped", "cheap", "itchy", "disappointed", "small"} & set(against[:8])
    gold = lake.read_table(spark, config["lake_root"], tables.GOLD_REVIEW_SENTIMENT)
    counts = {r.model: r["count"] for r in gold.groupBy("model").count().collect()}
    assert counts["tfidf_lr"] == 240 and counts["minilm_lr"] == counts["stacked_lr"] == out["test_rows"]
    # Idempotent: a second run replaces its rows.
    sentiment_job.run(spark, config, embeddings=False)
    assert lake.read_table(spark, config["lake_root"], tables.GOLD_REVIEW_SENTIMENT).where("model = 'tfidf_lr'").count() == 240


@pytest.mark.horovod
@pytest.mark.slow  # the Horovod path runs in CI through test_deep and test_images; `make test-slow` runs this
def test_review_text_model_through_petastorm_and_horovod(spark, make_config):
    from ecomlake.jobs import train_deep

    config = make_config("sentiment.vocabulary_size=200")
    reviews = spark.createDataFrame(planted_reviews(400), "review_id long, item_id long, age int, title string, "
                                    "review_text string, rating int, recommended int, positive_feedback int, "
                                    "division string, department string, class_name string")
    lake.overwrite_table(reviews, config["lake_root"], tables.BRONZE_CLOTHING_REVIEWS)
    out = train_deep.run(spark, config, "review_text", None, num_proc=2, launcher="horovodrun", epochs=4,
                         batch_size=16, learning_rate=0.01)
    record = out["record"]
    assert record["details"]["weights_identical_on_all_ranks"]
    assert record["metrics"]["auc"] > 0.8
    history = record["details"]["history"]["loss"]
    assert history[-1] < history[0]
    # The model is built for the words found (about 50 here), not for the configured maximum (200).
    assert out["spec"]["vocabulary_size"] == record["details"]["vocabulary_size"] < 100
    gold = lake.read_table(spark, config["lake_root"], tables.GOLD_REVIEW_SENTIMENT).where("model = 'review_text'")
    assert gold.count() == 400 and gold.where("split = 'test'").count() > 40

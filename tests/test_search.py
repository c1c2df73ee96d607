"""Product search on hand-built data: the search-log format and its ingest, query understanding,
BM25, the position propensities, the propensity-weighted click groups, click rates, graded nDCG and
a ranker that must put the relevant product first; then the whole job on a generated log, measured
against the planted relevance and the planted position bias."""
import json
import math

import pytest

from ecomlake import search_log
from ecomlake.models import ranker, search

IMPRESSIONS = "search_id string, query string, position int, product_id long, clicked int"


def _lines(spark, *lines, source="file:/x/2019-10-01.csv"):
    from pyspark.sql import functions as F

    return (spark.createDataFrame([(line,) for line in lines], "value string")
            .withColumn("_source_file", F.lit(source)).withColumn("_batch_id", F.lit("b"))
            .withColumn("_ingested_at", F.current_timestamp()))


def test_search_log_lines_are_typed_or_rejected_with_their_reason(spark):
    good = "2019-10-01 08:15:02 UTC,s1,512000141,Cheap Samsung Phone,1,1000012,1,1"
    bad = {
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,1,1000012": "wrong_column_count",
        "2019-10-32 08:00:00 UTC,s1,512000141,phone,1,1000012,0,0": "unparseable_search_time",
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,first,1000012,0,0": "unparseable_position",
        "2019-10-01 08:15:02 UTC,s1,512000141,,2,1000012,0,0": "missing_query",
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,0,1000012,0,0": "bad_position",
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,2,1000012,2,0": "bad_clicked",
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,2,1000012,0,1": "purchase_without_click",
        '2019-10-01 08:15:02 UTC,s2,512000141,"phone, red",3,1000013,0,0': None,   # a quoted comma
    }
    classified = search_log.classify_lines(_lines(spark, good, *bad))
    reasons = {r.raw_line: r._reject_reason for r in classified.collect()}
    assert reasons == {good: None, **bad}
    [row] = search_log.bronze_rows(classified).where("search_id = 's1'").collect()
    assert (row.query, row.position, row.product_id, row.clicked, row.purchased, str(row.search_date)) == (
        "cheap samsung phone", 1, 1000012, 1, 1, "2019-10-01")
    rejected = {r.reason: r for r in search_log.rejected_rows(classified).collect()}
    assert rejected["unparseable_position"].position is None   # the raw text stays in raw_line
    assert rejected["unparseable_search_time"].search_date is None and len(rejected) == 7


def test_ingest_search_log_appends_files_reconciles_and_sets_a_bad_file_aside(spark, make_config, tmp_path):
    from ecomlake import lake, tables
    from ecomlake.jobs import ingest

    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "2019-10-01.csv").write_text("\n".join([
        search_log.HEADER,
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,1,1000012,1,0",
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,2,1000013,0,0",
        "2019-10-01 08:15:02 UTC,s1,512000141,phone,first,1000014,0,0",
        "2019-10-01 09:00:00 UTC,s9,512000999,tv,1,1000015,0,0"]) + "\n")
    (folder / "2019-10-02.csv").write_text("event_time,event_type\n2019-10-02 00:00:00 UTC,view\n")  # not a search log
    config = make_config()
    result = ingest.run(spark, config, "search_log", str(folder))
    assert (result["input_lines"], result["bronze_rows"], result["quarantined_rows"], result["quarantined_files"]) == (
        4, 3, 1, 1)
    root = config["lake_root"]
    bronze = lake.read_table(spark, root, tables.BRONZE_SEARCH_IMPRESSIONS)
    assert sorted(r.product_id for r in bronze.collect()) == [1000012, 1000013, 1000015]
    assert lake.partition_columns(spark, tables.BRONZE_SEARCH_IMPRESSIONS.path(root)) == ["search_date"]
    [q] = lake.read_table(spark, root, tables.QUARANTINE_SEARCH_IMPRESSIONS).collect()
    assert q.reason == "unparseable_position" and q.raw_line.endswith("first,1000014,0,0")
    [f] = lake.read_table(spark, root, tables.QUARANTINE_FILES).collect()
    assert f.source_file.endswith("2019-10-02.csv") and f.source == "search_log"
    # Nothing new: a re-run adds nothing.
    assert ingest.run(spark, config, "search_log", str(folder))["input_lines"] == 0
    assert lake.read_table(spark, root, tables.BRONZE_SEARCH_IMPRESSIONS).count() == 3
    logged = {r.source_file.rsplit("/", 1)[-1]: (r.input_lines, r.bronze_rows, r.quarantined_rows, r.status)
              for r in lake.read_table(spark, root, tables.BRONZE_INGEST_LOG).collect()}
    assert logged["2019-10-01.csv"][:3] == (4, 3, 1) and logged["2019-10-02.csv"][3] == "quarantined"

    # Erasure reaches the new source: the user's rows and quarantined lines go, the other user's stay.
    from ecomlake.jobs import forget

    ids = tmp_path / "forget.txt"
    ids.write_text("user_id\n512000141\n")
    erased = forget.run(spark, config, str(ids))["rows_deleted"]
    assert (erased[tables.BRONZE_SEARCH_IMPRESSIONS.id], erased[tables.QUARANTINE_SEARCH_IMPRESSIONS.id]) == (2, 1)
    assert [r.user_id for r in lake.read_table(spark, root, tables.BRONZE_SEARCH_IMPRESSIONS).collect()] == [512000999]


DOCS = "product_id long, category_code string, brand string, base_price double"


def _documents(spark):
    return search.product_documents(spark.createDataFrame([
        (1, "electronics.smartphone", "samsung", 200.0),
        (2, "electronics.smartphone", "apple", 400.0),
        (3, "electronics.video.tv", "samsung", 450.0),
        (4, "apparel.shoes", None, 70.0)], DOCS))


def test_documents_queries_and_bm25_by_hand(spark):
    docs = {r.product_id: r for r in _documents(spark).collect()}
    assert docs[1].text == "samsung electronics smartphone" and docs[4].text == "apparel shoes"
    assert sorted(docs[3].terms) == ["electronics", "samsung", "tv", "video"]
    # smartphones: prices 200 and 400, median (percentile_approx: the lower middle) 200
    assert docs[2].price_position == pytest.approx(math.log(2.0)) and docs[1].price_position == 0.0

    queries = search.understood_queries(spark.createDataFrame(
        [("cheap samsung phone",), ("premium apple smartphone",), ("couch",)], "query string"), _documents(spark))
    understood = {r.query: r for r in queries.collect()}
    assert (understood["cheap samsung phone"].query_brand, understood["cheap samsung phone"].query_price) == ("samsung", -1)
    assert (understood["premium apple smartphone"].query_brand, understood["couch"].query_brand) == ("apple", None)
    assert understood["couch"].query_price == 0

    scores = {(r.query, r.product_id): r.bm25 for r in search.bm25(queries, _documents(spark)).collect()}
    # 4 documents of lengths 3, 3, 4, 2 (avg 3); "samsung" in 2 -> idf ln(1 + 2.5/2.5) = ln 2
    idf = lambda df: math.log(1 + (4 - df + 0.5) / (df + 0.5))  # noqa: E731
    term = lambda df, length: idf(df) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * length / 3))  # noqa: E731
    assert scores[("cheap samsung phone", 1)] == pytest.approx(term(2, 3))
    assert scores[("cheap samsung phone", 3)] == pytest.approx(term(2, 4))          # longer: less
    assert scores[("premium apple smartphone", 2)] == pytest.approx(term(1, 3) + term(2, 3))
    assert ("couch", 4) not in scores and ("cheap samsung phone", 2) not in scores


def test_propensities_by_intervention_harvesting(spark):
    rows = []
    # (q, 10) at position 1: 100 shown, 40 clicked; at position 2: 100 shown, 20 clicked -> ratio 0.5.
    # (q, 11) at 1: 50/50 shown 10 clicked, at 3: 50 shown 3 clicked -> ratio 0.3 (only it has 3).
    for product, position, shown, clicked in [(10, 1, 100, 40), (10, 2, 100, 20), (11, 1, 50, 10), (11, 3, 50, 3),
                                              (12, 4, 30, 30)]:   # never at 1: tells nothing
        rows += [("s", "q", position, product, int(i < clicked)) for i in range(shown)]
    impressions = spark.createDataFrame(rows, IMPRESSIONS)
    got = {r.position: r.propensity for r in search.position_propensities(impressions, 4).collect()}
    assert got[1] == 1.0 and got[2] == pytest.approx(0.5) and got[3] == pytest.approx(0.3)
    assert got[4] == pytest.approx(0.3)   # never seen beside position 1: the propensity above it


def test_query_words_in_any_script_and_positions_below_the_estimated_ones(spark):
    from pyspark.sql import functions as F

    queries = spark.createDataFrame([("Phone, red!",), ("  Телефон   Samsung ",), ("?!",)], "q string")
    assert [r[0] for r in queries.select(search.normalised_query(F.col("q"))).collect()] == [
        "phone red", "телефон samsung", ""]
    impressions = spark.createDataFrame([("s", "q", 1, 10, 0), ("s", "q", 12, 11, 0)], IMPRESSIONS)
    propensities = spark.createDataFrame([(1, 1.0), (2, 0.4)], "position int, propensity double")
    got = {r.position: r.propensity for r in search.with_propensity(impressions, propensities).collect()}
    assert got == {1: 1.0, 12: 0.4}   # position 12 was never estimated: the lowest estimate, not 1


def test_click_groups_weight_each_click_by_its_inverse_propensity(spark):
    impressions = spark.createDataFrame([
        ("s1", "q", 1, 10, 1), ("s1", "q", 2, 11, 0), ("s1", "q", 3, 12, 0), ("s1", "q", 4, 13, 1),
        ("s2", "q", 1, 10, 0), ("s2", "q", 2, 11, 0)], IMPRESSIONS)   # s2: no click, no group
    propensities = spark.createDataFrame([(1, 1.0), (2, 0.5), (3, 0.4), (4, 0.25)], "position int, propensity double")
    groups = search.click_groups(impressions, propensities, max_weight=20, seed=1).collect()
    by_group = {}
    for r in groups:
        by_group.setdefault(r.group, {})[r.product_id] = r.label
    # the click at 1: once; the click at 4 (1 / 0.25 = 4): four copies; the other click is left out
    assert sorted(by_group) == ["s1:1:1", "s1:4:1", "s1:4:2", "s1:4:3", "s1:4:4"]
    assert by_group["s1:1:1"] == {10: 1, 11: 0, 12: 0}
    assert by_group["s1:4:3"] == {13: 1, 11: 0, 12: 0}
    raw = search.click_groups(impressions, None, max_weight=20, seed=1).select("group").distinct().count()
    capped = search.click_groups(impressions, propensities, max_weight=2, seed=1).select("group").distinct().count()
    assert (raw, capped) == (2, 3)
    # a weight of 2.5 is 2 or 3 copies, 2.5 on average over many clicks
    many = spark.createDataFrame([(f"s{i}", "q", 2, 10, 1) for i in range(400)], IMPRESSIONS)
    copies = search.click_groups(many, spark.createDataFrame([(2, 0.4)], "position int, propensity double"),
                                 20, seed=1).count()
    assert copies / 400 == pytest.approx(2.5, abs=0.15)


def test_click_rates_are_clicks_over_expected_clicks_and_shrunk(spark):
    impressions = spark.createDataFrame([
        ("s1", "q", 1, 10, 1), ("s1", "q", 2, 11, 1), ("s2", "q", 1, 11, 0), ("s2", "q", 2, 10, 0),
        ("s3", "q", 1, 10, 0), ("s3", "q", 2, 11, 0)], IMPRESSIONS)
    propensities = spark.createDataFrame([(1, 1.0), (2, 0.5)], "position int, propensity double")
    pairs, products = search.click_features(impressions, propensities, prior=2.0, days=1)
    # one click each; expected clicks: product 10 shown at 1, 2, 1 -> 2.5; 11 at 2, 1, 2 -> 2.0;
    # the log's rate 2 clicks / 4.5 expected
    mean = 2 / 4.5
    rates = {r.product_id: r.product_ctr for r in products.collect()}
    assert rates[10] == pytest.approx((1 + 2 * mean) / (2.5 + 2)) and rates[11] == pytest.approx((1 + 2 * mean) / 4)
    [pair] = pairs.where("product_id = 11").collect()
    assert pair.pair_ctr == rates[11] and pair.pair_impressions == pytest.approx(math.log(4))
    raw = {r.product_id: r.product_ctr for r in search.click_features(impressions, None, prior=0.0, days=1)[1].collect()}
    # impressions per day: 3 impressions over 3 days -> log1p(1)
    [per_day] = search.click_features(impressions, None, prior=0.0, days=3)[0].where("product_id = 11").collect()
    assert per_day.pair_impressions == pytest.approx(math.log(2))
    assert raw == {10: pytest.approx(1 / 3), 11: pytest.approx(1 / 3)}   # raw clicks see no difference


def test_graded_ndcg_by_hand(spark):
    ranked = spark.createDataFrame([("q", 1, 1), ("q", 2, 2), ("q", 3, 3)], "query string, product_id long, rank int")
    truth = spark.createDataFrame([("q", 2, 3), ("q", 3, 1), ("q", 4, 2)], "query string, product_id long, relevance int")
    [row] = search.graded_ndcg(ranked, truth, k=3).collect()
    dcg = 7 / math.log2(3) + 1 / math.log2(4)
    ideal = 7 + 3 / math.log2(3) + 1 / math.log2(4)
    assert row.ndcg == pytest.approx(dcg / ideal)
    searches = spark.createDataFrame([("a", "q"), ("b", "q"), ("c", "unknown")], "search_id string, query string")
    assert search.mean_ndcg(search.graded_ndcg(ranked, truth, k=3), searches) == pytest.approx(2 * dcg / ideal / 3)


def test_nearest_products_and_pair_cosine(spark, monkeypatch):
    monkeypatch.setattr(search, "KNN_BLOCK", 2)   # several blocks on each side
    products = spark.createDataFrame([(1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [0.6, 0.8])],
                                     "product_id long, embedding array<float>")
    queries = spark.createDataFrame([("a", [1.0, 0.0]), ("b", [0.0, 1.0]), ("c", [0.8, 0.6])],
                                    "query string, embedding array<float>")
    top = {(r.query, r.product_id): r.minilm_cosine for r in search.nearest_products(queries, products, 2).collect()}
    assert set(top) == {("a", 1), ("a", 3), ("b", 2), ("b", 3), ("c", 1), ("c", 3)}
    assert top[("c", 3)] == pytest.approx(0.96)
    pairs = spark.createDataFrame([("a", 2), ("c", 3), ("z", 1)], "query string, product_id long")
    cos = {(r.query, r.product_id): r.minilm_cosine for r in search.pair_cosine(pairs, queries, products).collect()}
    assert cos[("a", 2)] == pytest.approx(0.0) and cos[("c", 3)] == pytest.approx(0.96)
    assert cos[("z", 1)] is None   # no embedding for the query: missing, for XGBoost too


def test_ranker_on_click_groups_puts_the_relevant_product_first(spark):
    """The clicked product always names the brand asked for; the ranker must rank it first."""
    from pyspark.sql import functions as F

    features = list(search.FEATURES)
    rows = []
    for g in range(60):
        for product in range(4):
            relevant = product == g % 4
            values = {f: 0.0 for f in features} | {"brand_match": float(relevant), "bm25": float((product + g) % 3)}
            rows.append((f"g{g}", f"q{g}", product, int(relevant), *[values[f] for f in features]))
    training = spark.createDataFrame(rows, ["group", "query", "product_id", "label", *features])
    model = ranker.fit(training, features, trees=20, max_depth=3, learning_rate=0.3, min_child_weight=1.0, seed=1,
                       query_columns=("group",))
    top = ranker.rerank(model, training.where(F.col("group").isin("g1", "g2")), features, 1, by="query").collect()
    assert {(r.query, r.product_id) for r in top} == {("q1", 1), ("q2", 2)}


def test_generated_relevance_follows_the_planted_rule(spark):
    from pyspark.sql import functions as F

    from ecomlake import generate as gen

    cases = spark.createDataFrame([
        # intent (category, brand, band), product (category, brand, band, good) -> relevance
        (0, "samsung", "cheap", 0, "samsung", "cheap", True, 3),
        (0, "samsung", "cheap", 0, "samsung", "cheap", False, 2),
        (0, "samsung", None, 0, "apple", "premium", True, 2),
        (0, None, None, 0, None, None, False, 2),
        (0, "samsung", "cheap", 0, None, None, False, 0),
        (0, None, None, 3, "samsung", None, True, 0)],
        "ic int, ib string, ip string, pc int, pb string, pp string, good boolean, expected int")
    got = cases.select("expected", gen.search_relevance(
        F.col("ic"), F.col("ib"), F.col("ip"), F.col("pc"), F.col("pb"), F.col("pp"), F.col("good")).alias("r"))
    assert [(r.expected, r.r) for r in got.collect()] == [(r.expected, r.expected) for r in cases.collect()]
    assert gen.category_word(9) == "sofa" and gen.category_word(2) == "tv"


@pytest.mark.subprocess
def test_search_job_beats_lexical_order_and_finds_the_planted_position_bias(tmp_path):
    """A generated log (3,000 searches): ingest, train, measure; then one query answered (in a
    Spark session of its own: tests/search_e2e.py)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "tests.search_e2e", str(tmp_path)], cwd=repo, capture_output=True,
                         text=True, timeout=900)
    lines = [line for line in run.stdout.splitlines() if line.startswith("SEARCH_E2E ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    out = json.loads(lines[-1][len("SEARCH_E2E "):])
    truth = json.loads((tmp_path / "raw" / "_ground_truth" / "generator.json").read_text())["search"]
    assert out["ingested"]["input_lines"] == truth["lines"] == 30_000
    assert out["quarantined"] == {k: v for k, v in truth["expected_quarantine"].items() if v}

    result = out["result"]
    planted = truth["propensities"]
    # position bias found from 3,000 searches: within 0.08 of the planted 1/k at every position
    assert max(abs(a - b) for a, b in zip(result["propensities"], planted)) < 0.08
    m = {name: v["ndcg@10"] for name, v in result["metrics"].items()}
    assert min(m["ranker_ipw"], m["ranker_raw_clicks"], m["ranker_debiased_features"]) > max(m["bm25"], m["logged"]) + 0.2
    assert m["minilm"] > m["bm25"]   # synonyms: MiniLM finds what BM25 cannot
    # the shop pushes its promoted products (~10 % of the catalogue) into what it shows
    assert result["metrics"]["logged"]["promoted_share@10"] > 0.2
    m_new = {name: v["ndcg@10_new_queries"] for name, v in result["metrics"].items()}
    assert result["metrics"]["bm25"]["new_query_searches"] > 0 and m_new["ranker_ipw"] > m_new["bm25"]
    assert out["served"] == ["ranker_debiased_features"]   # search.serve_model: the one with a model_path

    answered = out["answered"]
    assert answered["query"] == "cheap samsung phone" and len(answered["results"]) == 5
    assert sum(r["category_code"] == "electronics.smartphone" for r in answered["results"]) >= 4

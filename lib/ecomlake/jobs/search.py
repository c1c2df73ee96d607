"""search: product search over the catalogue, ordered by a learning-to-rank model trained on the
search log's clicks with the position bias taken out (lib/ecomlake/models/search.py).

  ./spark-submit.sh search --as-of 2019-11-17                                  # train and measure
  ./spark-submit.sh search --query "cheap samsung phone" [--user-id 512000141] [--k 10]

Training (--as-of) reads bronze/products and bronze/search_impressions (`ingest --source
search_log`). Before the cutoff: the position propensities are estimated from the whole log; the
clicks of the last search.label_days days train the rankers, with click features from the days
before them. Three SparkXGBRanker models on the same features:
  ranker_ipw                each click's group weighted by 1 / propensity of its position (capped
                            at search.max_weight); click features as clicks over expected clicks
  ranker_debiased_features  every click weighted 1; click features as clicks over expected clicks
  ranker_raw_clicks         every click weighted 1; click features as raw click rates
The searches from the cutoff on are the test: their queries get candidates (BM25 top
search.candidates, MiniLM top search.candidates), each model's top search.k is compared with the
planted true relevance (nDCG@k, averaged over the test searches, and over those whose query was
never searched before the cutoff) when the log comes from `generate` (its _ground_truth), beside
three rankings without learning: BM25 order, MiniLM order and what the shop showed (the logged
order); and the share of the shop's promoted products in each top k.
Writes:
  gold/model_runs             task product_search, one row per model above and bm25, minilm, logged
                              (baselines but search.serve_model, whose model_path holds the three
                              rankers and the served ranker's click features, which a query reads);
                              details: the estimated (and planted) propensities per position
  gold/search_pair_clicks     query, product_id, pair_ctr, pair_impressions (the served ranker's click
                              features from the log before the cutoff), per as_of_date
  gold/search_product_clicks  product_id, product_ctr, product_impressions, per as_of_date
  silver/product_text_embeddings, silver/query_embeddings   MiniLM embeddings (a cache)

A query (--query) is answered with the newest run of search.serve_model: its candidates, ranked,
logged with each result's brand, category, price, score and the features that pushed it; with
--user-id, the results that user clicked or bought before are marked.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import date, datetime, timedelta, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake import embedding_cache, lake, ops, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import EcomlakeError, InputError
from ecomlake.models import ranker
from ecomlake.models import search

log = logging.getLogger(__name__)
JOB, TASK = "search", "product_search"
# ranker -> (clicks weighted by inverse propensity?, click features corrected for position?)
VARIANTS = {"ranker_ipw": (True, True), "ranker_debiased_features": (False, True), "ranker_raw_clicks": (False, False)}
MODELS = (*VARIANTS, "bm25", "minilm", "logged")


def planted_relevance(spark: SparkSession, output: str) -> DataFrame | None:
    """`generate`'s true relevance (query, product_id, relevance), or None when the log is not generated."""
    path = f"{output}/_ground_truth/search_relevance"
    return spark.read.parquet(path) if lake.path_exists(spark, path) else None


def planted_promoted(spark: SparkSession, output: str) -> DataFrame | None:
    """The products the shop's search pushed up (product_id), or None when not generated."""
    path = f"{output}/_ground_truth/search_products"
    return spark.read.parquet(path).where(F.col("promoted")).select("product_id") \
        if lake.path_exists(spark, path) else None


def planted_propensities(spark: SparkSession, output: str) -> list[float] | None:
    text = lake.read_text_file(spark, f"{output}/_ground_truth/generator.json")
    planted = json.loads(text).get("search") if text else None
    return planted["propensities"] if planted else None


def embeddings(spark: SparkSession, root: str, documents: DataFrame, queries: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(product vectors: product_id, embedding; query vectors: query, embedding), cached in silver."""
    products = embedding_cache.with_embeddings(spark, root, documents.select("product_id", "text"), key="product_id",
                                               text_column="text", table=tables.SILVER_PRODUCT_TEXT_EMBEDDINGS,
                                               table_key="product_id")
    asked = embedding_cache.with_embeddings(spark, root, queries.select("query"), key="query", text_column="query",
                                            table=tables.SILVER_QUERY_EMBEDDINGS, table_key="query")
    return products.select("product_id", "embedding"), asked.select("query", "embedding")


def run(spark: SparkSession, config: dict, as_of: str) -> dict:
    root, s, seed = config["lake_root"], config["search"], config["train"]["seed"]
    as_of = parse_as_of(as_of)
    label_start = (date.fromisoformat(as_of) - timedelta(days=s["label_days"])).isoformat()
    run_id, started = ops.new_run_id(JOB), datetime.now(timezone.utc)
    with ops.job_lease(spark, config, JOB, run_id):
        read = [tables.BRONZE_PRODUCTS, tables.BRONZE_SEARCH_IMPRESSIONS]
        for table in read:
            if not lake.table_exists(spark, table.path(root)):
                raise InputError(f"{table.id} does not exist: run `{table.producer}` first")
        versions = runs.input_versions(spark, root, read)
        impressions = lake.read_table(spark, root, tables.BRONZE_SEARCH_IMPRESSIONS).select(
            "search_id", "search_date", "user_id", search.normalised_query(F.col("query")).alias("query"), "position",
            "product_id", "clicked", "purchased")
        before = impressions.where(F.col("search_date") < as_of).persist(StorageLevel.MEMORY_AND_DISK)
        labelled = before.where(F.col("search_date") >= label_start)
        history = before.where(F.col("search_date") < label_start)
        test = impressions.where(F.col("search_date") >= as_of).persist(StorageLevel.MEMORY_AND_DISK)
        if not history.limit(1).count() or not labelled.limit(1).count():
            raise InputError(f"bronze/search_impressions needs searches before {label_start} (click features) and "
                             f"from {label_start} to {as_of} (search.label_days = {s['label_days']}: ranker labels)")
        first_day = before.agg(F.min("search_date")).head()[0]
        history_days = (date.fromisoformat(label_start) - first_day).days
        before_days = (date.fromisoformat(as_of) - first_day).days

        documents = search.product_documents(lake.read_table(spark, root, tables.BRONZE_PRODUCTS)) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        queries = search.understood_queries(impressions.select("query"), documents).persist(StorageLevel.MEMORY_AND_DISK)
        product_vectors, query_vectors = embeddings(spark, root, documents, queries)
        product_vectors = product_vectors.persist(StorageLevel.MEMORY_AND_DISK)
        query_vectors = query_vectors.persist(StorageLevel.MEMORY_AND_DISK)
        lexical = search.bm25(queries, documents).persist(StorageLevel.MEMORY_AND_DISK)

        propensities = search.position_propensities(before, s["positions"]).persist()
        estimated = [r["propensity"] for r in propensities.orderBy("position").collect()]  # search.positions rows
        log.info("search: estimated propensity by position: " + ", ".join(f"{p:.3f}" for p in estimated))

        test_queries = queries.join(test.select("query").distinct(), "query")
        semantic = search.nearest_products(query_vectors.join(test_queries.select("query"), "query"), product_vectors,
                                           s["candidates"]).persist(StorageLevel.MEMORY_AND_DISK)
        test_candidates = search.candidates(lexical.join(test_queries.select("query"), "query"), semantic,
                                            s["candidates"])
        train_pairs = labelled.select("query", "product_id").distinct()
        cosines = search.pair_cosine(train_pairs.unionByName(test_candidates).distinct(), query_vectors,
                                     product_vectors).persist(StorageLevel.MEMORY_AND_DISK)

        attempt = runs.new_attempt_dir(root, TASK, runs.make_run_id(TASK, s["serve_model"], as_of, s))
        ranked = {}
        for variant, (weighted, corrected) in VARIANTS.items():
            used = propensities if corrected else None
            pair_hist, product_hist = search.click_features(history, used, s["ctr_prior"], history_days)
            groups = search.click_groups(labelled, propensities if weighted else None, s["max_weight"], seed)
            training = groups.join(search.pair_features(train_pairs, queries, documents, lexical, cosines, pair_hist,
                                                        product_hist), ["query", "product_id"])
            model = ranker.fit(training, list(search.FEATURES), s["trees"], s["max_depth"], s["learning_rate"],
                               s["min_child_weight"], seed, query_columns=("group",))
            model.write().save(f"{attempt}/{variant}")
            pair_now, product_now = search.click_features(before, used, s["ctr_prior"], before_days)
            if variant == s["serve_model"]:   # what `search --query` reads beside the model
                pair_now.write.parquet(f"{attempt}/pair_clicks")
                product_now.write.parquet(f"{attempt}/product_clicks")
            features = search.pair_features(test_candidates, queries, documents, lexical, cosines, pair_now, product_now)
            ranked[variant] = ranker.rerank(model, features, list(search.FEATURES), s["k"], by="query") \
                .select("query", "product_id", "rank").persist(StorageLevel.MEMORY_AND_DISK)
        ranked["bm25"] = search.ranked_by(lexical.join(test_queries.select("query"), "query"), "bm25", s["k"])
        ranked["minilm"] = search.ranked_by(semantic, "minilm_cosine", s["k"])

        output = config["generate"]["output"].rstrip("/")
        truth = planted_relevance(spark, output)
        metrics = measure(ranked, test, truth, s["k"], before, planted_promoted(spark, output)) \
            if truth is not None and test.limit(1).count() else {}
        if not metrics:
            log.warning("search: no test searches after the cutoff with planted relevance (a log from `generate` "
                        "with generate.searches): the rankers are trained but not measured")
        planted = planted_propensities(spark, output)
        details = {"propensities": estimated, "planted_propensities": planted[:s["positions"]] if planted else None,
                   "features": list(search.FEATURES), "train_searches": labelled.select("search_id").distinct().count(),
                   "test_searches": test.select("search_id").distinct().count(), "queries": queries.count()}
        served = s["serve_model"]
        records = [runs.model_run(TASK, name, as_of, s, versions, metrics.get(name, {}),
                                  {**details, "what": WHAT[name]}, baseline=name != served,
                                  model_path=attempt if name == served else None)
                   for name in MODELS]
        # For analysts: the served ranker's click features as of the cutoff (a query reads the copy
        # saved with the model, so a later run for the same cutoff cannot change an older model's).
        dated = {"as_of_date": F.to_date(F.lit(as_of))}
        for table, name in ((tables.GOLD_SEARCH_PAIR_CLICKS, "pair_clicks"), (tables.GOLD_SEARCH_PRODUCT_CLICKS,
                                                                             "product_clicks")):
            lake.replace_partition(spark.read.parquet(f"{attempt}/{name}").withColumns(dated), root, table,
                                   "as_of_date", as_of)
        runs.record(spark, root, records)
        ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                       args={"as_of": as_of}, input_versions=versions,
                       counts={"train_searches": details["train_searches"], "test_searches": details["test_searches"]},
                       details={"metrics": metrics, "propensities": estimated})
        k = s["k"]
        for name in MODELS:
            if name in metrics:
                m = metrics[name]
                promoted = m.get(f"promoted_share@{k}")
                log.info(f"search {name:<24} nDCG@{k} {m[f'ndcg@{k}']:.4f}  on new queries "
                         f"{m[f'ndcg@{k}_new_queries']:.4f} ({int(m['new_query_searches']):,} searches)"
                         + (f"  promoted in the top {k}: {promoted:.3f}" if promoted is not None else ""))
        for frame in (*[f for f in ranked.values() if f.is_cached], cosines, semantic, lexical, query_vectors,
                      product_vectors, queries, documents, propensities, test, before):
            frame.unpersist()
    return {"as_of": as_of, "propensities": estimated, "metrics": metrics, "model_path": attempt,
            "train_searches": details["train_searches"], "test_searches": details["test_searches"],
            "queries": details["queries"]}


WHAT = {
    "ranker_ipw": "SparkXGBRanker on click groups weighted by 1 / propensity of the click's position "
                  "(capped at search.max_weight), click features as clicks over expected clicks",
    "ranker_debiased_features": "the same ranker, every click weighted 1, click features as clicks over expected clicks",
    "ranker_raw_clicks": "the same ranker, every click weighted 1, click features as raw click rates (position "
                         "bias left in)",
    "bm25": "BM25 over product words (category code parts, brand)",
    "minilm": "cosine of all-MiniLM-L6-v2 embeddings of query and product text",
    "logged": "the order the shop showed (the log's positions)",
}


def measure(ranked: dict[str, DataFrame], test: DataFrame, truth: DataFrame, k: int, seen: DataFrame,
            promoted: DataFrame | None = None) -> dict[str, dict]:
    """nDCG@k of each ranking against the planted relevance, averaged over the test searches, and
    over those whose query was never searched before the cutoff (`seen`: query), where no click of
    the query can help; with the planted promoted products (product_id) also promoted_share@k: the
    share of them in the top k."""
    searches = test.select("search_id", "query").distinct().persist(StorageLevel.MEMORY_AND_DISK)
    new = searches.join(seen.select("query").distinct(), "query", "left_anti").persist(StorageLevel.MEMORY_AND_DISK)
    logged = test.select("search_id", "query", "product_id", F.col("position").alias("rank"))
    out = {}
    for name, frame in ranked.items():
        per_query = search.graded_ndcg(frame, truth, k).persist(StorageLevel.MEMORY_AND_DISK)
        out[name] = {f"ndcg@{k}": search.mean_ndcg(per_query, searches),
                     f"ndcg@{k}_new_queries": search.mean_ndcg(per_query, new)}
        per_query.unpersist()
    per_search = search.graded_ndcg(logged, truth, k, group="search_id")
    average = F.avg(F.coalesce("ndcg", F.lit(0.0)))
    out["logged"] = {f"ndcg@{k}": float(searches.join(per_search, "search_id", "left").agg(average).head()[0] or 0.0),
                     f"ndcg@{k}_new_queries": float(new.join(per_search, "search_id", "left").agg(average).head()[0]
                                                   or 0.0)}
    if promoted is not None:
        flagged = promoted.select("product_id").distinct().withColumn("_promoted", F.lit(1.0))
        for name, frame in [*ranked.items(), ("logged", logged)]:
            top = frame.where(F.col("rank") <= k)
            by = "search_id" if "search_id" in frame.columns else "query"   # the shown list, or a query's
            top = searches.select("search_id", "query").join(top.select(by, "product_id"), by)
            share = top.join(flagged, "product_id", "left").agg(F.avg(F.coalesce("_promoted", F.lit(0.0)))).head()[0]
            out[name][f"promoted_share@{k}"] = float(share or 0.0)
    n, n_new = float(searches.count()), float(new.count())
    for m in out.values():
        m["searches"], m["new_query_searches"] = n, n_new
    new.unpersist()
    searches.unpersist()
    return out


def answer(spark: SparkSession, config: dict, query: str, user_id: int | None, k: int | None,
           run_id: str | None = None) -> dict:
    """The newest trained ranker's results for one query, logged as a table for a person to read."""
    from xgboost.spark import SparkXGBRankerModel

    from ecomlake.models import sentiment

    root, s = config["lake_root"], config["search"]
    k = s["k"] if k is None else k
    if k < 1:
        raise EcomlakeError(f"--k must be at least 1, got {k}")
    asked = spark.createDataFrame([(query,)], "query string").select(search.normalised_query(F.col("query")).alias("query"))
    text = asked.head()["query"]
    if not text:
        raise EcomlakeError(f"--query {query!r} has no words to search for")
    trained = runs.find(spark, root, TASK, run_id, producer="search --as-of DATE")
    if not trained.get("model_path"):
        raise InputError(f"run {trained['run_id']} ({trained['model']}) saved no ranker: give a run of "
                         "search.serve_model, or none for the newest")
    as_of = trained["as_of_date"].isoformat()
    model = SparkXGBRankerModel.load(f"{trained['model_path']}/{trained['model']}")
    documents = search.product_documents(lake.read_table(spark, root, tables.BRONZE_PRODUCTS)).persist()
    queries = search.understood_queries(asked, documents)
    product_vectors = embedding_cache.with_embeddings(
        spark, root, documents.select("product_id", "text"), key="product_id", text_column="text",
        table=tables.SILVER_PRODUCT_TEXT_EMBEDDINGS, table_key="product_id").select("product_id", "embedding")
    query_vectors = sentiment.embed(asked, "query").select("query", "embedding")  # one text: not worth caching
    lexical = search.bm25(queries, documents)
    semantic = search.nearest_products(query_vectors, product_vectors, trained["params"]["candidates"])
    pool = search.candidates(lexical, semantic, trained["params"]["candidates"])
    cosines = search.pair_cosine(pool, query_vectors, product_vectors)
    # The click features saved with the model (the gold tables hold the latest run's of each cutoff).
    pair_clicks = spark.read.parquet(f"{trained['model_path']}/pair_clicks")
    product_clicks = spark.read.parquet(f"{trained['model_path']}/product_clicks")
    features = search.pair_features(pool, queries, documents, lexical, cosines, pair_clicks, product_clicks)
    top = ranker.rerank(model, features, list(search.FEATURES), k, explain=True, by="query")
    shown = top.join(documents.select("product_id", "brand", "category_code", "base_price"), "product_id")
    if user_id is not None:
        mine = (lake.read_table(spark, root, tables.BRONZE_SEARCH_IMPRESSIONS).where(F.col("user_id") == user_id)
                .groupBy("product_id").agg(F.max("clicked").alias("clicked_before"),
                                           F.max("purchased").alias("bought_before")))
        shown = shown.join(mine, "product_id", "left")
    rows = [r.asDict(recursive=True) for r in shown.orderBy("rank").collect()]  # k rows
    documents.unpersist()
    log.info(f"search {text!r}: top {len(rows)} of {trained['model']} (run {trained['run_id']}, as of {as_of})")
    log.info(f"  {'#':>2}  {'product':>9}  {'brand':<9} {'category':<31} {'price':>8}  {'score':>6}  why")
    for r in rows:
        why = ", ".join(f"{f['feature']} {f['contribution']:+.2f}" for f in r["top_features"])
        mark = " [bought before]" if r.get("bought_before") else " [clicked before]" if r.get("clicked_before") else ""
        log.info(f"  {r['rank']:>2}  {r['product_id']:>9}  {(r['brand'] or '-'):<9} {(r['category_code'] or '-'):<31} "
                 f"{r['base_price']:>8.2f}  {r['score']:>6.2f}  {why}{mark}")
    return {"query": text, "run_id": trained["run_id"], "as_of": as_of, "results": [
        {key: r.get(key) for key in ("rank", "product_id", "brand", "category_code", "base_price", "score",
                                     "clicked_before", "bought_before")} for r in rows]}


def main(argv=None) -> int:
    parser = job_parser(JOB, __doc__)
    parser.add_argument("--as-of", help="train and measure: the cutoff (searches before it train, from it test)")
    parser.add_argument("--query", help="answer this query with the newest trained ranker")
    parser.add_argument("--user-id", type=int, help="with --query: mark what this user clicked or bought before")
    parser.add_argument("--k", type=int, help="with --query: results to show (default: config search.k)")
    parser.add_argument("--run-id", help="with --query: use this run of gold/model_runs instead of the newest")

    def body(spark, config, a):
        if bool(a.as_of) == bool(a.query):
            raise EcomlakeError("give either --as-of DATE (train and measure) or --query TEXT (search)")
        if a.as_of and (a.user_id is not None or a.k is not None or a.run_id):
            raise EcomlakeError("--user-id, --k and --run-id go with --query, not with --as-of")
        if a.query:
            return answer(spark, config, a.query, a.user_id, a.k, a.run_id)
        return run(spark, config, a.as_of)

    return run_job(JOB, parser, body, argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

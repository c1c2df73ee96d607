"""Product search: candidates for a text query from the catalogue, ordered by a learning-to-rank
model trained on logged clicks with the position bias taken out.

- Query understanding: the query's words (lower case), the catalogue brand it names, and its price
  intent from PRICE_WORDS.
- Retrieval: BM25 over each product's words (its category code's parts and its brand), and the
  MiniLM embedding of its text against the query's (`nearest_products`: blocked brute force, so
  no side ever has to fit on one machine); a query's candidates are the union of both top lists.
- Position bias: a click at position k only happens if the user looked there; the probability of
  looking (the propensity) falls with k. `position_propensities` estimates it from the log by
  intervention harvesting (Agarwal et al., WSDM 2019): the same product for the same query shown at
  position k and at position 1 by a noisy ranker differs in click rate only by the ratio of the
  two positions' propensities.
- Ranker: xgboost.spark's SparkXGBRanker on groups of one click each (the clicked result against
  the results of its search that were not clicked: the pairs of a propensity-weighted RankSVM,
  Joachims et al., WSDM 2017), each group weighted by 1 / propensity of the clicked position.
  XGBoost's ranking objectives take one weight per query group and xgboost.spark passes one per
  row, so the weight is applied by replicating the group round(weight) times (randomised rounding
  by a hash: unbiased, deterministic). The same ranker on raw clicks gives every group weight 1.
- Click features (a result's click rate, for this query and overall) use the same propensities:
  clicks over expected clicks (the sum of the impressions' propensities) estimates how attractive
  a result is wherever it was shown.
"""
from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

PRICE_WORDS = {"cheap": -1, "budget": -1, "premium": 1, "luxury": 1}
BM25_K1, BM25_B = 1.2, 0.75
FEATURES = ("bm25", "category_match", "brand_match", "query_names_brand", "query_price", "price_position",
            "query_price_x_position", "minilm_cosine", "pair_ctr", "pair_impressions", "product_ctr",
            "product_impressions")
KNN_BLOCK = 2048  # products (and queries) per block of the brute-force nearest-neighbour search


WORD_SEPARATORS = r"[^\p{L}\p{N}]+"   # anything but letters and digits of any script (a Java regex)


def words(text: Column) -> Column:
    """The lower-case words of a text (letters and digits of any script), in order."""
    return F.filter(F.split(F.lower(F.coalesce(text, F.lit(""))), WORD_SEPARATORS), lambda w: F.length(w) > 0)


def normalised_query(query: Column) -> Column:
    """A query as search keys it: its words joined by single spaces ("Phone, red!" -> "phone red")."""
    return F.array_join(words(query), " ")


def product_documents(products: DataFrame) -> DataFrame:
    """products (product_id, category_code, brand, base_price) -> product_id, category_code, brand,
    base_price, text (what MiniLM reads: brand and category words), terms (distinct words of both),
    category_terms, and price_position (log of the price over its category's median price)."""
    category_words = words(F.regexp_replace(F.col("category_code"), "[._]", " "))
    brand = F.lower(F.trim(F.col("brand")))
    median = products.groupBy("category_code").agg(F.percentile_approx("base_price", 0.5).alias("_median"))
    return (products.join(median, "category_code", "left")
            .select("product_id", "category_code", brand.alias("brand"), "base_price",
                    F.concat_ws(" ", brand, F.array_join(category_words, " ")).alias("text"),
                    F.array_distinct(F.concat(category_words, F.array_compact(F.array(brand)))).alias("terms"),
                    category_words.alias("category_terms"),
                    F.when((F.col("base_price") > 0) & (F.col("_median") > 0),
                           F.log(F.col("base_price") / F.col("_median"))).alias("price_position")))


def understood_queries(queries: DataFrame, documents: DataFrame) -> DataFrame:
    """queries (query) -> query, query_terms, query_brand (a catalogue brand the query names, the
    first one), query_price (-1 cheap, 0 none, 1 premium: PRICE_WORDS)."""
    brands = documents.where(F.col("brand").isNotNull()).select(F.col("brand").alias("_word")).distinct()
    prices = F.create_map(*[x for word, sign in PRICE_WORDS.items() for x in (F.lit(word), F.lit(sign))])
    terms = queries.select("query").distinct().withColumn("query_terms", words(F.col("query")))
    exploded = terms.select("query", F.posexplode("query_terms").alias("_pos", "_word"))
    named = (exploded.join(F.broadcast(brands), "_word").groupBy("query")
             .agg(F.min_by("_word", "_pos").alias("query_brand")))
    price = (exploded.select("query", prices[F.col("_word")].alias("_sign")).where(F.col("_sign").isNotNull())
             .groupBy("query").agg(F.first("_sign").alias("query_price")))
    return (terms.join(named, "query", "left").join(price, "query", "left")
            .fillna(0, ["query_price"]).withColumn("query_price", F.col("query_price").cast("int")))


def bm25(queries: DataFrame, documents: DataFrame) -> DataFrame:
    """queries (query, query_terms), documents (product_id, terms) -> query, product_id, bm25 for
    every product that shares a word with the query (Okapi BM25, k1 1.2, b 0.75; a word counts
    once per product)."""
    stats = documents.agg(F.count(F.lit(1)).alias("_n"), F.avg(F.size("terms")).alias("_avg_len"))
    postings = documents.select("product_id", F.size("terms").alias("_len"), F.explode("terms").alias("_term"))
    idf = (postings.groupBy("_term").agg(F.count(F.lit(1)).alias("_df")).crossJoin(stats)
           .select("_term", F.log(1 + (F.col("_n") - F.col("_df") + 0.5) / (F.col("_df") + 0.5)).alias("_idf"),
                   "_avg_len"))
    query_terms = queries.select("query", F.explode(F.array_distinct("query_terms")).alias("_term"))
    matched = query_terms.join(idf, "_term").join(postings, "_term")
    norm = F.lit(BM25_K1) * (1 - BM25_B + BM25_B * F.col("_len") / F.col("_avg_len"))
    return (matched.groupBy("query", "product_id")
            .agg(F.sum(F.col("_idf") * (BM25_K1 + 1) / (1 + norm)).alias("bm25")))


def top_per_query(scored: DataFrame, score: str, n: int) -> DataFrame:
    """The n best-scored products of each query (ties by product_id)."""
    order = Window.partitionBy("query").orderBy(F.desc(score), "product_id")
    return scored.withColumn("_rank", F.row_number().over(order)).where(F.col("_rank") <= n).drop("_rank")


def _blocks(vectors: DataFrame, key: str, size: int) -> DataFrame:
    """key, embedding rows -> block rows: keys (array) and vectors (array of arrays), ~size per block."""
    count = vectors.count()
    n_blocks = max(1, -(-count // size))
    return (vectors.groupBy(F.pmod(F.xxhash64(F.col(key).cast("string")), F.lit(n_blocks)).alias("_block"))
            .agg(F.collect_list(F.col(key)).alias("keys"), F.collect_list("embedding").alias("vectors")))


def nearest_products(query_vectors: DataFrame, product_vectors: DataFrame, n: int) -> DataFrame:
    """query (query, embedding), product (product_id, embedding), L2-normalised -> query,
    product_id, minilm_cosine for each query's n most similar products. Both sides are cut into
    blocks of KNN_BLOCK; each pair of blocks is one matrix product in a task."""
    import numpy as np

    def top_n(batches):
        for batch in batches:
            for row in batch.itertuples(index=False):
                q = np.stack(row.q_vectors).astype(np.float32)
                p = np.stack(row.p_vectors).astype(np.float32)
                scores = q @ p.T
                keep = min(n, scores.shape[1])
                best = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
                products = np.asarray(row.p_keys)
                yield pd.DataFrame({
                    "query": np.repeat(np.asarray(row.q_keys, dtype=object), keep),
                    "product_id": products[best].ravel().astype(np.int64),
                    "minilm_cosine": np.take_along_axis(scores, best, axis=1).ravel().astype(np.float64)})

    q = _blocks(query_vectors, "query", KNN_BLOCK).select(F.col("keys").alias("q_keys"), F.col("vectors").alias("q_vectors"))
    p = _blocks(product_vectors, "product_id", KNN_BLOCK).select(F.col("keys").alias("p_keys"),
                                                                 F.col("vectors").alias("p_vectors"))
    pairs = q.crossJoin(p).mapInPandas(top_n, "query string, product_id long, minilm_cosine double")
    return top_per_query(pairs, "minilm_cosine", n)


def pair_cosine(pairs: DataFrame, query_vectors: DataFrame, product_vectors: DataFrame) -> DataFrame:
    """pairs (query, product_id) + minilm_cosine (null when either has no embedding)."""
    from pyspark.sql.types import DoubleType
    import numpy as np

    @F.pandas_udf(DoubleType())
    def dot(a: pd.Series, b: pd.Series) -> pd.Series:
        out = np.full(len(a), np.nan)
        ok = (a.notna() & b.notna()).to_numpy()
        if ok.any():
            out[ok] = np.einsum("ij,ij->i", np.stack(a[ok].to_numpy()), np.stack(b[ok].to_numpy()))
        return pd.Series(out)

    return (pairs.join(query_vectors.select("query", F.col("embedding").alias("_q")), "query", "left")
            .join(product_vectors.select("product_id", F.col("embedding").alias("_p")), "product_id", "left")
            .withColumn("minilm_cosine", dot("_q", "_p")).drop("_q", "_p"))


def candidates(lexical: DataFrame, semantic: DataFrame, n: int) -> DataFrame:
    """The union of each query's n best by BM25 and n nearest by MiniLM: query, product_id."""
    return (top_per_query(lexical, "bm25", n).select("query", "product_id")
            .unionByName(top_per_query(semantic, "minilm_cosine", n).select("query", "product_id")).distinct())


# ---- position bias --------------------------------------------------------------------------------


def position_propensities(impressions: DataFrame, positions: int) -> DataFrame:
    """impressions (query, product_id, position, clicked) -> position, propensity (position 1 = 1),
    by intervention harvesting: for each position k, over the (query, product) pairs shown both at
    k and at 1, sum(w * clicks_k / n_k) / sum(w * clicks_1 / n_1) with w = n_k n_1 / (n_k + n_1).
    Made non-increasing in k (looking further down never gets likelier); a position never seen
    together with position 1 takes the one above it."""
    cells = impressions.groupBy("query", "product_id", "position").agg(
        F.count(F.lit(1)).alias("_n"), F.sum("clicked").alias("_c"))
    top = cells.where(F.col("position") == 1).select("query", "product_id", F.col("_n").alias("_n1"),
                                                     F.col("_c").alias("_c1"))
    w = F.col("_n") * F.col("_n1") / (F.col("_n") + F.col("_n1"))
    ratios = (cells.join(top, ["query", "product_id"]).groupBy("position")
              .agg(F.try_divide(F.sum(w * F.col("_c") / F.col("_n")), F.sum(w * F.col("_c1") / F.col("_n1")))
                   .alias("_ratio"))
              .where(F.col("position") <= positions).collect())  # one row per position
    by_position = {r["position"]: r["_ratio"] for r in ratios if r["_ratio"] is not None and r["_ratio"] > 0}
    propensity, rows = 1.0, []
    for k in range(1, positions + 1):
        propensity = 1.0 if k == 1 else min(propensity, by_position.get(k, propensity))
        rows.append((k, float(propensity)))
    return impressions.sparkSession.createDataFrame(rows, "position int, propensity double")


def with_propensity(impressions: DataFrame, propensities: DataFrame | None) -> DataFrame:
    """impressions + propensity (1 everywhere without propensities: raw clicks). A position below
    the estimated ones takes the lowest estimated propensity (looking further down is no likelier)."""
    if propensities is None:
        return impressions.withColumn("propensity", F.lit(1.0))
    lowest = propensities.agg(F.min("propensity").alias("_lowest"))
    return (impressions.join(F.broadcast(propensities), "position", "left").crossJoin(F.broadcast(lowest))
            .withColumn("propensity", F.coalesce(F.col("propensity"), F.col("_lowest"))).drop("_lowest"))


def click_features(impressions: DataFrame, propensities: DataFrame | None, prior: float,
                   days: int) -> tuple[DataFrame, DataFrame]:
    """(pairs: query, product_id, pair_ctr, pair_impressions; products: product_id, product_ctr,
    product_impressions) from `days` days of logged impressions. A click rate is clicks over
    expected clicks (COEC): clicks / the sum of the impressions' propensities, so a result shown
    low is not penalised for being looked at less (without propensities: clicks / impressions). It
    is shrunk towards the log's rate by `prior` expected clicks of it. COEC has far less variance
    than averaging clicked / propensity per impression (a rare click at position 10 weighs 10).
    Impressions are log1p(impressions per day), so windows of different lengths (training, serving)
    give comparable values."""
    weighted = with_propensity(impressions, propensities)
    mean = weighted.agg((F.sum("clicked") / F.sum("propensity")).alias("_mean"))

    def rates(keys: list[str], name: str) -> DataFrame:
        return (weighted.groupBy(*keys).agg(F.sum("clicked").alias("_clicks"), F.sum("propensity").alias("_expected"),
                                            F.count(F.lit(1)).alias("_n"))
                .crossJoin(mean)
                .select(*keys, ((F.col("_clicks") + prior * F.col("_mean")) / (F.col("_expected") + prior))
                        .alias(f"{name}_ctr"), F.log1p(F.col("_n") / float(max(days, 1))).alias(f"{name}_impressions")))

    return rates(["query", "product_id"], "pair"), rates(["product_id"], "product")


def click_groups(impressions: DataFrame, propensities: DataFrame | None, max_weight: float, seed: int) -> DataFrame:
    """Training groups from logged searches (search_id, query, position, product_id, clicked): one
    group per click, the clicked result (label 1) against the results of the search not clicked
    (label 0), replicated round(min(max_weight, 1 / propensity of the click's position)) times
    (randomised rounding by a hash of the click; propensities None: once). -> group (string), query,
    product_id, label."""
    clicks = (with_propensity(impressions.where(F.col("clicked") == 1), propensities)
              .select("search_id", F.col("position").alias("_click_position"),
                      F.least(F.lit(float(max_weight)), 1 / F.col("propensity")).alias("_weight")))
    u = F.pmod(F.xxhash64(F.lit(seed), F.col("search_id"), F.col("_click_position")), F.lit(1 << 30)) / float(1 << 30)
    copies = (F.floor("_weight") + (u < F.col("_weight") - F.floor("_weight")).cast("int")).cast("int")
    clicks = clicks.withColumn("_copies", copies).where(F.col("_copies") > 0)
    rows = impressions.join(clicks, "search_id").where(
        (F.col("position") == F.col("_click_position")) | (F.col("clicked") == 0))
    return (rows.withColumn("_copy", F.explode(F.sequence(F.lit(1), F.col("_copies"))))
            .select(F.concat_ws(":", "search_id", F.col("_click_position").cast("string"),
                                F.col("_copy").cast("string")).alias("group"),
                    "query", "product_id", (F.col("position") == F.col("_click_position")).cast("int").alias("label")))


# ---- features and evaluation ----------------------------------------------------------------------


def pair_features(pairs: DataFrame, queries: DataFrame, documents: DataFrame, lexical: DataFrame,
                  cosines: DataFrame, pair_clicks: DataFrame, product_clicks: DataFrame) -> DataFrame:
    """pairs (query, product_id, ...) + the FEATURES columns: lexical (bm25, category_match,
    brand_match, query_names_brand), price (query_price, price_position and their product),
    semantic (minilm_cosine) and the logged click rates and impressions (0 where never shown)."""
    docs = documents.select("product_id", "brand", "category_terms", "price_position")
    out = (pairs.join(queries.select("query", "query_terms", "query_brand", "query_price"), "query", "left")
           .join(docs, "product_id", "left")
           .join(lexical.select("query", "product_id", "bm25"), ["query", "product_id"], "left")
           .join(cosines.select("query", "product_id", "minilm_cosine"), ["query", "product_id"], "left")
           .join(pair_clicks, ["query", "product_id"], "left").join(product_clicks, "product_id", "left"))
    return (out.withColumn("category_match", (F.size(F.array_intersect("query_terms", "category_terms")) > 0).cast("int"))
            .withColumn("brand_match", F.coalesce((F.col("query_brand") == F.col("brand")).cast("int"), F.lit(0)))
            .withColumn("query_names_brand", F.col("query_brand").isNotNull().cast("int"))
            .withColumn("query_price_x_position", F.col("query_price") * F.col("price_position"))
            .fillna(0.0, ["bm25", "pair_impressions", "product_impressions"])
            .drop("query_terms", "query_brand", "brand", "category_terms"))


def graded_ndcg(ranked: DataFrame, relevance: DataFrame, k: int, group: str = "query") -> DataFrame:
    """ranked (group, query, product_id, rank), relevance (query, product_id, relevance; absent = 0)
    -> group, ndcg: sum over the top k of (2^rel - 1) / log2(rank + 1), over the same sum for the k
    most relevant products of the query (a query with no relevant product has no ideal: no row;
    `mean_ndcg` counts such a search as 0)."""
    gain = (F.pow(F.lit(2.0), F.col("relevance")) - 1) / F.log2(F.col("rank") + 1)
    columns = [group] if group == "query" else [group, "query"]
    dcg = (ranked.where(F.col("rank") <= k).select(*columns, "product_id", "rank")
           .join(relevance, ["query", "product_id"], "left").fillna(0, ["relevance"])
           .groupBy(*columns).agg(F.sum(gain).alias("_dcg")))
    ideal = (top_per_query(relevance, "relevance", k)
             .withColumn("rank", F.row_number().over(Window.partitionBy("query").orderBy(F.desc("relevance"))))
             .groupBy("query").agg(F.sum(gain).alias("_ideal")))
    return dcg.join(ideal, "query").select(group, (F.col("_dcg") / F.col("_ideal")).alias("ndcg"))


def mean_ndcg(per_query: DataFrame, searches: DataFrame) -> float:
    """The mean nDCG over searches (search_id, query): a query counts as often as it was searched;
    a searched query missing from per_query (no result) counts 0."""
    row = (searches.select("search_id", "query").distinct().join(per_query, "query", "left")
           .agg(F.avg(F.coalesce("ndcg", F.lit(0.0))).alias("ndcg")).head())
    return float(row["ndcg"] or 0.0)


def ranked_by(scored: DataFrame, score: str, k: int) -> DataFrame:
    """query, product_id, rank: each query's top k by a score column."""
    order = Window.partitionBy("query").orderBy(F.desc(score), "product_id")
    return (scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)
            .select("query", "product_id", "rank"))

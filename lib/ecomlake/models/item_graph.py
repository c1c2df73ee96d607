"""The item graph: co-occurrence edges with lift and PMI, taxonomy edges, item2vec embeddings,
communities, and each product's complements ("bought together") and substitutes ("similar, chosen
instead"), all from events before a cutoff.

Edges between products (gold/item_edges, relation):
  co_view, co_cart   both products in one session (REES46 user_session)     undirected, per session
  co_purchase        both bought by one user                                undirected, per user
  viewed_next        the second viewed right after the first in a session   directed
  bought_after       the second viewed, carted or bought by a user within
                     `window_days` after buying the first                   directed, per user
with count = sessions (or users) showing the pair and
  lift = count * baskets / (baskets with src * baskets with dst),  pmi = ln(lift)
(for viewed_next: transitions * count / (transitions out of src * transitions into dst)).
Taxonomy edges: product -> its category (in_category), category -> its parent (subcategory_of),
product -> brand (has_brand), product -> community (in_community).

Complements of a product: products of another category, ranked by bought_after lift shrunk by
one expected user (count / (expected + 1), expected = count / lift). Substitutes: products of its
category, co-viewed in at least `min_count` sessions, ranked by co_view lift times the share of
their co-viewers who did not buy both.
The plain co-occurrence baselines rank the same candidates by count alone.
"""
from __future__ import annotations

from pyspark.ml.clustering import PowerIterationClustering
from pyspark.ml.feature import Word2Vec
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ecomlake.features import cutoff
from ecomlake.errors import require_columns

EVENT_COLUMNS = ("user_key", "user_session", "event_time", "event_type", "product_id")
PRODUCT_RELATIONS = ("co_view", "co_cart", "co_purchase", "viewed_next", "bought_after")
EDGE_COLUMNS = ("src_kind", "src", "dst_kind", "dst", "relation", "count", "lift", "pmi")
# Methods measured against planted pairs: (relation, method) -> what ranks the candidates.
METHODS = {
    ("complement", "co_purchase_count"): "users who bought both (plain co-occurrence)",
    ("complement", "bought_after_count"): "users who met the second within the window after buying the first",
    ("complement", "bought_after_lift"): "the same, as lift over the second's reach shrunk by one expected user "
                                         "(other categories only)",
    ("substitute", "co_view_count"): "sessions that viewed both (plain co-occurrence)",
    ("substitute", "co_view_lift"): "co-view lift, same category, discounted by buying both",
    ("substitute", "item2vec"): "cosine of item2vec embeddings among same-category co-viewed products",
}


def events_before(events: DataFrame, as_of: str) -> DataFrame:
    require_columns(events, list(EVENT_COLUMNS), "silver/events")
    return events.where(F.col("event_time") < cutoff(as_of))


def session_baskets(events: DataFrame, event_types: tuple[str, ...], max_items: int) -> DataFrame:
    """(basket, product_id), distinct, for sessions with at most `max_items` distinct products of
    those event types (longer sessions are bots' or scrapers': they would add every pair)."""
    basket = (events.where(F.col("event_type").isin(*event_types) & F.col("user_session").isNotNull())
              .select(F.col("user_session").alias("basket"), "product_id").distinct())
    size = F.count(F.lit(1)).over(Window.partitionBy("basket"))
    return basket.withColumn("_size", size).where(F.col("_size") <= max_items).drop("_size")


def user_baskets(events: DataFrame, event_type: str) -> DataFrame:
    return (events.where(F.col("event_type") == event_type)
            .select(F.col("user_key").alias("basket"), "product_id").distinct())


def _with_lift(pairs: DataFrame, src_total: DataFrame, dst_total: DataFrame, total: DataFrame) -> DataFrame:
    """pairs (src, dst, count) + per-src, per-dst and overall totals -> lift and pmi."""
    return (pairs.join(src_total, "src").join(dst_total, "dst").crossJoin(total)
            .withColumn("lift", F.col("count") * F.col("_total") / (F.col("_src_total") * F.col("_dst_total")))
            .withColumn("pmi", F.log("lift"))
            .select("src", "dst", "count", "lift", "pmi"))


def co_occurrence(baskets: DataFrame) -> DataFrame:
    """(basket, product_id) -> src, dst, count (baskets holding both), lift, pmi; both directions."""
    a, b = baskets.alias("a"), baskets.alias("b")
    pairs = (a.join(b, F.col("a.basket") == F.col("b.basket"))
             .where(F.col("a.product_id") != F.col("b.product_id"))
             .groupBy(F.col("a.product_id").alias("src"), F.col("b.product_id").alias("dst"))
             .agg(F.count(F.lit(1)).alias("count")))
    per_item = baskets.groupBy("product_id").agg(F.count(F.lit(1)).alias("n"))
    total = baskets.agg(F.countDistinct("basket").alias("_total"))
    return _with_lift(pairs, per_item.select(F.col("product_id").alias("src"), F.col("n").alias("_src_total")),
                      per_item.select(F.col("product_id").alias("dst"), F.col("n").alias("_dst_total")), total)


def viewed_next(events: DataFrame) -> DataFrame:
    """Consecutive views of two different products in a session -> src, dst, count, lift, pmi."""
    order = Window.partitionBy("user_session").orderBy("event_time", "product_id")
    steps = (events.where((F.col("event_type") == "view") & F.col("user_session").isNotNull())
             .select("user_session", "event_time", "product_id")
             .withColumn("dst", F.lead("product_id").over(order))
             .where(F.col("dst").isNotNull() & (F.col("dst") != F.col("product_id")))
             .select(F.col("product_id").alias("src"), "dst"))
    pairs = steps.groupBy("src", "dst").agg(F.count(F.lit(1)).alias("count"))
    return _with_lift(pairs, steps.groupBy("src").agg(F.count(F.lit(1)).alias("_src_total")),
                      steps.groupBy("dst").agg(F.count(F.lit(1)).alias("_dst_total")),
                      steps.agg(F.count(F.lit(1)).alias("_total")))


def bought_after(events: DataFrame, window_days: int) -> DataFrame:
    """Users who viewed, carted or bought dst within window_days after buying src (src != dst) ->
    src, dst, count (users), lift (over src's buyers times dst's share of all users), pmi."""
    bought = (events.where(F.col("event_type") == "purchase")
              .groupBy("user_key", F.col("product_id").alias("src")).agg(F.min("event_time").alias("bought_at")))
    met = (events.where(F.col("event_type").isin("view", "cart", "purchase"))
           .select("user_key", F.col("product_id").alias("dst"), F.col("event_time").alias("met_at")))
    window = F.expr(f"INTERVAL {int(window_days)} DAYS")
    pairs = (bought.join(met, "user_key")
             .where((F.col("src") != F.col("dst")) & (F.col("met_at") > F.col("bought_at"))
                    & (F.col("met_at") <= F.col("bought_at") + window))
             .select("user_key", "src", "dst").distinct()
             .groupBy("src", "dst").agg(F.count(F.lit(1)).alias("count")))
    buyers = bought.groupBy("src").agg(F.countDistinct("user_key").alias("_src_total"))
    reach = met.groupBy("dst").agg(F.countDistinct("user_key").alias("_dst_total"))
    users = events.agg(F.countDistinct("user_key").alias("_total"))
    return _with_lift(pairs, buyers, reach, users)


def product_edges(events: DataFrame, window_days: int, max_session_items: int) -> DataFrame:
    """Every product-product relation of PRODUCT_RELATIONS as EDGE_COLUMNS rows."""
    parts = {
        "co_view": co_occurrence(session_baskets(events, ("view",), max_session_items)),
        "co_cart": co_occurrence(session_baskets(events, ("cart",), max_session_items)),
        "co_purchase": co_occurrence(user_baskets(events, "purchase")),
        "viewed_next": viewed_next(events),
        "bought_after": bought_after(events, window_days),
    }
    out = None
    for relation, edges in parts.items():
        rows = edges.select(F.lit("product").alias("src_kind"), F.col("src").cast("string").alias("src"),
                            F.lit("product").alias("dst_kind"), F.col("dst").cast("string").alias("dst"),
                            F.lit(relation).alias("relation"), F.col("count").cast("long").alias("count"),
                            "lift", "pmi")
        out = rows if out is None else out.unionByName(rows)
    return out


def _node_edge(src_kind: str, src: Column, dst_kind: str, dst: Column, relation: str) -> list[Column]:
    return [F.lit(src_kind).alias("src_kind"), src.cast("string").alias("src"), F.lit(dst_kind).alias("dst_kind"),
            dst.alias("dst"), F.lit(relation).alias("relation"), F.lit(None).cast("long").alias("count"),
            F.lit(None).cast("double").alias("lift"), F.lit(None).cast("double").alias("pmi")]


def taxonomy_edges(products: DataFrame) -> DataFrame:
    """product -> category_code (in_category), category -> parent path (subcategory_of), product ->
    brand (has_brand). Products without a category code or brand have no such edge."""
    require_columns(products, ["product_id", "category_code", "brand"], "bronze/products")
    in_category = products.where(F.col("category_code").isNotNull()).select(
        *_node_edge("product", F.col("product_id"), "category", F.col("category_code"), "in_category"))
    has_brand = products.where(F.col("brand").isNotNull() & (F.col("brand") != "")).select(
        *_node_edge("product", F.col("product_id"), "brand", F.lower("brand"), "has_brand"))
    parts = F.split(F.col("category_code"), r"\.")
    paths = (products.where(F.col("category_code").isNotNull()).select(parts.alias("parts")).distinct()
             .select(F.explode(F.sequence(F.lit(2), F.size("parts"))).alias("depth"), "parts")
             .select(F.array_join(F.slice("parts", 1, F.col("depth")), ".").alias("child"),
                     F.array_join(F.slice("parts", 1, F.col("depth") - 1), ".").alias("parent"))
             .distinct())
    sub = paths.select(*_node_edge("category", F.col("child"), "category", F.col("parent"), "subcategory_of"))
    return in_category.unionByName(has_brand).unionByName(sub)


def item2vec(events: DataFrame, vector_size: int, window: int, min_count: int, max_iter: int, seed: int) -> DataFrame:
    """Spark ML Word2Vec over each session's viewed products in time order -> product_id, vector
    (array<double>): products met in similar contexts get close vectors. None when no product is
    viewed min_count times in sessions of two views or more."""
    order = Window.partitionBy("user_session").orderBy("event_time", "product_id")
    sequences = (events.where((F.col("event_type") == "view") & F.col("user_session").isNotNull())
                 .withColumn("_position", F.row_number().over(order))
                 .groupBy("user_session")
                 .agg(F.sort_array(F.collect_list(F.struct("_position", F.col("product_id").cast("string")
                                                           .alias("item")))).alias("_steps"))
                 .select(F.col("_steps.item").alias("items"))
                 .where(F.size("items") > 1))
    vocabulary = (sequences.select(F.explode("items").alias("item")).groupBy("item").count()
                  .where(F.col("count") >= min_count))
    if not vocabulary.limit(1).count():
        return None
    model = Word2Vec(vectorSize=vector_size, windowSize=window, minCount=min_count, maxIter=max_iter, seed=seed,
                     inputCol="items", outputCol="_unused").fit(sequences)
    return model.getVectors().select(F.col("word").cast("long").alias("product_id"),
                                     vector_to_array("vector").alias("vector"))


def cosine(a: Column, b: Column) -> Column:
    """Cosine of two equal-length arrays of doubles (Spark higher-order functions, no UDF)."""
    dot = F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0), lambda acc, v: acc + v)
    norm_a = F.sqrt(F.aggregate(F.transform(a, lambda x: x * x), F.lit(0.0), lambda acc, v: acc + v))
    norm_b = F.sqrt(F.aggregate(F.transform(b, lambda x: x * x), F.lit(0.0), lambda acc, v: acc + v))
    return dot / (norm_a * norm_b)


def communities(co_view: DataFrame, k: int, max_iter: int, min_count: int) -> DataFrame:
    """Spark ML power iteration clustering of products on co-view lift (pairs seen in at least
    min_count sessions) -> product_id, community. Products without such a pair get none."""
    edges = (co_view.where((F.col("src") < F.col("dst")) & (F.col("count") >= min_count))
             .select(F.col("src").cast("long").alias("src"), F.col("dst").cast("long").alias("dst"),
                     F.col("lift").alias("weight")))
    if not edges.limit(1).count():
        return co_view.sparkSession.createDataFrame([], "product_id long, community int")
    pic = PowerIterationClustering(k=k, maxIter=max_iter, initMode="degree", srcCol="src", dstCol="dst",
                                   weightCol="weight")
    return pic.assignClusters(edges).select(F.col("id").alias("product_id"), F.col("cluster").alias("community"))


def community_edges(assignments: DataFrame) -> DataFrame:
    return assignments.select(*_node_edge("product", F.col("product_id"), "community",
                                          F.col("community").cast("string"), "in_community"))


def community_purity(communities, products) -> dict:
    """Share of clustered products whose community's most common category is their own."""
    labelled = communities.join(products.select("product_id", F.coalesce("category_code", F.lit("")).alias("c")),
                                "product_id")
    sizes = labelled.groupBy("community", "c").agg(F.count(F.lit(1)).alias("n"))
    row = (sizes.groupBy("community").agg(F.max("n").alias("majority"), F.sum("n").alias("size"))
           .agg(F.sum("majority").alias("majority"), F.sum("size").alias("size"),
                F.count(F.lit(1)).alias("communities")).first())
    size = row["size"] or 0
    return {"products": int(size), "communities": int(row["communities"] or 0),
            "category_purity": round(row["majority"] / size, 4) if size else 0.0}


def _product_pairs(edges: DataFrame, relation: str) -> DataFrame:
    return (edges.where(F.col("relation") == relation)
            .select(F.col("src").cast("long").alias("product_id"), F.col("dst").cast("long").alias("related_product_id"),
                    "count", "lift"))


def candidates(edges: DataFrame, categories: DataFrame, vectors: DataFrame | None) -> DataFrame:
    """Per (product, related product) seen together: the evidence every method ranks by ->
    product_id, related_product_id, same_category, co_views, co_view_lift, co_purchases,
    bought_after, bought_after_lift, item2vec_cosine (null without vectors)."""
    co_view = _product_pairs(edges, "co_view").withColumnRenamed("count", "co_views").withColumnRenamed("lift", "co_view_lift")
    co_purchase = _product_pairs(edges, "co_purchase").select("product_id", "related_product_id",
                                                              F.col("count").alias("co_purchases"))
    after = _product_pairs(edges, "bought_after").withColumnRenamed("count", "bought_after") \
        .withColumnRenamed("lift", "bought_after_lift")
    keys = ["product_id", "related_product_id"]
    pairs = (co_view.join(co_purchase, keys, "full").join(after, keys, "full")
             .fillna({"co_views": 0, "co_purchases": 0, "bought_after": 0}))
    category = categories.select("product_id", F.coalesce("category_code", F.lit("")).alias("_category"))
    pairs = (pairs.join(category, "product_id", "left")
             .join(category.select(F.col("product_id").alias("related_product_id"), F.col("_category").alias("_related")),
                   "related_product_id", "left")
             .withColumn("same_category", F.col("_category").eqNullSafe(F.col("_related")))
             .drop("_category", "_related"))
    if vectors is None:
        return pairs.withColumn("item2vec_cosine", F.lit(None).cast("double"))
    v = vectors.select("product_id", F.col("vector").alias("_a"))
    w = vectors.select(F.col("product_id").alias("related_product_id"), F.col("vector").alias("_b"))
    return (pairs.join(v, "product_id", "left").join(w, "related_product_id", "left")
            .withColumn("item2vec_cosine", cosine(F.col("_a"), F.col("_b"))).drop("_a", "_b"))


def method_scores(pairs: DataFrame, min_count: int) -> DataFrame:
    """candidates -> relation, method, product_id, related_product_id, score: every METHODS row's
    candidates and scores (a null score is not a candidate)."""
    discount = 1 - F.col("co_purchases") / F.greatest(F.col("co_views"), F.lit(1))
    co_viewed = F.col("same_category") & (F.col("co_views") >= min_count)
    scores = {
        ("complement", "co_purchase_count"): F.when(F.col("co_purchases") > 0, F.col("co_purchases")),
        ("complement", "bought_after_count"): F.when(F.col("bought_after") > 0, F.col("bought_after")),
        # Lift shrunk by one expected user: count / (expected + 1), expected = count / lift. A pair
        # seen once between two rare products no longer outranks a pair many buyers share.
        ("complement", "bought_after_lift"): F.when(~F.col("same_category") & (F.col("bought_after") > 0),
                                                    F.col("bought_after") / (F.col("bought_after") / F.col("bought_after_lift") + 1)),
        ("substitute", "co_view_count"): F.when(F.col("co_views") > 0, F.col("co_views")),
        ("substitute", "co_view_lift"): F.when(co_viewed, F.col("co_view_lift") * F.greatest(discount, F.lit(0.0))),
        ("substitute", "item2vec"): F.when(co_viewed, F.col("item2vec_cosine")),
    }
    stacked = F.explode(F.array(*[F.struct(F.lit(r).alias("relation"), F.lit(m).alias("method"),
                                           score.cast("double").alias("score"))
                                  for (r, m), score in scores.items()]))
    return (pairs.select("product_id", "related_product_id", stacked.alias("_m"))
            .select("product_id", "related_product_id", "_m.relation", "_m.method", "_m.score")
            .where(F.col("score").isNotNull()))


def top_related(scored: DataFrame, k: int) -> DataFrame:
    """method_scores -> the k best related products per (relation, method, product), rank 1 = best
    (ties: more evidence first is not known here, so the smaller product_id)."""
    order = Window.partitionBy("relation", "method", "product_id").orderBy(F.desc("score"), "related_product_id")
    return scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)


BEST_METHOD = {"complement": "bought_after_lift", "substitute": "co_view_lift"}


def relations(top: DataFrame, pairs: DataFrame) -> DataFrame:
    """The best method's lists with their evidence -> product_id, relation, rank, related_product_id,
    score, co_views, co_view_lift, co_purchases, bought_after, bought_after_lift, item2vec_cosine."""
    best = F.create_map(*[F.lit(x) for pair in BEST_METHOD.items() for x in pair])
    chosen = top.where(F.col("method") == best[F.col("relation")]).drop("method")
    evidence = pairs.select("product_id", "related_product_id", "co_views", "co_view_lift", "co_purchases",
                            "bought_after", "bought_after_lift", "item2vec_cosine")
    return (chosen.join(evidence, ["product_id", "related_product_id"])
            .select("product_id", "relation", "rank", "related_product_id", "score", "co_views", "co_view_lift",
                    "co_purchases", "bought_after", "bought_after_lift", "item2vec_cosine"))


def category_transition_lift(events: DataFrame, products: DataFrame) -> DataFrame:
    """viewed_next summed over categories -> from_category, to_category, count, lift (how much more
    often the next view is in to_category after from_category than after any category)."""
    category = products.select("product_id", F.coalesce("category_code", F.lit("")).alias("category"))
    order = Window.partitionBy("user_session").orderBy("event_time", "product_id")
    steps = (events.where((F.col("event_type") == "view") & F.col("user_session").isNotNull())
             .join(category, "product_id")
             .withColumn("to_category", F.lead("category").over(order))
             .where(F.col("to_category").isNotNull())
             .select(F.col("category").alias("src"), F.col("to_category").alias("dst")))
    pairs = steps.groupBy("src", "dst").agg(F.count(F.lit(1)).alias("count"))
    lifted = _with_lift(pairs, steps.groupBy("src").agg(F.count(F.lit(1)).alias("_src_total")),
                        steps.groupBy("dst").agg(F.count(F.lit(1)).alias("_dst_total")),
                        steps.agg(F.count(F.lit(1)).alias("_total")))
    return lifted.select(F.col("src").alias("from_category"), F.col("dst").alias("to_category"), "count", "lift")


def planted_pair_metrics(top: DataFrame, truth: DataFrame, queries: DataFrame, k: int) -> dict:
    """Lists of top_related against planted pairs, over the same query products for every method
    -> {(relation, method): {precision@1, precision@k, recall@k, mrr@k, queries}}.
    truth: relation, product_id, related_product_id; queries: relation, product_id (the products
    each method is asked about; a product a method has no list for counts as a miss)."""
    asked = truth.join(queries.distinct(), ["relation", "product_id"])
    sizes = {r["relation"]: (r["queries"], r["relevant"]) for r in asked.groupBy("relation").agg(
        F.countDistinct("product_id").alias("queries"), F.count(F.lit(1)).alias("relevant")).collect()}
    hits = {(r["relation"], r["method"]): r for r in (
        top.where(F.col("rank") <= k).join(asked, ["relation", "product_id", "related_product_id"])
        .groupBy("relation", "method")
        .agg(F.sum(F.when(F.col("rank") == 1, 1).otherwise(0)).alias("at_1"), F.count(F.lit(1)).alias("hits"),
             F.sum(1.0 / F.col("rank")).alias("reciprocal_ranks"))
        .collect())}
    out = {}
    for relation, method in METHODS:
        n_queries, relevant = sizes.get(relation, (0, 0))
        row = hits.get((relation, method))
        at_1, n_hits, rr = (row["at_1"], row["hits"], row["reciprocal_ranks"]) if row else (0, 0, 0.0)
        out[(relation, method)] = {
            "precision@1": at_1 / n_queries if n_queries else 0.0,
            f"precision@{k}": n_hits / (n_queries * k) if n_queries else 0.0,
            f"recall@{k}": n_hits / relevant if relevant else 0.0,
            f"mrr@{k}": rr / n_queries if n_queries else 0.0,
            "queries": float(n_queries)}
    return out


def transition_metrics(transitions: DataFrame, planted: dict[str, str]) -> dict[str, dict]:
    """category_transition_lift rows against the planted source -> target categories: for lift and
    for count, the share of sources whose strongest other category is the planted target.
    (Rows are category pairs: bounded by the taxonomy, not the data.)"""
    rows = transitions.where(F.col("from_category") != F.col("to_category")).collect()
    out = {}
    for by in ("lift", "count"):
        best = {}
        for r in rows:
            if r["from_category"] not in best or r[by] > best[r["from_category"]][by]:
                best[r["from_category"]] = r
        right = [source for source, target in planted.items()
                 if source in best and best[source]["to_category"] == target]
        lifts = [best[s]["lift"] for s in right]
        out[by] = {"precision@1": len(right) / len(planted) if planted else 0.0, "sources": float(len(planted)),
                   "mean_lift_of_found": sum(lifts) / len(lifts) if lifts else 0.0}
    return out

"""graph: the item graph (co-view, co-cart, co-purchase, viewed-next, bought-after and taxonomy
edges), item2vec embeddings, communities, and each product's complements and substitutes.

  ./spark-submit.sh graph --as-of 2019-11-17

Reads silver/events (before --as-of) and bronze/products; lib/ecomlake/models/item_graph.py holds
the transforms. Writes, each replaced per as_of_date:
  gold/item_edges       src_kind, src, dst_kind, dst, relation, count, lift, pmi: product-product
                        edges with their counts and lift, and taxonomy edges (in_category,
                        subcategory_of, has_brand, in_community)
  gold/item_relations   per product its graph.k complements ("bought together": other categories,
                        by bought-after lift) and substitutes ("similar, chosen instead": its
                        category, by co-view lift discounted by buying both), each with its evidence
                        (co_views, co_view_lift, co_purchases, bought_after, bought_after_lift,
                        item2vec_cosine)
  gold/item_embeddings  product_id, vector: item2vec (Spark ML Word2Vec over viewed sessions)
  gold/model_runs       tasks item_complements, item_substitutes and category_transitions, one row
                        per method, measured against the planted pairs when the events come from
                        `generate` with generate.item_relations (its _ground_truth); else counts only
Communities come from Spark ML's PowerIterationClustering on the co-view lift graph (GraphFrames'
jar is not served by this project's Maven mirror: see docs/STACK.md).
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, ops, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import InputError
from ecomlake.models import item_graph

log = logging.getLogger(__name__)
JOB = "graph"
def planted_truth(spark: SparkSession, output: str):
    """(planted pairs DataFrame, planted category transitions) from `generate`'s ground truth, or
    (None, None) when the events were not generated with generate.item_relations."""
    text = lake.read_text_file(spark, f"{output}/_ground_truth/generator.json")
    planted = json.loads(text).get("item_relations") if text else None
    if not planted or not lake.path_exists(spark, f"{output}/_ground_truth/item_relations"):
        return None, None
    return spark.read.parquet(f"{output}/_ground_truth/item_relations"), planted["category_transitions"]


def run(spark: SparkSession, config: dict, as_of: str) -> dict:
    root, settings = config["lake_root"], config["graph"]
    as_of = parse_as_of(as_of)
    k, min_count = settings["k"], settings["min_count"]
    run_id, started = ops.new_run_id(JOB), datetime.now(timezone.utc)
    with ops.job_lease(spark, config, JOB, run_id):
        versions = runs.input_versions(spark, root, [tables.SILVER_EVENTS, tables.BRONZE_PRODUCTS])
        products = lake.read_table(spark, root, tables.BRONZE_PRODUCTS)
        before = item_graph.events_before(lake.read_table(spark, root, tables.SILVER_EVENTS), as_of) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        if not before.limit(1).count():
            raise InputError(f"silver/events has no event before {as_of}: nothing to build the item graph from")

        edges = item_graph.product_edges(before, settings["window_days"], settings["max_session_items"]) \
            .persist(StorageLevel.MEMORY_AND_DISK)
        vectors = item_graph.item2vec(before, settings["item2vec_vector_size"], settings["item2vec_window"],
                                      settings["item2vec_min_count"], settings["item2vec_max_iter"],
                                      config["train"]["seed"])
        if vectors is None:
            log.warning(f"graph: no product is viewed graph.item2vec_min_count ({settings['item2vec_min_count']}) "
                        "times in sessions of two views or more: no item2vec embeddings")
            vectors = spark.createDataFrame([], "product_id long, vector array<double>")
        vectors = vectors.persist(StorageLevel.MEMORY_AND_DISK)
        co_view = edges.where(F.col("relation") == "co_view")
        communities = item_graph.communities(co_view, settings["communities"], settings["community_max_iter"],
                                             min_count).persist(StorageLevel.MEMORY_AND_DISK)
        pairs = item_graph.candidates(edges, products, vectors).persist(StorageLevel.MEMORY_AND_DISK)
        top = item_graph.top_related(item_graph.method_scores(pairs, min_count), k).persist(StorageLevel.MEMORY_AND_DISK)

        params = {"as_of": as_of, **{key: settings[key] for key in sorted(settings)}, "seed": config["train"]["seed"]}
        metrics, details = measure(spark, config, before, products, top, k)
        details["communities"] = item_graph.community_purity(communities, products)
        records = [runs.model_run(f"item_{relation}s", method, as_of, params, versions, m,
                                  {"what": item_graph.METHODS[(relation, method)]},
                                  baseline=method != item_graph.BEST_METHOD[relation])
                   for (relation, method), m in metrics["pairs"].items()]
        records += [runs.model_run("category_transitions", by, as_of, params, versions, m, baseline=by != "lift")
                    for by, m in metrics["transitions"].items()]

        graph_run_id = runs.make_run_id(JOB, "item_graph", as_of, params)
        dated = {"as_of_date": F.to_date(F.lit(as_of)), "run_id": F.lit(graph_run_id)}
        all_edges = (edges.unionByName(item_graph.taxonomy_edges(products))
                     .unionByName(item_graph.community_edges(communities)).withColumns(dated))
        lake.replace_partition(all_edges, root, tables.GOLD_ITEM_EDGES, "as_of_date", as_of)
        lake.replace_partition(item_graph.relations(top, pairs).withColumns(dated), root,
                               tables.GOLD_ITEM_RELATIONS, "as_of_date", as_of)
        lake.replace_partition(vectors.withColumn("model", F.lit("item2vec")).withColumns(dated), root,
                               tables.GOLD_ITEM_EMBEDDINGS, "as_of_date", as_of)
        runs.record(spark, root, records)
        written = {t.id: lake.table_version(spark, root, t)
                   for t in (tables.GOLD_ITEM_EDGES, tables.GOLD_ITEM_RELATIONS, tables.GOLD_ITEM_EMBEDDINGS)}
        counts = {r["relation"]: r["n"] for r in lake.read_table(spark, root, tables.GOLD_ITEM_EDGES)
                  .where(F.col("as_of_date") == as_of).groupBy("relation").agg(F.count(F.lit(1)).alias("n")).collect()}
        ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                       args={"as_of": as_of}, input_versions=versions, output_versions=written, counts=counts,
                       details=details)
        for relation, method in item_graph.METHODS:
            m = metrics["pairs"][(relation, method)]
            log.info(f"graph {relation:<10} {method:<19} precision@1 {m['precision@1']:.3f}  recall@{k} "
                     f"{m[f'recall@{k}']:.3f}  ({int(m['queries']):,} products)")
        for by, m in metrics["transitions"].items():
            log.info(f"graph category transitions by {by}: {m['precision@1']:.2f} of planted sources found")
        log.info(f"graph edges: {counts}; communities: {details['communities']}")
        for frame in (top, pairs, communities, vectors, edges, before):
            frame.unpersist()
    return {"run_id": graph_run_id, "edges": counts, "metrics": {
        "pairs": {f"{r}:{m}": v for (r, m), v in metrics["pairs"].items()}, "transitions": metrics["transitions"]},
        "details": details}


def measure(spark: SparkSession, config: dict, before, products, top, k: int) -> tuple[dict, dict]:
    """Against the planted pairs and transitions when `generate` left them; else empty metrics."""
    truth, planted_transitions = planted_truth(spark, config["generate"]["output"].rstrip("/"))
    if truth is None:
        log.warning("graph: the events carry no planted item relations (generate.item_relations): "
                    "the lists are written but not measured")
        empty = {"precision@1": 0.0, f"precision@{k}": 0.0, f"recall@{k}": 0.0, f"mrr@{k}": 0.0, "queries": 0.0}
        return {"pairs": {key: dict(empty) for key in item_graph.METHODS}, "transitions": {}}, {"planted": False}
    # Asked about: main products bought before the cutoff (complements), products viewed (substitutes).
    bought = before.where(F.col("event_type") == "purchase").select("product_id").distinct()
    viewed = before.where(F.col("event_type") == "view").select("product_id").distinct()
    queries = (bought.withColumn("relation", F.lit("complement"))
               .unionByName(viewed.withColumn("relation", F.lit("substitute"))))
    pairs = item_graph.planted_pair_metrics(top, truth, queries, k)
    transitions = item_graph.transition_metrics(item_graph.category_transition_lift(before, products),
                                                planted_transitions)
    return {"pairs": pairs, "transitions": transitions}, {"planted": True}


def main(argv=None) -> int:
    parser = job_parser(JOB, __doc__)
    parser.add_argument("--as-of", required=True, help="cutoff date: the graph is built from events before it")
    return run_job(JOB, parser, lambda spark, config, a: run(spark, config, a.as_of), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

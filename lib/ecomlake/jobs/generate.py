"""generate: a deterministic synthetic clickstream in the REES46 CSV format, plus ground truth.

Writes, under --output (default: config generate.output, ./data/rees46 locally):
  events/<yyyy-Mon>.csv        REES46 "multi category store" CSV, one file per month, with header;
                               with --daily (config generate.daily) one file per UTC day instead,
                               events/<yyyy-mm-dd>.csv, holding the same lines (a daily schedule)
  catalog/products.csv         product_id, category_id, category_code, brand, base_price
  _ground_truth/generator.json parameters, seasonality, planted dirty rows per kind, expected
                               quarantine counts per reason, formulas for the oracle
  _ground_truth/users/         Parquet: per user kind (normal/scraper/carder, and with
                               generate.hidden_fraud_fraction > 0 takeover/slow_scraper/bulk_buyer),
                               latent traits, takeover_day, session and purchase rates (the
                               propensity oracle)
  _ground_truth/categories.json reference price and planted price elasticity per category
With generate.new_product_fraction, generate.style_affinity or generate.product_images (cold-start
products; all off by default, which leaves every line as it was):
  catalog/product_images.csv   product_id, image_id: each apparel product's image, a Fashion-MNIST
                               training image of its style class (needs Debian's
                               dataset-fashion-mnist, unpacked by `make env`; generate.product_images)
  _ground_truth/products/      Parquet: per product its style class (apparel), whether it is a new
                               arrival, its arrival date and image_id
With generate.regions (off by default):
  customers/customers.csv      the customer master: user_id, signup_date, region, city, latitude,
                               longitude (dirty rows planted); generator.json's "regions" holds the
                               regions and their planted differences (a weekend-heavy region, a
                               regional promotion week, a more price-sensitive region)
generator.json's "change_points" lists the changes in the data a monitor should flag (kind, dates,
columns moved): the card testers' arrival in every lake with fraud, and with generate.change_points
(off by default) a bot surge and a price shock.
With generate.searches > 0 (off by default), a search log of that many searches:
  search/<yyyy-mm-dd>.csv      one line per result shown (search_time, search_id, user_id, query,
                               position, product_id, clicked, purchased; dirty lines planted)
  _ground_truth/search_relevance/  Parquet: query, product_id, relevance (1-3; 0 is not listed)
  _ground_truth/search_products/   Parquet: product_id, category_index, brand, price_band, good, promoted
                               generator.json's "search" holds the planted position bias
                               (propensity per position), the click model and the synonyms
With generate.item_relations (off by default):
  _ground_truth/item_relations/        Parquet: product_id, related_product_id, relation (substitute,
                                       complement): the planted pairs
  _ground_truth/category_transitions/  Parquet: from_category, to_category, views, share: the
                                       realised category of the next view in normal sessions

Run:  ./spark-submit.sh generate --events 1000000 --seed 7 [--daily]
Output is deterministic: when --output already holds data generated with the same parameters and
layout the job leaves it untouched (so a re-run pipeline ingests nothing new); --force regenerates
it. Switching the layout (--daily / --no-daily) replaces the files.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import nullcontext
from dataclasses import asdict, fields

import pandas as pd

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.observation import Observation

from ecomlake import generate as gen
from ecomlake import datasets, lake, rees46, search_log
from ecomlake.cli import exit_with, job_parser, run_job
from ecomlake.errors import ConfigError
from ecomlake.spark import conf_set

log = logging.getLogger(__name__)


def params_from(config: dict, events=None, seed=None) -> gen.GeneratorParams:
    g = config["generate"]
    try:
        return gen.GeneratorParams(
            events=events if events is not None else g["events"],
            seed=seed if seed is not None else g["seed"],
            start_date=g["start_date"], days=g["days"],
            dirty_fraction=g["dirty_fraction"], fraud_user_fraction=g["fraud_user_fraction"],
            hidden_fraud_fraction=g["hidden_fraud_fraction"], new_product_fraction=g["new_product_fraction"],
            style_affinity=g["style_affinity"], product_images=g["product_images"],
            item_relations=g["item_relations"], change_points=g["change_points"], regions=g["regions"],
            searches=g["searches"])
    except ValueError as exc:
        raise ConfigError(f"generate: {exc}") from None


def layout(daily: bool) -> str:
    return "daily" if daily else "monthly"


def existing_truth(spark: SparkSession, output: str, p: gen.GeneratorParams, daily: bool = False) -> dict | None:
    """The ground truth of earlier output made with the same parameters and file layout, if all its
    files are there (output written before layouts existed is monthly)."""
    text = lake.read_text_file(spark, f"{output}/_ground_truth/generator.json")
    if text is None:
        return None
    truth = json.loads(text)
    # A parameter added since that output was written had its default then.
    stored = {**{f.name: f.default for f in fields(gen.GeneratorParams)}, **truth.get("params", {})}
    if (stored != asdict(p) or truth.get("generator_version") != gen.GENERATOR_VERSION
            or truth.get("layout", "monthly") != layout(daily)):
        return None
    def present(folder: str) -> set[str]:
        path = f"{output}/{folder}"
        return {f.name for f in lake.list_input_files(spark, path)} if lake.path_exists(spark, path) else set()

    if not set(truth["files"]) <= present("events"):
        return None
    if truth.get("search") and not set(truth["search"]["files"]) <= present("search"):
        return None
    return truth


def run(spark: SparkSession, config: dict, output: str | None = None, events: int | None = None,
        seed: int | None = None, force: bool = False, daily: bool | None = None) -> dict:
    """daily: one file per day instead of one per month (None: config generate.daily)."""
    p = params_from(config, events, seed)
    daily = config["generate"]["daily"] if daily is None else daily
    output = (output or config["generate"]["output"]).rstrip("/")
    truth = None if force else existing_truth(spark, output, p, daily)
    if truth is not None:
        log.info(f"generate: {output}/events already holds these {truth['data_lines']:,} lines "
              f"(same parameters, {layout(daily)} files); left as is (--force regenerates)")
        return truth
    # With planted relations a product is an expression of the previous slot's: whole-stage code for
    # the events outgrows Java's 64 KB method limit (Spark then falls back, logging the failure).
    codegen = conf_set(spark, "spark.sql.codegen.wholeStage", "false") if p.item_relations else nullcontext()
    with codegen:
        return _generate(spark, p, output, daily)


def _generate(spark: SparkSession, p: gen.GeneratorParams, output: str, daily: bool) -> dict:
    if p.product_images:
        datasets.FASHION_MNIST.locate()  # before anything is deleted: a missing package stops here
    for sub in ("events", "catalog", "_ground_truth", "search"):
        lake.delete_path(spark, f"{output}/{sub}")

    users = gen.users(spark, p)
    scale = gen.rate_scale(users, p)
    users = gen.scaled_users(users, p, scale)
    events_df = gen.events(gen.sessions(users, p), p)
    lines = gen.csv_lines(events_df, p, daily)

    observation = Observation("generated_lines")
    lines = lines.observe(
        observation,
        F.count(F.lit(1)).alias("lines"),
        *[F.sum(F.when(F.col("dirty_kind") == k, 1).otherwise(0)).alias(k) for k in gen.DIRTY_KINDS],
    )
    labels = p.file_labels(daily)
    headers = spark.createDataFrame([(label, -1, rees46.HEADER) for label in labels],
                                    "file string, order_key long, line string")
    tmp = f"{output}/events/_writing"
    (lines.select("file", "order_key", "line")
     .unionByName(headers)
     # One task per file, header first, then lines in time order (as in the REES46 files).
     .repartition(len(labels), "file")
     .sortWithinPartitions("file", "order_key", "line")
     .select("file", "line")
     .write.partitionBy("file").text(tmp))
    lake.replace_directory_with_files(
        spark, tmp, {f"file={label}": f"{output}/events/{label}.csv" for label in labels})
    counts = observation.get

    catalog_tmp = f"{output}/catalog/_writing"
    (gen.catalog(spark, p).coalesce(1).withColumn("part", F.lit(0))
     .write.partitionBy("part").option("header", True).csv(catalog_tmp))
    lake.replace_directory_with_files(spark, catalog_tmp, {"part=0": f"{output}/catalog/products.csv"})

    if p.plants_products:
        write_planted_products(spark, p, output)
    customer_truth = write_customers(spark, p, users, output) if p.regions else None
    search_truth = write_search_log(spark, p, users, output) if p.searches else None
    if p.item_relations:
        gen.item_relations_truth(spark, p).write.mode("overwrite").parquet(f"{output}/_ground_truth/item_relations")
        (gen.category_transitions(events_df).coalesce(1)
         .write.mode("overwrite").parquet(f"{output}/_ground_truth/category_transitions"))
    users.write.mode("overwrite").parquet(f"{output}/_ground_truth/users")
    dirty = {k: int(counts[k]) for k in gen.DIRTY_KINDS}
    expected = {}
    for kind, (stage, reason) in gen.DIRTY_KINDS.items():
        expected.setdefault(stage, {})[reason] = dirty[kind]
    truth = {
        "params": asdict(p),
        "generator_version": gen.GENERATOR_VERSION,
        "users": p.users,
        "products": p.products,
        "session_rate_scale": scale,
        "data_lines": int(counts["lines"]),
        "layout": layout(daily),
        "files": [f"{label}.csv" for label in labels],
        "dirty_rows": dirty,
        "expected_quarantine": expected,
        "clean_events": int(counts["lines"]) - sum(dirty.values()),
        "day_weights": p.day_weights(),
        "weekly_pattern_mon_to_sun": list(gen.WEEKLY_PATTERN),
        "trend_over_period": gen.TREND,
        "oracle": ("P(user buys in days [a, b)) = 1 - exp(-purchase_rate_per_day * sum(day_weights[d] "
                   "for d in [max(a, first_day), b))); rank users by it for the best achievable AUC"),
        "new_arrivals": ({"products_per_category": p.new_products_per_category, "arrival_days": gen.NEW_ARRIVAL_DAYS,
                          "view_share_once_arrived": gen.NEW_ARRIVAL_VIEW_SHARE}
                         if p.new_products_per_category else None),
        "styles": ({gen.CATEGORIES[c][0]: [datasets.FASHION_MNIST_CLASSES[k] for k in classes]
                    for c, classes in gen.APPAREL_STYLES.items()} | {"affinity": p.style_affinity}
                   if p.plants_products else None),
        "item_relations": ({
            "substitutes": "products 2j and 2j+1 of each category (those there from the start)",
            "substitute_share": gen.SUBSTITUTE_SHARE,
            "complements": {gen.CATEGORIES[a][0]: gen.CATEGORIES[b][0] for a, b in gen.COMPLEMENT_CATEGORIES.items()},
            "complement_follow_up": gen.COMPLEMENT_FOLLOW_UP, "complement_days": gen.COMPLEMENT_DAYS,
            "complement_buy": gen.COMPLEMENT_BUY,
            "category_transitions": {gen.CATEGORIES[a][0]: gen.CATEGORIES[b][0]
                                     for a, b in gen.CATEGORY_TRANSITIONS.items()},
            "transition_share": gen.TRANSITION_SHARE,
        } if p.item_relations else None),
        "change_points": gen.change_points_truth(p),
        "regions": customer_truth,
        "search": search_truth,
        "price_model": ("P(session buys) = min(0.95, p_convert * (price / ref_price) ** elasticity), "
                        "price = base_price * (1 - weekly discount)"),
    }
    lake.write_text_file(spark, f"{output}/_ground_truth/generator.json", json.dumps(truth, indent=2))
    lake.write_text_file(spark, f"{output}/_ground_truth/categories.json",
                         json.dumps(gen.categories_truth(), indent=2))
    log.info(f"generate: {truth['data_lines']:,} lines in {len(labels)} files under {output}/events "
          f"({sum(dirty.values()):,} dirty on purpose), {p.users:,} users, {p.products:,} products")
    return truth


def write_customers(spark: SparkSession, p: gen.GeneratorParams, users, output: str) -> dict:
    """customers/customers.csv (the customer master, dirty rows planted) -> its ground truth: the
    regions and their planted differences, the lines, and the dirty rows per quarantine reason."""
    lines = gen.customer_lines(gen.customers(users, p), p).cache()
    counts = {r["dirty_kind"]: r["count"] for r in lines.groupBy("dirty_kind").count().collect()}  # <= 4 rows
    tmp = f"{output}/customers/_writing"
    header = spark.createDataFrame([(-1, ",".join(gen.CUSTOMER_COLUMNS))], "user_index long, line string")
    # One file, the header first: sorted by the (constant) partition column first, so the writer
    # keeps this order instead of sorting again.
    (lines.select("user_index", "line").unionByName(header).coalesce(1).withColumn("part", F.lit(0))
     .sortWithinPartitions("part", "user_index", "line").select("line", "part")
     .write.partitionBy("part").text(tmp))
    lake.replace_directory_with_files(spark, tmp, {"part=0": f"{output}/customers/customers.csv"})
    lines.unpersist()
    dirty = {kind: int(counts.get(kind, 0)) for kind in gen.CUSTOMER_DIRTY_KINDS}
    return {**gen.regions_truth(p), "lines": int(sum(counts.values())), "dirty_rows": dirty,
            "expected_quarantine": {gen.CUSTOMER_DIRTY_KINDS[k]: n for k, n in dirty.items()}}


def write_search_log(spark: SparkSession, p: gen.GeneratorParams, users, output: str) -> dict:
    """search/<yyyy-mm-dd>.csv (one file per day, dirty lines planted) and the search ground truth:
    _ground_truth/search_relevance (query, product_id, relevance > 0) and generator.json's "search"."""
    intents = gen.search_intents(users, p)
    products = gen.search_products(spark, p)
    lines = gen.search_lines(gen.search_results(intents, products, p), p)
    observation = Observation("search_lines")
    lines = lines.observe(observation, F.count(F.lit(1)).alias("lines"),
                          *[F.sum(F.when(F.col("dirty_kind") == k, 1).otherwise(0)).alias(k)
                            for k in gen.SEARCH_DIRTY_KINDS])
    labels = p.file_labels(daily=True)
    headers = spark.createDataFrame([(label, -1, search_log.HEADER) for label in labels],
                                    "file string, order_key long, line string")
    tmp = f"{output}/search/_writing"
    (lines.select("file", "order_key", "line").unionByName(headers)
     .repartition(len(labels), "file").sortWithinPartitions("file", "order_key", "line")
     .select("file", "line").write.partitionBy("file").text(tmp))
    lake.replace_directory_with_files(spark, tmp, {f"file={label}": f"{output}/search/{label}.csv" for label in labels})
    counts = observation.get
    gen.search_relevance_truth(intents, products).write.mode("overwrite").parquet(
        f"{output}/_ground_truth/search_relevance")
    products.drop("product_index").write.mode("overwrite").parquet(f"{output}/_ground_truth/search_products")
    dirty = {k: int(counts[k]) for k in gen.SEARCH_DIRTY_KINDS}
    return {
        "searches": p.searches, "lines": int(counts["lines"]), "results_per_search": gen.SEARCH_RESULTS,
        "files": [f"{label}.csv" for label in labels],
        "dirty_rows": dirty, "expected_quarantine": {gen.SEARCH_DIRTY_KINDS[k]: n for k, n in dirty.items()},
        "examination": f"P(examine position k) = k ** -{gen.SEARCH_EXAMINATION_POWER}",
        "propensities": [k ** -gen.SEARCH_EXAMINATION_POWER for k in range(1, gen.SEARCH_RESULTS + 1)],
        "click_if_examined": f"{gen.SEARCH_CLICK_FLOOR} + {gen.SEARCH_CLICK_TOP - gen.SEARCH_CLICK_FLOOR:.2f} "
                             "* (2 ** relevance - 1) / 7",
        "buy_if_clicked": f"{gen.SEARCH_BUY_PER_RELEVANCE} * relevance",
        "relevance": "0 outside the wanted category, else [brand as asked] + [price band as asked] + [good], "
                     "capped at 3 (_ground_truth/search_relevance)",
        "logging_policy": f"weights {list(gen.SEARCH_LOG_WEIGHTS)} on (category word, brand, price band matched, "
                          "product promoted) + N(0, 1); the top results shown",
        "promoted_share": gen.SEARCH_PROMOTED_SHARE,
        "synonyms": {gen.category_word(c): list(words) for c, words in gen.SEARCH_SYNONYMS.items()},
        "price_words": {band: list(words) for band, words in gen.SEARCH_PRICE_WORDS.items()},
        "good_share": gen.SEARCH_GOOD_SHARE,
    }


def write_planted_products(spark: SparkSession, p: gen.GeneratorParams, output: str) -> None:
    """_ground_truth/products and, with product_images, catalog/product_images.csv."""
    truth = gen.products_truth(spark, p)
    if p.product_images:
        links = gen.product_images(truth, fashion_mnist_train_labels(spark))
        truth = truth.join(links, "product_id", "left")
        links_tmp = f"{output}/catalog/_writing_images"
        (links.orderBy("product_id").coalesce(1).withColumn("part", F.lit(0))
         .write.partitionBy("part").option("header", True).csv(links_tmp))
        lake.replace_directory_with_files(spark, links_tmp, {"part=0": f"{output}/catalog/product_images.csv"})
    else:
        truth = truth.withColumn("image_id", F.lit(None).cast("long"))
    names = F.create_map(*[x for i, name in enumerate(datasets.FASHION_MNIST_CLASSES) for x in (F.lit(i), F.lit(name))])
    (truth.withColumn("style_name", names[F.col("style_class")]).drop("image_draw")
     .write.mode("overwrite").parquet(f"{output}/_ground_truth/products"))


def fashion_mnist_train_labels(spark: SparkSession):
    """(image_id, label) of Fashion-MNIST's 60,000 training images (image_id as in bronze/product_images)."""
    import numpy as np

    folder = datasets.FASHION_MNIST.locate()
    labels = datasets.read_idx(folder / datasets.FASHION_MNIST_FILES["train"][1], datasets.IDX_LABELS_MAGIC)
    frame = pd.DataFrame({"image_id": np.arange(len(labels), dtype=np.int64), "label": labels.astype(np.int32)})
    return datasets.from_pandas(spark, frame)


def main(argv=None) -> int:
    parser = job_parser("generate", __doc__)
    parser.add_argument("--output", help="output folder (default: config generate.output)")
    parser.add_argument("--events", type=int, help="approximate number of events (default: config)")
    parser.add_argument("--seed", type=int, help="random seed (default: config)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the output is up to date")
    parser.add_argument("--daily", action=argparse.BooleanOptionalAction, default=None,
                        help="one file per day, events/2019-10-01.csv, ... (default: config generate.daily; "
                             "else one per month, events/2019-Oct.csv)")
    return run_job("generate", parser,
                   lambda spark, config, a: run(spark, config, a.output, a.events, a.seed, a.force, a.daily), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

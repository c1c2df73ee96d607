"""A deterministic synthetic clickstream in the REES46 CSV format, with planted, known signal.

Everything is built from Spark built-ins. Randomness comes from xxhash64 of (seed, purpose, keys),
so the output does not depend on partitioning, cores or run order: the same seed gives the same
rows on a laptop and on a cluster.

What is planted (and written to the ground truth by the `generate` job):
- users with latent engagement (how often they come), intent (how likely they add to cart and
  buy) and two preferred categories;
- sessions as an inhomogeneous Poisson process per user, whose intensity follows a weekly pattern
  and a linear trend (seasonality and trend in daily sales);
- a purchase probability per session = min(0.95, p_user * (price / category_ref_price) ** elasticity),
  so units respond to price with a known elasticity per category, and the best achievable
  purchase-propensity ranking is known (rank users by `purchase_rate_per_day`);
- bots and fraudsters with labels: `scraper` (burst sessions of many views, 1-2 s apart) and
  `carder` (new accounts that buy expensive items in fast view/cart/purchase loops);
- with hidden_fraud_fraction > 0 (opt-in: the default lake is unchanged), fraud that hides and
  users that only look like fraud: `takeover` (an old account with an ordinary history, taken over
  on `takeover_day`: a few human-paced sessions that each buy an expensive item from the carders'
  categories), `slow_scraper` (long view-only sessions over the whole catalogue at human pace,
  6-25 s apart) and `bulk_buyer` (legitimate: new accounts that buy most of what they view, in
  their own categories, at human pace, so the rules for card testers fire on them);
- dirty rows of known kinds and counts (duplicates, malformed lines, bad timestamps, negative
  and absurd prices, unknown event types, missing ids, events in the future);
- with regions (opt-in), a customer master (region, city, coordinates, signup date) and three
  regional differences: a weekend-heavy region, a regional promotion week and a more
  price-sensitive region (REGION_*);
- with change_points (opt-in), two changes a monitor must catch (`change_points_truth`): a bot
  surge (the scrapers come BOT_SURGE_FACTOR times as often for BOT_SURGE_DAYS days from 60 % of
  the window) and a price shock (one category's prices times PRICE_SHOCK_FACTOR for
  PRICE_SHOCK_DAYS days from 80 % of the window; its buyers answer with the planted elasticity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ecomlake.rees46 import COLUMNS as REES46_COLUMNS
from ecomlake.rees46 import CUSTOMER_COLUMNS


# (category_code, reference price, planted price elasticity). None: REES46 has uncoded categories.
CATEGORIES = (
    ("electronics.smartphone", 280.0, -1.2),
    ("electronics.audio.headphone", 60.0, -1.6),
    ("electronics.video.tv", 450.0, -1.0),
    ("computers.notebook", 700.0, -0.8),
    ("appliances.kitchen.washer", 350.0, -0.9),
    ("appliances.environment.vacuum", 180.0, -1.3),
    ("appliances.kitchen.kettle", 30.0, -2.0),
    ("apparel.shoes", 70.0, -2.2),
    ("apparel.shirt", 25.0, -2.5),
    ("furniture.living_room.sofa", 400.0, -1.5),
    ("kids.toys", 20.0, -1.8),
    ("sport.bicycle", 320.0, -1.2),
    ("construction.tools.drill", 85.0, -1.5),
    ("computers.peripherals.printer", 150.0, -1.1),
    (None, 40.0, -1.0),
)
# Carders buy from these (expensive, resellable): indexes into CATEGORIES. They are new accounts,
# opened over the last CARDER_DAYS days.
CARDER_DAYS = 21
CARDER_CATEGORIES = (0, 2, 3)
BRANDS = ("samsung", "apple", "xiaomi", "huawei", "lg", "sony", "lenovo", "acer", "hp", "bosch",
          "philips", "nike", "adidas", "lego", "makita")
CATEGORY_ID_BASE = 2053013552226107603
# Apparel categories (indexes into CATEGORIES) and the three Fashion-MNIST classes their products come
# in: a product's style is its index within the category mod 3 (generate.product_images gives it a
# training image of that class; generate.style_affinity makes users prefer one style).
APPAREL_STYLES = {7: (5, 7, 9), 8: (0, 2, 6)}  # shoes: sandal, sneaker, ankle boot; shirts: T-shirt/top, pullover, shirt
STYLES_PER_CATEGORY = 3
# New arrivals (generate.new_product_fraction; at least 3 per category): the last products of each
# category, each arriving on a day of the last NEW_ARRIVAL_DAYS. A view in the category goes with
# probability NEW_ARRIVAL_VIEW_SHARE to one of them drawn at random, kept if it has arrived (shops
# feature what is new: the share grows as they arrive). Nothing sees them before: not users, not bots.
NEW_ARRIVAL_DAYS = 14
NEW_ARRIVAL_VIEW_SHARE = 0.3
# Item relations (generate.item_relations), planted in normal users' sessions:
# - substitutes: products 2j and 2j+1 of a category (among those there from the start). A view at an
#   even slot of a session is followed, with probability SUBSTITUTE_SHARE, by its substitute at the
#   next slot; a session buys only its last product, so the pair is seldom bought together.
# - category transitions: after a view at an even slot in a source category, the next slot is in the
#   target category with probability TRANSITION_SHARE (the same product rank there).
# - complements: a purchase in a main category is followed, with probability COMPLEMENT_FOLLOW_UP,
#   by a session 1 to COMPLEMENT_DAYS days later that ends on the accessory (the product of the same
#   rank in the accessory category) and buys it with probability COMPLEMENT_BUY.
# Only even slots lead, so the product a relation follows is always the one shown.
SUBSTITUTE_SHARE = 0.35
CATEGORY_TRANSITIONS = {2: 1, 4: 5, 9: 10, 11: 7}  # tv -> headphone, washer -> vacuum, sofa -> toys, bicycle -> shoes
TRANSITION_SHARE = 0.3
COMPLEMENT_CATEGORIES = {0: 1, 3: 13, 7: 8}  # smartphone -> headphone, notebook -> printer, shoes -> shirt
COMPLEMENT_FOLLOW_UP, COMPLEMENT_DAYS, COMPLEMENT_BUY = 0.6, 5, 0.5
# Discount levels of weekly promotions and their probabilities.
DISCOUNTS = ((0.0, 0.70), (0.1, 0.15), (0.2, 0.10), (0.3, 0.05))
# Session intensity multiplier by ISO day of week (Mon..Sun) and total trend over the period.
WEEKLY_PATTERN = (-0.08, -0.10, -0.06, -0.02, 0.04, 0.14, 0.08)
TREND = 0.30
PRICE_SPREAD = 0.25  # sd of log(base price / category reference price)
# Per-day base session rates before scaling to the requested number of events.
# Bots are few and bursty: together they make up roughly a tenth of all events.
BASE_RATE = {"normal": 0.065, "scraper": 0.04, "carder": 0.25, "slow_scraper": 0.15, "bulk_buyer": 0.15}
MEAN_EXTRA_VIEWS = 3.5   # views per normal session = 1 + floor(Exponential(mean 3.5)), capped
MAX_VIEWS = 40
SCRAPER_MIN_VIEWS, SCRAPER_MEAN_EXTRA, SCRAPER_MAX_VIEWS = 30, 40.0, 300
SLOW_SCRAPER_MIN_VIEWS, SLOW_SCRAPER_MEAN_EXTRA, SLOW_SCRAPER_MAX_VIEWS = 15, 10.0, 60
# User kinds the labels call fraud; `bulk_buyer` is unusual but legitimate (label 0).
FRAUD_KINDS = ("scraper", "carder", "takeover", "slow_scraper")
# Kinds whose sessions are view/cart/purchase loops, and kinds whose sessions only view.
LOOP_KINDS, VIEW_ONLY_KINDS = ("carder", "bulk_buyer"), ("scraper", "slow_scraper")
# A taken-over account: 2-5 sessions spread over TAKEOVER_SPREAD_DAYS from the takeover day.
TAKEOVER_MIN_SESSIONS, TAKEOVER_EXTRA_SESSIONS, TAKEOVER_SPREAD_DAYS = 2, 4, 3

# Dirty kinds and the quarantine (stage, reason) each must end up in.
DIRTY_KINDS = {
    "duplicate": ("clean", "duplicate"),
    "malformed_line": ("ingest", "wrong_column_count"),
    "bad_timestamp": ("ingest", "unparseable_event_time"),
    "negative_price": ("clean", "negative_price"),
    "absurd_price": ("clean", "absurd_price"),
    "unknown_event_type": ("clean", "unknown_event_type"),
    "missing_user_id": ("clean", "missing_user_id"),
    "missing_product_id": ("clean", "missing_product_id"),
    "future_event": ("clean", "event_in_future"),
}
ABSURD_PRICE = "9999999.99"
# File label of an event by layout (daily?): (Python strftime, Spark datetime pattern), UTC days.
# Both layouts hold the same lines: a day's file is its month's file cut at midnight.
FILE_LABEL_FORMATS = {False: ("%Y-%b", "yyyy-MMM"), True: ("%Y-%m-%d", "yyyy-MM-dd")}
# Change points (generate.change_points), at fixed shares of the window so any length has them.
BOT_SURGE_START_SHARE, BOT_SURGE_DAYS, BOT_SURGE_FACTOR = 0.6, 3, 10.0
PRICE_SHOCK_START_SHARE, PRICE_SHOCK_DAYS, PRICE_SHOCK_FACTOR = 0.8, 5, 1.4
PRICE_SHOCK_CATEGORY = 1  # electronics.audio.headphone
# The columns each change moves, as the monitor names them (ecomlake.monitoring metric columns):
# bots add rows, sessions of many views and users; a price shock moves prices.
CHANGE_POINT_COLUMNS = {"bot_surge": ["*", "event_type", "user_key", "user_session"], "price_shock": ["price"],
                        "card_testers_arrive": ["event_type"]}
# Customer master (generate.regions): every user's region, city and coordinates, and three planted
# regional differences a regional analysis must find (recorded in the ground truth).
REGIONS = (  # (region, share of users, ((city, latitude, longitude), ...))
    ("north", 0.25, (("Northport", 54.35, 18.65), ("Lakeview", 53.78, 20.49))),
    ("south", 0.25, (("Southbay", 50.06, 19.94), ("Hillcrest", 49.82, 19.05))),
    ("east", 0.20, (("Eastfield", 51.25, 22.57), ("Riverton", 50.04, 22.00))),
    ("west", 0.20, (("Westhaven", 51.11, 17.03), ("Oakridge", 52.41, 16.93))),
    ("central", 0.10, (("Midtown", 52.23, 21.01),)),
)
CITY_JITTER_DEGREES = 0.05       # a customer's coordinates: the city's, +- this
REGION_WEEKEND = ("west", 1.5)   # a regional seasonality: west comes 1.5x as often on Saturdays and Sundays
REGION_PROMO = ("south", 1.8)    # a regional promotion week: south converts 1.8x as often ...
REGION_PROMO_START_SHARE, REGION_PROMO_DAYS = 0.5, 7   # ... for 7 days from half the window
REGION_ELASTICITY = ("east", 1.5)  # east's buyers answer prices 1.5x as strongly (elasticity x1.5)
# Dirty customer rows (generate.dirty_fraction of them) and the quarantine reason each must get.
CUSTOMER_DIRTY_KINDS = {"missing_region": "missing_region", "bad_coordinates": "unparseable_latitude",
                        "duplicate_customer": "duplicate_user_id"}
# Product search (generate.searches > 0): a search log beside the events, one line per result shown.
# A searcher wants a category (the user's first preferred category with SEARCH_PREFERRED_SHARE, else
# any coded one), with SEARCH_BRAND_SHARE a brand and with SEARCH_PRICE_SHARE a price band; the query
# says so in words: the category's own word (the last part of its code) or, with SEARCH_SYNONYM_SHARE,
# a synonym no product text holds; the brand; a price word. True relevance of a product to the query
# (0-3): 0 outside the wanted category, else [brand as asked or none asked] + [price band as asked or
# none asked] + [the product is one of the SEARCH_GOOD_SHARE good ones], capped at 3: goodness is
# seen only in what people click. The shop's search (the logging policy) is lexical, noisy and
# merchandised: score = SEARCH_LOG_WEIGHTS . (category word matched, brand matched, price band
# matched, product promoted) + N(0, 1) noise, over the whole catalogue; its top SEARCH_RESULTS are
# shown. SEARCH_PROMOTED_SHARE of the products are promoted (a business boost: not more relevant). Clicks follow the position-based model:
# a result at position k is examined with probability k ** -SEARCH_EXAMINATION_POWER (the planted
# position bias) and clicked, once examined, with probability SEARCH_CLICK_FLOOR + (SEARCH_CLICK_TOP -
# SEARCH_CLICK_FLOOR) * (2 ** relevance - 1) / 7; a click buys with probability
# SEARCH_BUY_PER_RELEVANCE * relevance.
SEARCH_SYNONYMS = {0: ("phone", "mobile"), 1: ("earbuds", "headset"), 2: ("television",), 3: ("laptop",),
                   4: ("washing machine",), 5: ("hoover",), 7: ("sneakers", "trainers"), 8: ("tee", "blouse"),
                   9: ("couch",), 11: ("bike",), 13: ("inkjet",)}
SEARCH_PRICE_WORDS = {"cheap": ("cheap", "budget"), "premium": ("premium", "luxury")}
SEARCH_PRICE_BAND = 0.15   # |log(base price / category reference price)| above it: cheap or premium
SEARCH_PREFERRED_SHARE, SEARCH_BRAND_SHARE, SEARCH_PRICE_SHARE, SEARCH_SYNONYM_SHARE = 0.6, 0.5, 0.3, 0.4
SEARCH_GOOD_SHARE, SEARCH_PROMOTED_SHARE = 0.4, 0.1
SEARCH_LOG_WEIGHTS = (2.0, 1.0, 0.5, 1.5)
SEARCH_RESULTS = 10
SEARCH_EXAMINATION_POWER = 1.0
SEARCH_CLICK_FLOOR, SEARCH_CLICK_TOP, SEARCH_BUY_PER_RELEVANCE = 0.03, 0.9, 0.05
# Dirty search-log lines (generate.dirty_fraction of them) and the quarantine reason each must get.
SEARCH_DIRTY_KINDS = {"malformed_line": "wrong_column_count", "bad_search_time": "unparseable_search_time",
                      "bad_position": "unparseable_position"}
# Bumped whenever the same parameters would give different rows, so earlier output is regenerated.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class GeneratorParams:
    events: int = 200_000
    seed: int = 42
    start_date: str = "2019-10-01"
    days: int = 61
    dirty_fraction: float = 0.005
    fraud_user_fraction: float = 0.02
    hidden_fraud_fraction: float = 0.0
    new_product_fraction: float = 0.0
    style_affinity: float = 0.0
    product_images: bool = False
    item_relations: bool = False
    change_points: bool = False
    regions: bool = False
    searches: int = 0

    def __post_init__(self):
        if self.events < 1000:
            raise ValueError(f"events must be at least 1000, got {self.events}")
        if self.days < 14:
            raise ValueError(f"days must be at least 14 (two weeks of seasonality), got {self.days}")
        if not 0 <= self.dirty_fraction < 0.5:
            raise ValueError(f"dirty_fraction must be in [0, 0.5), got {self.dirty_fraction}")
        if not 0 <= self.fraud_user_fraction < 0.5:
            raise ValueError(f"fraud_user_fraction must be in [0, 0.5), got {self.fraud_user_fraction}")
        if not 0 <= self.hidden_fraud_fraction < 0.5 - self.fraud_user_fraction:
            raise ValueError("hidden_fraud_fraction must be in [0, 0.5 - fraud_user_fraction), "
                             f"got {self.hidden_fraud_fraction}")
        if not 0 <= self.new_product_fraction <= 0.5:
            raise ValueError(f"new_product_fraction must be in [0, 0.5], got {self.new_product_fraction}")
        if not 0 <= self.style_affinity <= 1:
            raise ValueError(f"style_affinity must be in [0, 1], got {self.style_affinity}")
        if self.searches < 0:
            raise ValueError(f"searches must be 0 (no search log) or more, got {self.searches}")
        date.fromisoformat(self.start_date)
        if self.change_points and self.days < 28:
            raise ValueError(f"change_points need at least 28 days (a monitor's history before them), got {self.days}")

    @property
    def region_promo_days(self) -> range:
        start = round(self.days * REGION_PROMO_START_SHARE)
        return range(start, min(start + REGION_PROMO_DAYS, self.days))

    def weekend_days(self) -> list[int]:
        first = date.fromisoformat(self.start_date)
        return [d for d in range(self.days) if (first + timedelta(days=d)).weekday() >= 5]

    @property
    def bot_surge_days(self) -> range:
        start = round(self.days * BOT_SURGE_START_SHARE)
        return range(start, start + BOT_SURGE_DAYS)

    @property
    def price_shock_days(self) -> range:
        start = round(self.days * PRICE_SHOCK_START_SHARE)
        return range(start, start + PRICE_SHOCK_DAYS)

    @property
    def new_products_per_category(self) -> int:
        """Products of each category that arrive late (at least one per style when any)."""
        if self.new_product_fraction == 0:
            return 0
        return max(STYLES_PER_CATEGORY, math.floor(self.products_per_category * self.new_product_fraction))

    @property
    def plants_products(self) -> bool:
        """Whether products carry planted facts beyond the catalogue (styles, arrivals, images)."""
        return bool(self.new_product_fraction or self.style_affinity or self.product_images)

    @property
    def users(self) -> int:
        return max(100, self.events // 20)

    @property
    def products_per_category(self) -> int:
        return max(20, min(10_000, self.events // 250 // len(CATEGORIES)))

    @property
    def products(self) -> int:
        return self.products_per_category * len(CATEGORIES)

    @property
    def start_epoch(self) -> int:
        return int((date.fromisoformat(self.start_date) - date(1970, 1, 1)).total_seconds())

    def day_weights(self) -> list[float]:
        """Seasonal session-intensity weight of each day (weekly pattern x linear trend)."""
        first = date.fromisoformat(self.start_date)
        weights = []
        for d in range(self.days):
            dow = (first + timedelta(days=d)).weekday()
            weights.append((1 + TREND * d / (self.days - 1)) * (1 + WEEKLY_PATTERN[dow]))
        return weights

    def file_labels(self, daily: bool = False) -> list[str]:
        """One file per calendar month, named like REES46's files (2019-Oct), or with daily=True
        one per day (2019-10-01), in time order."""
        first = date.fromisoformat(self.start_date)
        labels = []
        for d in range(self.days):
            label = (first + timedelta(days=d)).strftime(FILE_LABEL_FORMATS[daily][0])
            if label not in labels:
                labels.append(label)
        return labels


# ---- deterministic randomness ----------------------------------------------------------------

_TWO_53 = float(1 << 53)


def uniform(seed: int, purpose: str, *keys) -> Column:
    """U[0, 1) from a hash of (seed, purpose, keys): same inputs, same number, anywhere."""
    h = F.xxhash64(F.lit(seed), F.lit(purpose), *keys)
    return F.pmod(h, F.lit(1 << 53)).cast("double") / _TWO_53


def normal(seed: int, purpose: str, *keys) -> Column:
    """N(0, 1) by Box-Muller from two hashed uniforms."""
    u1 = F.lit(1.0) - uniform(seed, purpose + "#1", *keys)  # (0, 1]: log is finite
    u2 = uniform(seed, purpose + "#2", *keys)
    return F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)


def exponential_floor(seed: int, purpose: str, mean: float, *keys) -> Column:
    """floor(Exponential(mean)): a geometric count."""
    return F.floor(-F.log(F.lit(1.0) - uniform(seed, purpose, *keys)) * mean)


def _lit_array(values) -> Column:
    return F.array(*[F.lit(v) for v in values])


def _pick(array_col: Column, index: Column) -> Column:
    """array[index] with a 0-based index."""
    return F.element_at(array_col, (index + 1).cast("int"))


# ---- catalogue -------------------------------------------------------------------------------


def _product_columns(p: GeneratorParams, product_idx: Column) -> dict[str, Column]:
    """Attributes of a product, as pure functions of its index (no join needed)."""
    per_cat = p.products_per_category
    cat = F.floor(product_idx / per_cat)
    ref_price = _pick(_lit_array([c[1] for c in CATEGORIES]), cat)
    base_price = F.round(ref_price * F.exp(PRICE_SPREAD * normal(p.seed, "base_price", product_idx)), 2)
    brand = F.when(uniform(p.seed, "no_brand", product_idx) < 0.1, F.lit(None).cast("string")).otherwise(
        _pick(_lit_array(BRANDS), F.pmod(F.xxhash64(F.lit(p.seed), F.lit("brand"), product_idx), len(BRANDS))))
    return {
        "category_index": cat,
        "product_id": (F.lit(1_000_000) + product_idx).cast("long"),
        "category_id": (F.lit(CATEGORY_ID_BASE) + cat * 1_000_003).cast("long"),
        "category_code": _pick(_lit_array([c[0] for c in CATEGORIES]).cast("array<string>"), cat),
        "brand": brand,
        "base_price": base_price,
        "ref_price": ref_price,
        "elasticity": _pick(_lit_array([c[2] for c in CATEGORIES]), cat),
    }


def catalog(spark: SparkSession, p: GeneratorParams) -> DataFrame:
    """The product catalogue: product_id, category_id, category_code, brand, base_price."""
    cols = _product_columns(p, F.col("id"))
    return spark.range(p.products).select(
        *[cols[c].alias(c) for c in ("product_id", "category_id", "category_code", "brand", "base_price")])


def products_truth(spark: SparkSession, p: GeneratorParams) -> DataFrame:
    """Planted facts per product: product_id, category_code, style_class (the Fashion-MNIST class of
    an apparel product, else null), new_arrival, arrival_date (the first day it can be seen), and
    image_draw (a hash that picks its image among its class's)."""
    idx = F.col("id")
    cols = _product_columns(p, idx)
    local = F.pmod(idx, p.products_per_category)
    styles = F.create_map(*[x for c, classes in APPAREL_STYLES.items() for x in (F.lit(c), _lit_array(classes))])
    style_class = F.element_at(styles[cols["category_index"]], (F.pmod(local, STYLES_PER_CATEGORY) + 1).cast("int"))
    return spark.range(p.products).select(
        cols["product_id"].alias("product_id"), cols["category_code"].alias("category_code"),
        style_class.cast("int").alias("style_class"),
        (local >= p.products_per_category - p.new_products_per_category).alias("new_arrival"),
        F.date_add(F.lit(p.start_date).cast("date"), arrival_day(p, idx)).alias("arrival_date"),
        F.pmod(F.xxhash64(F.lit(p.seed), F.lit("image"), idx), F.lit(1 << 31)).alias("image_draw"))


def item_relations_truth(spark: SparkSession, p: GeneratorParams) -> DataFrame:
    """The planted product pairs: product_id, related_product_id, relation ('substitute' both ways
    within a category, 'complement' from the main product to its accessory)."""
    per_cat, n_old = p.products_per_category, p.products_per_category - p.new_products_per_category
    idx = F.col("id")
    category, local = F.floor(idx / per_cat), F.pmod(idx, per_cat)
    substitute_local = local + 1 - 2 * F.pmod(local, 2)
    accessory = F.create_map(*[F.lit(x) for pair in COMPLEMENT_CATEGORIES.items() for x in pair])[category]
    product_id = _product_columns(p, idx)["product_id"]
    pairs = spark.range(p.products).where(local < n_old)
    substitutes = pairs.where(substitute_local < n_old).select(
        product_id.alias("product_id"), _product_columns(p, category * per_cat + substitute_local)["product_id"]
        .alias("related_product_id"), F.lit("substitute").alias("relation"))
    complements = pairs.where(accessory.isNotNull()).select(
        product_id.alias("product_id"), _product_columns(p, accessory * per_cat + local)["product_id"]
        .alias("related_product_id"), F.lit("complement").alias("relation"))
    return substitutes.unionByName(complements)


def category_transitions(events_df: DataFrame) -> DataFrame:
    """Category of a normal session's view -> category of its next view: from_category, to_category,
    views, share (of the views after from_category): the realised transition matrix."""
    order = Window.partitionBy("session_key").orderBy("event_index")
    views = (events_df.where((F.col("kind") == "normal") & (F.col("event_type") == "view"))
             .select("session_key", "event_index", F.coalesce("category_code", F.lit("")).alias("category")))
    pairs = (views.withColumn("to_category", F.lead("category").over(order))
             .where(F.col("to_category").isNotNull())
             .groupBy(F.col("category").alias("from_category"), "to_category").agg(F.count(F.lit(1)).alias("views")))
    return pairs.withColumn("share", F.col("views") / F.sum("views").over(Window.partitionBy("from_category")))


def product_images(truth: DataFrame, class_images: DataFrame) -> DataFrame:
    """products_truth rows x (image_id, label) of an image collection -> product_id, image_id: each
    apparel product gets an image of its style class, picked by its image_draw."""
    numbered = class_images.select(
        "image_id", F.col("label").alias("style_class"),
        (F.row_number().over(Window.partitionBy("label").orderBy("image_id")) - 1).alias("position"),
        F.count(F.lit(1)).over(Window.partitionBy("label")).alias("class_images"))
    per_class = numbered.select("style_class", "class_images").distinct()
    return (truth.where(F.col("style_class").isNotNull())
            .join(per_class, "style_class")
            .withColumn("position", F.pmod(F.col("image_draw"), F.col("class_images")))
            .join(numbered.select("style_class", "position", "image_id"), ["style_class", "position"])
            .select("product_id", "image_id"))


def categories_truth() -> list[dict]:
    """Planted per-category facts (reference price, elasticity, expected price factor)."""
    out = []
    for i, (code, ref, elasticity) in enumerate(CATEGORIES):
        out.append({
            "category_index": i,
            "category_id": CATEGORY_ID_BASE + i * 1_000_003,
            "category_code": code,
            "ref_price": ref,
            "elasticity": elasticity,
            "mean_price_factor": _mean_price_factor(elasticity),
        })
    return out


def _mean_price_factor(elasticity: float) -> float:
    """E[(price / ref_price) ** elasticity] over base-price spread and promotions."""
    spread = math.exp(0.5 * (PRICE_SPREAD * elasticity) ** 2)
    return spread * sum(prob * (1 - d) ** elasticity for d, prob in DISCOUNTS)


def _discount(p: GeneratorParams, product_idx: Column, week: Column) -> Column:
    u = uniform(p.seed, "discount", product_idx, week)
    out, cumulative = None, 0.0
    for level, prob in DISCOUNTS[:-1]:
        cumulative += prob
        out = F.when(u < cumulative, F.lit(level)) if out is None else out.when(u < cumulative, F.lit(level))
    return out.otherwise(F.lit(DISCOUNTS[-1][0]))


def _price_on_day(p: GeneratorParams, product_idx: Column, day: Column) -> Column:
    product = _product_columns(p, product_idx)
    price = product["base_price"] * (F.lit(1.0) - _discount(p, product_idx, F.floor(day / 7)))
    if p.change_points:
        shocked = ((product["category_index"] == PRICE_SHOCK_CATEGORY)
                   & day.between(p.price_shock_days[0], p.price_shock_days[-1]))
        price = F.when(shocked, price * PRICE_SHOCK_FACTOR).otherwise(price)
    return F.round(price, 2)


def customers(users_df: DataFrame, p: GeneratorParams) -> DataFrame:
    """The customer master: user_id, signup_date, region, city, latitude, longitude (users() with
    regions on). A user who is there from the first day signed up up to two years before it; a
    new one on their first day. Coordinates are the city's, jittered by CITY_JITTER_DEGREES."""
    uid = F.col("user_index")
    cities = F.create_map(*[x for name, _, towns in REGIONS for x in (
        F.lit(name), F.array(*[F.struct(F.lit(c).alias("city"), F.lit(lat).alias("lat"), F.lit(lon).alias("lon"))
                               for c, lat, lon in towns]))])
    towns = cities[F.col("region")]
    town = F.element_at(towns, (F.floor(uniform(p.seed, "city", uid) * F.size(towns)) + 1).cast("int"))
    jitter = lambda purpose: (uniform(p.seed, purpose, uid) - 0.5) * 2 * CITY_JITTER_DEGREES  # noqa: E731
    start = F.lit(p.start_date).cast("date")
    signup = F.when(F.col("first_day") > 0, F.date_add(start, F.col("first_day"))).otherwise(
        F.date_sub(start, F.floor(uniform(p.seed, "signup", uid) * 730).cast("int")))
    return users_df.select("user_index", "user_id", signup.alias("signup_date"), "region", town["city"].alias("city"),
                           F.round(town["lat"] + jitter("lat"), 5).alias("latitude"),
                           F.round(town["lon"] + jitter("lon"), 5).alias("longitude"))


def customer_lines(customers_df: DataFrame, p: GeneratorParams) -> DataFrame:
    """(dirty_kind, line) of customers/customers.csv, without the header, with dirty rows planted
    (generate.dirty_fraction of them): a missing region, coordinates that are not numbers, or a
    second line for the same user_id (the second copy is the dirty one)."""
    uid = F.col("user_index")
    kinds = list(CUSTOMER_DIRTY_KINDS)
    kind = F.when(uniform(p.seed, "customer_dirty", uid) < p.dirty_fraction,
                  _pick(_lit_array(kinds), F.floor(uniform(p.seed, "customer_dirty_kind", uid) * len(kinds))))
    fields = {"user_id": F.col("user_id").cast("string"), "signup_date": F.col("signup_date").cast("string"),
              "region": F.when(kind == "missing_region", F.lit("")).otherwise(F.col("region")),
              "city": F.col("city"),
              "latitude": F.when(kind == "bad_coordinates", F.lit("north")).otherwise(F.col("latitude").cast("string")),
              "longitude": F.col("longitude").cast("string")}
    line = F.concat_ws(",", *[F.coalesce(fields[c], F.lit("")) for c in CUSTOMER_COLUMNS])
    copies = F.when(kind == "duplicate_customer", F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))
    out = customers_df.select(uid, kind.alias("kind"), line.alias("line"), F.explode(copies).alias("copy"))
    return out.select("user_index", F.when((F.col("kind") == "duplicate_customer") & (F.col("copy") == 0), F.lit(None))
                      .otherwise(F.col("kind")).alias("dirty_kind"), "line")


def regions_truth(p: GeneratorParams) -> dict:
    first = date.fromisoformat(p.start_date)
    return {
        "regions": {name: {"share": share, "cities": {c: [lat, lon] for c, lat, lon in towns}}
                    for name, share, towns in REGIONS},
        "weekend_seasonality": {"region": REGION_WEEKEND[0], "weekend_factor": REGION_WEEKEND[1]},
        "promotion_week": {"region": REGION_PROMO[0], "conversion_factor": REGION_PROMO[1],
                           "dates": [(first + timedelta(days=d)).isoformat() for d in p.region_promo_days]},
        "price_sensitivity": {"region": REGION_ELASTICITY[0], "elasticity_factor": REGION_ELASTICITY[1]},
        "city_jitter_degrees": CITY_JITTER_DEGREES,
    }


def change_points_truth(p: GeneratorParams) -> list[dict]:
    """The changes in the data a monitor should see: kind, dates (ISO days), the columns they move,
    detect ('each' day of a jump must alert; 'any' day of a ramp) and what was done. Every lake with
    card testers has one: they are new accounts that arrive over the last CARDER_DAYS days, and
    their view-cart-purchase loops add carts and purchases (a ramp). generate.change_points adds
    the bot surge and the price shock (jumps)."""
    first = date.fromisoformat(p.start_date)
    days = lambda r: [(first + timedelta(days=d)).isoformat() for d in r]  # noqa: E731
    out = []
    if p.fraud_user_fraction > 0 and p.days > CARDER_DAYS:
        out.append({"kind": "card_testers_arrive", "dates": days(range(p.days - CARDER_DAYS, p.days)),
                    "columns": CHANGE_POINT_COLUMNS["card_testers_arrive"], "detect": "any",
                    "what": "new accounts in view-cart-purchase loops"})
    if p.change_points:
        out += [
            {"kind": "bot_surge", "dates": days(p.bot_surge_days), "columns": CHANGE_POINT_COLUMNS["bot_surge"],
             "detect": "each", "what": f"scrapers' sessions x{BOT_SURGE_FACTOR:g}"},
            {"kind": "price_shock", "dates": days(p.price_shock_days), "columns": CHANGE_POINT_COLUMNS["price_shock"],
             "detect": "each", "what": f"{CATEGORIES[PRICE_SHOCK_CATEGORY][0]} prices x{PRICE_SHOCK_FACTOR:g}",
             "category_code": CATEGORIES[PRICE_SHOCK_CATEGORY][0]},
        ]
    return out


# ---- users -----------------------------------------------------------------------------------


def users(spark: SparkSession, p: GeneratorParams) -> DataFrame:
    """Latent user traits (the ground truth), before the rate is scaled to the event budget."""
    n_cat = len(CATEGORIES)
    uid = F.col("user_index")
    fraud_u = uniform(p.seed, "fraud", uid)
    f, h = p.fraud_user_fraction, p.hidden_fraud_fraction
    # With h = 0 the extra branches never fire: every other user draws exactly what it drew before.
    kind = (F.when(fraud_u < f / 2, "scraper").when(fraud_u < f, "carder")
            .when(fraud_u < f + h / 3, "takeover").when(fraud_u < f + 2 * h / 3, "slow_scraper")
            .when(fraud_u < f + h, "bulk_buyer").otherwise("normal"))
    engagement = normal(p.seed, "engagement", uid)
    intent = normal(p.seed, "intent", uid)
    # Half the users exist before the window starts; carders and bulk buyers are new accounts
    # (last 3 weeks); taken-over accounts are old ones.
    first_day = (F.when(F.col("kind").isin(*LOOP_KINDS),
                        F.floor(F.lit(p.days - CARDER_DAYS) + uniform(p.seed, "first_day", uid) * CARDER_DAYS))
                 .when(F.col("kind") == "takeover", F.lit(0))
                 .when(uniform(p.seed, "old_user", uid) < 0.5, F.lit(0))
                 .otherwise(F.floor(uniform(p.seed, "first_day", uid) * p.days * 0.8)))
    base_rate = (F.when(F.col("kind") == "scraper", BASE_RATE["scraper"])
                 .when(F.col("kind") == "carder", BASE_RATE["carder"])
                 .when(F.col("kind") == "slow_scraper", BASE_RATE["slow_scraper"])
                 .when(F.col("kind") == "bulk_buyer", BASE_RATE["bulk_buyer"])
                 .otherwise(F.lit(BASE_RATE["normal"]) * F.exp(0.8 * F.col("engagement") - 0.32)))
    out = (
        spark.range(p.users).withColumnRenamed("id", "user_index")
        .select(
            uid,
            (F.lit(512_000_000) + uid).cast("long").alias("user_id"),
            kind.alias("kind"),
            engagement.alias("engagement"),
            intent.alias("intent"),
            # Popular categories come first in CATEGORIES: u ** 1.7 skews preferences towards them.
            F.floor(F.pow(uniform(p.seed, "pref1", uid), 1.7) * n_cat).cast("int").alias("preferred_category_1"),
            F.floor(uniform(p.seed, "pref2", uid) * n_cat).cast("int").alias("preferred_category_2"),
        )
        .withColumn("first_day", first_day.cast("int"))
        # The day a taken-over account changes hands: 4 to 21 days before the window ends.
        .withColumn("takeover_day", F.when(F.col("kind") == "takeover", F.floor(
            F.lit(p.days - 21) + uniform(p.seed, "takeover_day", uid) * 18)).cast("int"))
        .withColumn("base_rate", base_rate)
        # Conversion at the reference price, and the chance a non-buying session still adds to cart.
        .withColumn("p_convert", F.when(F.col("kind").isin(*LOOP_KINDS), 1.0)
                    .when(F.col("kind").isin(*VIEW_ONLY_KINDS), 0.0)
                    .otherwise(1 / (1 + F.exp(-(F.lit(-2.8) + 0.8 * F.col("intent") + 0.3 * F.col("engagement"))))))
        .withColumn("p_cart", 1 / (1 + F.exp(-(F.lit(-1.2) + 0.9 * F.col("intent")))))
    )
    if p.regions:  # an extra column: with regions off every user is exactly what it was
        u, cumulative, region = uniform(p.seed, "region", uid), 0.0, None
        for name, share, _ in REGIONS[:-1]:
            cumulative += share
            region = F.when(u < cumulative, F.lit(name)) if region is None else region.when(u < cumulative, F.lit(name))
        out = out.withColumn("region", region.otherwise(F.lit(REGIONS[-1][0])))
    return out


def _remaining_weight(p: GeneratorParams, first_day: Column) -> Column:
    """Sum of the day weights from first_day to the end of the window."""
    weights = p.day_weights()
    suffix = [sum(weights[d:]) for d in range(p.days)]
    return _pick(_lit_array(suffix), first_day)


def _expected_session_length(kind: Column, p_convert: Column, p_cart: Column) -> Column:
    mean_views = 1 + 1 / (math.exp(1 / MEAN_EXTRA_VIEWS) - 1)
    scraper = SCRAPER_MIN_VIEWS + 1 / (math.exp(1 / SCRAPER_MEAN_EXTRA) - 1)
    slow_scraper = SLOW_SCRAPER_MIN_VIEWS + 1 / (math.exp(1 / SLOW_SCRAPER_MEAN_EXTRA) - 1)
    # (A taken-over account's extra sessions are not in the budget: a few events each.)
    return (F.when(kind == "scraper", scraper).when(kind.isin(*LOOP_KINDS), 3 * 6.5)
            .when(kind == "slow_scraper", slow_scraper)
            .otherwise(mean_views + 2 * p_convert + (1 - p_convert) * p_cart * 1.5))


def rate_scale(users_df: DataFrame, p: GeneratorParams) -> float:
    """Factor on every user's session rate so that the expected number of events is p.events.
    With hidden fraud, the factor of the same lake without it: every other user keeps exactly its
    sessions, and the hidden users' events come on top of p.events."""
    if p.hidden_fraud_fraction > 0:
        users_df = users(users_df.sparkSession, replace(p, hidden_fraud_fraction=0.0))
    expected = users_df.select(F.sum(
        F.col("base_rate") * _remaining_weight(p, F.col("first_day"))
        * _expected_session_length(F.col("kind"), F.col("p_convert"), F.col("p_cart"))
    )).head()[0]
    return p.events / expected


def scaled_users(users_df: DataFrame, p: GeneratorParams, scale: float) -> DataFrame:
    """Users with their final session rate and the known purchase intensity (oracle for propensity)."""
    cats = categories_truth()
    mean_factor = _lit_array([c["mean_price_factor"] for c in cats])
    overall = sum(c["mean_price_factor"] for c in cats) / len(cats)
    user_factor = (0.5 * _pick(mean_factor, F.col("preferred_category_1"))
                   + 0.25 * _pick(mean_factor, F.col("preferred_category_2")) + 0.25 * overall)
    return (users_df
            .withColumn("session_rate_per_day", F.col("base_rate") * scale)
            .withColumn("purchase_rate_per_day",
                        F.col("session_rate_per_day") * F.least(F.lit(0.95), F.col("p_convert") * user_factor))
            .drop("base_rate"))


# ---- sessions and events ---------------------------------------------------------------------


def sessions(users_df: DataFrame, p: GeneratorParams) -> DataFrame:
    """Sessions by thinning: each user draws cap candidates uniform in time, kept with
    probability rate * weight(day) / cap, which gives a Poisson process with that intensity."""
    weights = p.day_weights()
    day_weight, w_max = _pick(_lit_array(weights), F.col("day")), F.lit(max(weights))
    if p.change_points:  # the scrapers' own intensity, with the surge
        surge = [w * (BOT_SURGE_FACTOR if d in p.bot_surge_days else 1.0) for d, w in enumerate(weights)]
        is_scraper = F.col("kind") == "scraper"
        day_weight = F.when(is_scraper, _pick(_lit_array(surge), F.col("day"))).otherwise(day_weight)
        w_max = F.when(is_scraper, F.lit(max(surge))).otherwise(w_max)
    if p.regions:  # the weekend region's own weekly pattern
        weekend, factor = set(p.weekend_days()), REGION_WEEKEND[1]
        in_region = F.col("region") == REGION_WEEKEND[0]
        by_day = _lit_array([factor if d in weekend else 1.0 for d in range(p.days)])
        day_weight = F.when(in_region, day_weight * _pick(by_day, F.col("day"))).otherwise(day_weight)
        w_max = F.when(in_region, w_max * factor).otherwise(w_max)
    active_days = F.lit(p.days) - F.col("first_day")
    mu = F.col("session_rate_per_day") * w_max * active_days
    seed = p.seed
    cand = (users_df
            .withColumn("cap", F.ceil(2 * mu + 4).cast("int"))
            .withColumn("candidate", F.explode(F.sequence(F.lit(0), F.col("cap") - 1)))
            .withColumn("start_second", F.floor(
                (F.col("first_day") + uniform(seed, "start", F.col("user_index"), F.col("candidate")) * active_days)
                * 86400).cast("long"))
            .withColumn("day", F.floor(F.col("start_second") / 86400).cast("int")))
    keep = (uniform(seed, "keep", F.col("user_index"), F.col("candidate"))
            < F.col("session_rate_per_day") * day_weight * active_days / F.col("cap"))
    s = cand.where(keep)
    if p.hidden_fraud_fraction > 0:
        s = _with_takeovers(s, users_df, p)
    s = s.withColumn("session_key", F.xxhash64(F.lit(seed), F.col("user_index"), F.col("candidate")))
    key = F.col("session_key")
    n_views = (F.when(F.col("kind") == "scraper", F.least(
                   F.lit(SCRAPER_MIN_VIEWS) + exponential_floor(seed, "views", SCRAPER_MEAN_EXTRA, key),
                   F.lit(SCRAPER_MAX_VIEWS)))
               .when(F.col("kind") == "slow_scraper", F.least(
                   F.lit(SLOW_SCRAPER_MIN_VIEWS) + exponential_floor(seed, "views", SLOW_SCRAPER_MEAN_EXTRA, key),
                   F.lit(SLOW_SCRAPER_MAX_VIEWS)))
               .when(F.col("kind") == "takeover", F.lit(1) + F.floor(uniform(seed, "views", key) * 3))
               .when(F.col("kind").isin(*LOOP_KINDS), F.lit(0))
               .otherwise(F.least(F.lit(1) + exponential_floor(seed, "views", MEAN_EXTRA_VIEWS, key),
                                  F.lit(MAX_VIEWS))))
    gap = (F.when(F.col("kind") == "scraper", 1 + F.floor(uniform(seed, "gap", key) * 2))
           .when(F.col("kind") == "carder", 3 + F.floor(uniform(seed, "gap", key) * 5))
           .when(F.col("kind") == "slow_scraper", 6 + F.floor(uniform(seed, "gap", key) * 20))
           .when(F.col("kind") == "bulk_buyer", 20 + F.floor(uniform(seed, "gap", key) * 60))
           .otherwise(5 + F.floor(uniform(seed, "gap", key) * 115)))
    s = s.select(
        "user_index", "user_id", "kind", "preferred_category_1", "preferred_category_2",
        "p_convert", "p_cart", "session_key", "start_second", "day", *(["region"] if p.regions else []),
        n_views.cast("int").alias("n_views"), gap.cast("int").alias("gap_seconds"),
        (3 * (3 + F.floor(uniform(seed, "carder_loops", key) * 8))).cast("int").alias("carder_events"),
    )
    # The product a normal session ends on (and buys, if it converts): its price sets the odds.
    s = _with_product(s, p, F.col("n_views") - 1, "last_product")
    last = _product_columns(p, F.col("last_product"))
    elasticity, promotion = last["elasticity"], F.lit(1.0)
    if p.regions:
        elasticity = F.when(F.col("region") == REGION_ELASTICITY[0], elasticity * REGION_ELASTICITY[1]).otherwise(
            elasticity)
        promotion = F.when((F.col("region") == REGION_PROMO[0])
                           & F.col("day").between(p.region_promo_days[0], p.region_promo_days[-1]),
                           F.lit(REGION_PROMO[1])).otherwise(promotion)
    price_factor = F.pow(_price_on_day(p, F.col("last_product"), F.col("day")) / last["ref_price"], elasticity)
    converted = ((F.col("kind") == "takeover")
                 | (uniform(seed, "convert", key)
                    < F.least(F.lit(0.95), F.col("p_convert") * price_factor * promotion)))
    carted = uniform(seed, "cart", key) < F.col("p_cart")
    removed = uniform(seed, "remove", key) < 0.5
    n_events = (F.when(F.col("kind").isin(*VIEW_ONLY_KINDS), F.col("n_views"))
                .when(F.col("kind").isin(*LOOP_KINDS), F.col("carder_events"))
                .when(converted, F.col("n_views") + 2)
                .when(carted & removed, F.col("n_views") + 2)
                .when(carted, F.col("n_views") + 1)
                .otherwise(F.col("n_views")))
    s = s.withColumn("converted", converted).withColumn("n_events", n_events.cast("int"))
    return _with_complement_follow_ups(s, p) if p.item_relations else s


def _with_complement_follow_ups(s: DataFrame, p: GeneratorParams) -> DataFrame:
    """Sessions plus, after a normal session that bought in a main category (COMPLEMENT_CATEGORIES),
    with probability COMPLEMENT_FOLLOW_UP a session 1 to COMPLEMENT_DAYS days later (inside the
    window) of 1-3 views ending on the accessory (column planted_last), bought with probability
    COMPLEMENT_BUY. Ordinary sessions have planted_last null."""
    seed, key = p.seed, F.col("session_key")
    per_cat = p.products_per_category
    n_old = per_cat - p.new_products_per_category
    category, local = F.floor(F.col("last_product") / per_cat), F.pmod(F.col("last_product"), per_cat)
    accessory_category = F.create_map(*[F.lit(x) for pair in COMPLEMENT_CATEGORIES.items() for x in pair])[category]
    start = F.col("start_second") + F.floor(
        (1 + uniform(seed, "complement_delay", key) * (COMPLEMENT_DAYS - 1)) * 86400).cast("long")
    follow_key = F.xxhash64(F.lit(seed), F.lit("complement_session"), key)
    n_views = (F.lit(1) + F.floor(uniform(seed, "complement_views", key) * 3)).cast("int")
    bought = uniform(seed, "complement_buy", key) < COMPLEMENT_BUY
    follow_ups = (
        s.where((F.col("kind") == "normal") & F.col("converted") & accessory_category.isNotNull()
                & (local < n_old) & (uniform(seed, "complement", key) < COMPLEMENT_FOLLOW_UP))
        .withColumn("planted_last", (accessory_category * per_cat + local).cast("long"))
        .withColumn("start_second", start)
        .where(F.col("start_second") < p.days * 86400)
        .withColumn("day", F.floor(F.col("start_second") / 86400).cast("int"))
        .withColumn("n_views", n_views)
        .withColumn("gap_seconds", (5 + F.floor(uniform(seed, "complement_gap", key) * 115)).cast("int"))
        .withColumn("converted", bought)
        .withColumn("n_events", F.when(bought, F.col("n_views") + 2).otherwise(F.col("n_views")).cast("int"))
        .withColumn("last_product", F.col("planted_last"))
        .withColumn("session_key", follow_key))
    return s.withColumn("planted_last", F.lit(None).cast("long")).unionByName(follow_ups)


def _with_takeovers(kept: DataFrame, users_df: DataFrame, p: GeneratorParams) -> DataFrame:
    """Sessions of taken-over accounts: the owner's ordinary sessions before takeover_day (as a
    normal user's), none of the owner's after it, and 2-5 sessions of the new holder (session kind
    `takeover`) spread over the TAKEOVER_SPREAD_DAYS from takeover_day."""
    takeover = F.col("kind") == "takeover"
    owner = (kept.where(~takeover | (F.col("day") < F.col("takeover_day")))
             .withColumn("kind", F.when(takeover, F.lit("normal")).otherwise(F.col("kind"))))
    uid = F.col("user_index")
    n_sessions = F.lit(TAKEOVER_MIN_SESSIONS) + F.floor(uniform(p.seed, "takeover_sessions", uid)
                                                         * TAKEOVER_EXTRA_SESSIONS)
    # Candidate numbers far above any thinning candidate: the session keys cannot collide.
    first = 1_000_000
    holder = (users_df.where(takeover)
              .withColumn("cap", F.lit(0))
              .withColumn("candidate", F.explode(F.sequence(F.lit(first), F.lit(first) + n_sessions.cast("int") - 1)))
              .withColumn("start_second", F.floor(
                  (F.col("takeover_day") + uniform(p.seed, "takeover_start", uid, F.col("candidate"))
                   * F.least(F.lit(TAKEOVER_SPREAD_DAYS), F.lit(p.days) - F.col("takeover_day"))) * 86400).cast("long"))
              .withColumn("day", F.floor(F.col("start_second") / 86400).cast("int")))
    return owner.unionByName(holder.select(*kept.columns))


def _with_product(df: DataFrame, p: GeneratorParams, slot: Column, name: str) -> DataFrame:
    """df + column `name`: the product index viewed at a slot of a session (a pure function of
    session key and slot). With planted relations the slot's and the previous slot's products are
    columns of their own first: inlined, the expression outgrows what Spark's code generator compiles."""
    if not p.item_relations:
        return df.withColumn(name, _base_product_for(p, slot))
    df = (df.withColumn("_slot", slot.cast("int"))
          .withColumn("_base", _base_product_for(p, F.col("_slot")))
          .withColumn("_previous", _base_product_for(p, F.col("_slot") - 1)))
    return (df.withColumn(name, _with_planted_relations(p, F.col("_slot"), F.col("_base"), F.col("_previous")))
            .drop("_slot", "_base", "_previous"))


def _with_planted_relations(p: GeneratorParams, slot: Column, base: Column, previous: Column) -> Column:
    """At an odd slot of a normal session, the previous (even) slot's product may be followed by a
    product of the planted target category or by its substitute; else `base`."""
    seed, key = p.seed, F.col("session_key")
    per_cat, n_old = p.products_per_category, p.products_per_category - p.new_products_per_category
    previous_category, previous_local = F.floor(previous / per_cat), F.pmod(previous, per_cat)
    follows = (F.col("kind") == "normal") & (F.pmod(slot, 2) == 1)
    target = F.create_map(*[F.lit(x) for pair in CATEGORY_TRANSITIONS.items() for x in pair])[previous_category]
    transition = follows & target.isNotNull() & (uniform(seed, "transition", key, slot) < TRANSITION_SHARE)
    target_rank = F.floor(F.pow(uniform(seed, "transition_rank", key, slot), 2) * n_old)
    # 2j <-> 2j+1 among the products there from the start
    substitute_local = previous_local + 1 - 2 * F.pmod(previous_local, 2)
    substitute = (follows & (substitute_local < n_old) & (previous_local < n_old)
                  & (uniform(seed, "substitute", key, slot) < SUBSTITUTE_SHARE))
    return (F.when(transition, target * per_cat + target_rank)
            .when(substitute, previous_category * per_cat + substitute_local)
            .otherwise(base))


def _with_session_product(df: DataFrame, p: GeneratorParams, slot: Column) -> DataFrame:
    """df + product_index of each event: _with_product, except a complement follow-up session's last
    view, which is its planted accessory."""
    df = _with_product(df, p, slot, "product_index")
    if p.item_relations:
        df = df.withColumn("product_index", F.when(F.col("planted_last").isNotNull() & (slot == F.col("n_views") - 1),
                                                   F.col("planted_last")).otherwise(F.col("product_index")))
    return df


def _base_product_for(p: GeneratorParams, slot: Column) -> Column:
    """The product a slot shows before planted relations."""
    n_cat = len(CATEGORIES)
    seed, key = p.seed, F.col("session_key")
    # The hash depends on the slot's type: sessions() and events() must hash the same int.
    slot = slot.cast("int")
    u_cat = uniform(seed, "category", key, slot)
    category = (F.when(u_cat < 0.5, F.col("preferred_category_1"))
                .when(u_cat < 0.75, F.col("preferred_category_2"))
                .otherwise(F.floor(uniform(seed, "any_category", key, slot) * n_cat)))
    carder_category = _pick(_lit_array(list(CARDER_CATEGORIES)),
                            F.floor(uniform(seed, "carder_category", key, slot) * len(CARDER_CATEGORIES)))
    per_cat, n_new = p.products_per_category, p.new_products_per_category
    n_old = per_cat - n_new
    # Popularity within a category is skewed: rank = floor(n * u^2).
    rank = F.floor(F.pow(uniform(seed, "rank", key, slot), 2) * n_old)
    scraped = F.floor(uniform(seed, "scrape", key, slot) * p.products)
    if p.style_affinity or n_new:
        rank = _planted_product_choice(p, category, rank, slot)
    if n_new:  # bots pick among the products there from the start
        scraped = F.floor(scraped / per_cat) * per_cat + F.pmod(scraped, per_cat) * n_old / per_cat
    by_kind = (F.when(F.col("kind").isin(*VIEW_ONLY_KINDS), F.floor(scraped))
               .when(F.col("kind").isin("carder", "takeover"), carder_category * per_cat
                     + F.floor(uniform(seed, "rank", key, slot) * n_old))
               .otherwise(category * per_cat + rank))
    return by_kind.cast("long")


def _of_style(local: Column, style: Column, low: int, high: int) -> Column:
    """The product index of style `style` (index mod 3) at or just below `local`, or 3 above that
    when it would fall under `low`; `local` itself when the result is not in [low, high)."""
    styled = local - F.pmod(local - style, STYLES_PER_CATEGORY)
    styled = F.when(styled < low, styled + STYLES_PER_CATEGORY).otherwise(styled)
    return F.when(styled < high, styled).otherwise(local)


def user_style(p: GeneratorParams, category: Column) -> Column:
    """The style (0..2) a user prefers in an apparel category."""
    return F.floor(uniform(p.seed, "style", F.col("user_index"), category) * STYLES_PER_CATEGORY)


def arrival_day(p: GeneratorParams, product_idx: Column) -> Column:
    """Day a product arrives: 0 for the catalogue's first products, one of the last NEW_ARRIVAL_DAYS
    for the new ones."""
    local = F.pmod(product_idx, p.products_per_category)
    late = F.lit(p.days - NEW_ARRIVAL_DAYS) + F.floor(uniform(p.seed, "arrival", product_idx) * NEW_ARRIVAL_DAYS)
    return F.when(local >= p.products_per_category - p.new_products_per_category,
                  F.greatest(late, F.lit(0))).otherwise(F.lit(0)).cast("int")


def _planted_product_choice(p: GeneratorParams, category: Column, rank: Column, slot: Column) -> Column:
    """A normal session's product within its category when styles or new arrivals are planted: the
    user's style with probability style_affinity (apparel), and an arrived new product with
    probability NEW_ARRIVAL_VIEW_SHARE (uniform among the new ones)."""
    seed, key = p.seed, F.col("session_key")
    per_cat, n_new = p.products_per_category, p.new_products_per_category
    n_old = per_cat - n_new
    apparel = category.isin(*APPAREL_STYLES)
    prefers = apparel & (uniform(seed, "prefer_style", key, slot) < p.style_affinity) if p.style_affinity \
        else F.lit(False)
    style = user_style(p, category)
    local = F.when(prefers, _of_style(rank, style, 0, n_old)).otherwise(rank)
    if n_new:
        new = F.lit(n_old) + F.floor(uniform(seed, "new_product", key, slot) * n_new)
        new = F.when(prefers, _of_style(new, style, n_old, per_cat)).otherwise(new)
        shown = ((uniform(seed, "new_share", key, slot) < NEW_ARRIVAL_VIEW_SHARE)
                 & (arrival_day(p, category * per_cat + new) <= F.col("day")))
        local = F.when(shown, new).otherwise(local)
    return local


def events(sessions_df: DataFrame, p: GeneratorParams) -> DataFrame:
    """Clean typed events (one row per event) from sessions."""
    seed = p.seed
    e = sessions_df.withColumn("i", F.explode(F.sequence(F.lit(0), F.col("n_events") - 1)))
    i, n_views = F.col("i"), F.col("n_views")
    event_type = (F.when(F.col("kind").isin(*LOOP_KINDS), _pick(_lit_array(["view", "cart", "purchase"]), F.pmod(i, 3)))
                  .when(i < n_views, "view")
                  .when(i == n_views, "cart")
                  .when(F.col("converted"), "purchase")
                  .otherwise("remove_from_cart"))
    slot = F.when(F.col("kind").isin(*LOOP_KINDS), F.floor(i / 3)).otherwise(F.least(i, n_views - 1))
    e = _with_session_product(e.withColumn("event_type", event_type), p, slot)
    gap = F.col("gap_seconds")
    second = F.col("start_second") + i * gap + F.floor(uniform(seed, "jitter", F.col("session_key"), i) * gap / 2)
    prod = _product_columns(p, F.col("product_index"))
    return e.select(
        F.col("session_key"), i.alias("event_index"),
        (F.lit(p.start_epoch) + second).alias("epoch_second"),
        "event_type", "kind",
        *[prod[c].alias(c) for c in ("product_id", "category_id", "category_code", "brand")],
        _price_on_day(p, F.col("product_index"), F.floor(second / 86400)).alias("price"),
        "user_id",
        _session_uuid(seed, F.col("session_key")).alias("user_session"),
    )


def _dirty_kind(p: GeneratorParams, purpose: str, kinds: list[str], *key: Column) -> Column:
    """Which dirty kind a line is made (null: it stays clean): p.dirty_fraction of the lines, the
    kind drawn evenly from `kinds`."""
    return F.when(uniform(p.seed, purpose, *key) < p.dirty_fraction,
                  _pick(_lit_array(kinds), F.floor(uniform(p.seed, f"{purpose}_kind", *key) * len(kinds))))


def _utc_text(epoch_second: Column) -> Column:
    """Seconds since the epoch as REES46 writes times: 2019-10-01 00:00:00 UTC."""
    return F.from_unixtime(epoch_second, "yyyy-MM-dd HH:mm:ss 'UTC'")


def _session_uuid(seed: int, key: Column) -> Column:
    h = F.lower(F.concat(F.lpad(F.hex(F.xxhash64(F.lit(seed), F.lit("uuid1"), key)), 16, "0"),
                         F.lpad(F.hex(F.xxhash64(F.lit(seed), F.lit("uuid2"), key)), 16, "0")))
    return F.concat_ws("-", F.substring(h, 1, 8), F.substring(h, 9, 4), F.substring(h, 13, 4),
                       F.substring(h, 17, 4), F.substring(h, 21, 12))


def csv_lines(events_df: DataFrame, p: GeneratorParams, daily: bool = False) -> DataFrame:
    """CSV lines (file label, order key, dirty kind, line), with dirty rows planted.

    A dirty row replaces a clean one, except `duplicate`, which repeats it. Column `dirty_kind`
    is null for clean rows; the job counts lines per kind as ground truth. The file label is the
    event's month (2019-Oct) or, with daily=True, its day (2019-10-01): the lines are the same.
    """
    dirty_kind = _dirty_kind(p, "dirty", list(DIRTY_KINDS), F.col("session_key"), F.col("event_index"))
    e = events_df.withColumn("dirty_kind", dirty_kind).withColumn("ts", _utc_text(F.col("epoch_second")))
    kind = F.col("dirty_kind")
    price = F.col("price").cast("decimal(12,2)").cast("string")
    fields = {
        "event_time": F.when(kind == "bad_timestamp", F.lit("2019-13-45 25:61:00 UTC"))
                       .when(kind == "future_event", F.concat(F.lit("2099"), F.substring("ts", 5, 100)))
                       .otherwise(F.col("ts")),
        "event_type": F.when(kind == "unknown_event_type", F.lit("click")).otherwise(F.col("event_type")),
        "product_id": F.when(kind == "missing_product_id", F.lit("")).otherwise(F.col("product_id").cast("string")),
        "category_id": F.col("category_id").cast("string"),
        "category_code": F.col("category_code"),
        "brand": F.col("brand"),
        "price": F.when(kind == "negative_price", F.concat(F.lit("-"), price))
                  .when(kind == "absurd_price", F.lit(ABSURD_PRICE)).otherwise(price),
        "user_id": F.when(kind == "missing_user_id", F.lit("")).otherwise(F.col("user_id").cast("string")),
        "user_session": F.col("user_session"),
    }
    values = [F.coalesce(fields[c], F.lit("")) for c in REES46_COLUMNS]
    line = F.when(kind == "malformed_line", F.concat_ws(",", *values[:7])).otherwise(F.concat_ws(",", *values))
    copies = F.when(kind == "duplicate", F.array(F.lit(0), F.lit(1))).otherwise(F.array(F.lit(0)))
    return (
        e.select(
            F.date_format(F.timestamp_seconds(F.col("epoch_second")), FILE_LABEL_FORMATS[daily][1]).alias("file"),
            F.col("epoch_second").alias("order_key"),
            kind.alias("kind"),
            line.alias("line"),
            F.explode(copies).alias("copy"),
        )
        # The first copy of a duplicated row is the clean original; the second is the dirty one.
        .select("file", "order_key",
                F.when((F.col("kind") == "duplicate") & (F.col("copy") == 0), F.lit(None))
                .otherwise(F.col("kind")).alias("dirty_kind"),
                "line")
    )


# ---- oracle ----------------------------------------------------------------------------------


def oracle_purchase_score(truth_users: DataFrame, day_weights: list[float], start_date: str,
                          as_of: str, horizon_days: int) -> DataFrame:
    """user_id, oracle_score = expected purchase sessions in [as_of, as_of + horizon): the planted
    purchase_rate_per_day times the day weights from max(as_of, first_day). Ranking users by it
    is the best any model can do on generated data (P(buy) = 1 - exp(-score) is monotone in it)."""
    a = (date.fromisoformat(as_of) - date.fromisoformat(start_date)).days
    cumulative = [0.0]
    for w in day_weights:
        cumulative.append(cumulative[-1] + w)
    n = len(day_weights)

    def cum_at(day: Column) -> Column:  # sum of weights of days [0, day), day clamped to [0, n]
        return _pick(_lit_array(cumulative), F.least(F.greatest(day, F.lit(0)), F.lit(n)))

    begin = F.greatest(F.lit(a), F.col("first_day"))
    end = F.lit(a + horizon_days)
    return truth_users.select(
        "user_id", (F.col("purchase_rate_per_day") * F.greatest(cum_at(end) - cum_at(begin), F.lit(0.0)))
        .alias("oracle_score"))


def oracle_auc(spark, generate_output: str, key: bytes, scored_users, as_of: str, horizon: int):
    """AUC of the generator's oracle (its true purchase odds) on the users of scored_users
    (user_key, label), when generate_output holds the ground truth of the lake's data; else None."""
    import json

    from ecomlake import evaluation, lake
    from ecomlake.privacy import pseudonymise

    text = lake.read_text_file(spark, f"{generate_output}/_ground_truth/generator.json")
    if text is None or not lake.path_exists(spark, f"{generate_output}/_ground_truth/users"):
        return None
    truth = json.loads(text)
    users = spark.read.parquet(f"{generate_output}/_ground_truth/users")
    oracle = oracle_purchase_score(users, truth["day_weights"], truth["params"]["start_date"], as_of, horizon)
    oracle = pseudonymise(oracle, "user_id", "user_key", key)
    joined = scored_users.join(oracle, "user_key")
    if joined.limit(1).count() == 0:
        return None  # the ground truth belongs to other data
    return evaluation.binary_metrics(joined, "label", "oracle_score", probability=False)["auc"]


# ---- search log --------------------------------------------------------------------------------

SEARCHABLE_CATEGORIES = tuple(i for i, c in enumerate(CATEGORIES) if c[0])


def category_word(category_index: int) -> str:
    """The word a category is searched by: the last part of its code (electronics.smartphone -> smartphone)."""
    return CATEGORIES[category_index][0].rsplit(".", 1)[-1].replace("_", " ")


def search_intents(users_df: DataFrame, p: GeneratorParams) -> DataFrame:
    """One row per search: search_index, search_id, user_id, epoch_second, the wanted category_index,
    brand (null: none asked), price_band (null, cheap, premium) and the query text that says so."""
    seed, s = p.seed, F.col("search_index")
    n_cat = len(SEARCHABLE_CATEGORIES)
    any_category = _pick(_lit_array(SEARCHABLE_CATEGORIES), F.floor(uniform(seed, "search_category", s) * n_cat))
    preferred = F.col("preferred_category_1")
    category = F.when((uniform(seed, "search_preferred", s) < SEARCH_PREFERRED_SHARE)
                      & preferred.isin(*SEARCHABLE_CATEGORIES), preferred).otherwise(any_category)
    brand = F.when(uniform(seed, "search_brand", s) < SEARCH_BRAND_SHARE,
                   _pick(_lit_array(BRANDS), F.floor(uniform(seed, "search_brand_pick", s) * len(BRANDS))))
    band_u = uniform(seed, "search_price", s)
    band = F.when(band_u < SEARCH_PRICE_SHARE / 2, F.lit("cheap")).when(band_u < SEARCH_PRICE_SHARE, F.lit("premium"))
    words_of = {c: (category_word(c), *SEARCH_SYNONYMS.get(c, ())) for c in SEARCHABLE_CATEGORIES}
    synonym_pick = F.floor(uniform(seed, "search_synonym_pick", s) * 2)
    word = F.lit(None).cast("string")
    for c, words in words_of.items():
        synonyms = _lit_array(words[1:]) if len(words) > 1 else None
        chosen = F.lit(words[0]) if synonyms is None else F.when(
            uniform(seed, "search_synonym", s) < SEARCH_SYNONYM_SHARE,
            _pick(synonyms, F.pmod(synonym_pick, len(words) - 1))).otherwise(F.lit(words[0]))
        word = F.when(F.col("category_index") == c, chosen).otherwise(word)
    price_word = F.when(F.col("price_band").isNotNull(), _pick(
        F.when(F.col("price_band") == "cheap", _lit_array(SEARCH_PRICE_WORDS["cheap"]))
        .otherwise(_lit_array(SEARCH_PRICE_WORDS["premium"])), F.floor(uniform(seed, "search_price_word", s) * 2)))
    second = F.floor(uniform(seed, "search_second", s) * p.days * 86400).cast("long")
    searches = (users_df.sparkSession.range(p.searches).withColumnRenamed("id", "search_index")
                .withColumn("user_index", F.floor(uniform(seed, "searcher", s) * p.users).cast("long")))
    return (searches.join(users_df.select("user_index", "user_id", "preferred_category_1"), "user_index")
            .select("search_index", "user_id", category.cast("int").alias("category_index"),
                    brand.cast("string").alias("brand"), band.alias("price_band"),
                    (F.lit(p.start_epoch) + second).alias("epoch_second"))
            .withColumn("category_word", word)
            .withColumn("query", F.concat_ws(" ", price_word, F.col("brand"), F.col("category_word")))
            .withColumn("search_id", _session_uuid(seed + 1, s))
            .drop("category_word"))


def search_products(spark: SparkSession, p: GeneratorParams) -> DataFrame:
    """The catalogue as the search log sees it: product_index, product_id, category_index, brand,
    price_band (cheap / premium / null), good (the quality only clicks reveal) and promoted (what
    the shop's search pushes up)."""
    idx = F.col("id")
    cols = _product_columns(p, idx)
    log_ratio = F.log(cols["base_price"] / cols["ref_price"])
    band = F.when(log_ratio < -SEARCH_PRICE_BAND, F.lit("cheap")).when(log_ratio > SEARCH_PRICE_BAND, F.lit("premium"))
    return spark.range(p.products).select(
        idx.alias("product_index"), cols["product_id"].alias("product_id"),
        cols["category_index"].cast("int").alias("category_index"), cols["brand"].alias("brand"),
        band.alias("price_band"), (uniform(p.seed, "search_good", idx) < SEARCH_GOOD_SHARE).alias("good"),
        (uniform(p.seed, "search_promoted", idx) < SEARCH_PROMOTED_SHARE).alias("promoted"))


def search_relevance(intent_category: Column, intent_brand: Column, intent_band: Column,
                     category: Column, brand: Column, band: Column, good: Column) -> Column:
    """The planted true relevance (0-3) of a product to a search's intent."""
    as_asked = lambda asked, has: (asked.isNull() | (asked == F.coalesce(has, F.lit("")))).cast("int")  # noqa: E731
    points = as_asked(intent_brand, brand) + as_asked(intent_band, band) + good.cast("int")
    return F.when(category == intent_category, F.least(points, F.lit(3))).otherwise(F.lit(0))


def search_results(intents: DataFrame, products: DataFrame, p: GeneratorParams) -> DataFrame:
    """The results the shop's lexical, noisy search showed for each search and what the user did:
    intents' columns + position, product_id, relevance, clicked, purchased."""
    seed = p.seed
    key = (F.col("search_index"), F.col("product_index"))
    category_hit = ((F.col("category_index") == F.col("p_category"))
                    & F.col("query").endswith(F.concat(F.lit(" "), F.col("p_word")))
                    | (F.col("query") == F.col("p_word")))
    matched = [category_hit, F.col("brand") == F.coalesce(F.col("p_brand"), F.lit("")),
               F.col("price_band") == F.coalesce(F.col("p_band"), F.lit("")), F.col("p_promoted")]
    score = sum((F.coalesce(m, F.lit(False)).cast("double") * w for m, w in zip(matched, SEARCH_LOG_WEIGHTS)),
                normal(seed, "search_noise", *key))
    words = F.create_map(*[x for c in SEARCHABLE_CATEGORIES for x in (F.lit(c), F.lit(category_word(c)))])
    shown = (intents.crossJoin(F.broadcast(products.select(
        "product_index", "product_id", F.col("category_index").alias("p_category"), F.col("brand").alias("p_brand"),
        F.col("price_band").alias("p_band"), F.col("good").alias("p_good"), F.col("promoted").alias("p_promoted"),
        words[F.col("category_index")].alias("p_word"))))
        .withColumn("_score", score)
        .withColumn("position", F.row_number().over(Window.partitionBy("search_index").orderBy(F.desc("_score"))))
        .where(F.col("position") <= SEARCH_RESULTS))
    relevance = search_relevance(F.col("category_index"), F.col("brand"), F.col("price_band"),
                                 F.col("p_category"), F.col("p_brand"), F.col("p_band"), F.col("p_good"))
    examined = uniform(seed, "search_examined", *key) < F.pow(F.col("position").cast("double"), -SEARCH_EXAMINATION_POWER)
    attractive = uniform(seed, "search_attractive", *key) < (
        F.lit(SEARCH_CLICK_FLOOR) + (SEARCH_CLICK_TOP - SEARCH_CLICK_FLOOR) * (F.pow(2.0, F.col("relevance")) - 1) / 7)
    clicked = examined & attractive
    bought = clicked & (uniform(seed, "search_bought", *key) < F.col("relevance") * SEARCH_BUY_PER_RELEVANCE)
    return (shown.withColumn("relevance", relevance.cast("int"))
            .withColumn("clicked", clicked.cast("int")).withColumn("purchased", bought.cast("int"))
            .drop("_score", "p_category", "p_brand", "p_band", "p_good", "p_promoted", "p_word"))


def search_relevance_truth(intents: DataFrame, products: DataFrame) -> DataFrame:
    """query, product_id, relevance (> 0 only) for every query in the log: what a perfect search
    returns. A query's words fix its intent, so relevance is a function of the query text."""
    queries = intents.select("query", "category_index", "brand", "price_band").distinct()
    p = products.select("product_id", F.col("category_index").alias("p_category"), F.col("brand").alias("p_brand"),
                        F.col("price_band").alias("p_band"), F.col("good").alias("p_good"))
    return (queries.join(p, F.col("category_index") == F.col("p_category"))
            .select("query", "product_id", search_relevance(
                F.col("category_index"), F.col("brand"), F.col("price_band"), F.col("p_category"), F.col("p_brand"),
                F.col("p_band"), F.col("p_good")).cast("int").alias("relevance"))
            .where(F.col("relevance") > 0))


def search_lines(results: DataFrame, p: GeneratorParams) -> DataFrame:
    """CSV lines of the search log (file = the search's UTC day, order_key, dirty_kind, line), dirty
    lines planted in place of clean ones (generate.dirty_fraction, SEARCH_DIRTY_KINDS)."""
    kind = _dirty_kind(p, "search_dirty", list(SEARCH_DIRTY_KINDS), F.col("search_index"), F.col("position"))
    ts = _utc_text(F.col("epoch_second"))
    fields = [F.when(F.col("dirty_kind") == "bad_search_time", F.lit("2019-10-32 08:00:00 UTC")).otherwise(ts),
              F.col("search_id"), F.col("user_id").cast("string"), F.col("query"),
              F.when(F.col("dirty_kind") == "bad_position", F.lit("first")).otherwise(F.col("position").cast("string")),
              F.col("product_id").cast("string"), F.col("clicked").cast("string"), F.col("purchased").cast("string")]
    line = F.when(F.col("dirty_kind") == "malformed_line", F.concat_ws(",", *fields[:6])).otherwise(
        F.concat_ws(",", *fields))
    return results.withColumn("dirty_kind", kind).select(
        F.date_format(F.timestamp_seconds(F.col("epoch_second")), FILE_LABEL_FORMATS[True][1]).alias("file"),
        (F.col("epoch_second") * 100 + F.col("position")).alias("order_key"), "dirty_kind", line.alias("line"))

"""One config schema for every environment (conf/local.yaml, conf/cluster.yaml, conf/databricks.yaml).

A config file only sets the keys it wants to change from the defaults below. Every key is
checked at start: an unknown key or a value of the wrong type is a ConfigError that names the
key and the file. `--conf key=value` overrides a key (the value is read as YAML, so `45`, `true`
and `0.5` get their types); keys under `spark.conf` are Spark properties and may contain dots:
`--conf spark.conf.spark.sql.shuffle.partitions=8`.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecomlake.errors import ConfigError

ENVIRONMENTS = ("local", "cluster", "databricks")


@dataclass(frozen=True)
class Key:
    type: type | tuple
    default: Any
    doc: str
    choices: tuple | None = None
    minimum: float | None = None   # the smallest value allowed (each element of a list)
    exclusive: bool = False        # the value must be above `minimum`, not equal to it


# dotted key -> Key. `spark.conf` is a free-form mapping of Spark properties.
SCHEMA: dict[str, Key] = {
    "env": Key(str, "local", "environment name", ENVIRONMENTS),
    "lake_root": Key(str, "lakehouse", "root of the lake; a relative path is taken from the repo root"),
    "spark.master": Key(str, "local[*]", "Spark master; empty = let spark-submit / the cluster decide"),
    "spark.deploy_mode": Key(str, "client", "spark-submit --deploy-mode", ("client", "cluster")),
    "spark.app_name": Key(str, "ecomlake", "application name prefix"),
    "spark.delta_from_pip": Key(
        bool, True, "add Delta's jars (Maven Central) to the session; false where Delta is built in"
    ),
    "spark.conf": Key(dict, {}, "Spark properties applied to the session and to spark-submit"),
    "logging.level": Key(str, "INFO", "level of ecomlake's log lines (a job's --log-level wins)",
                         ("DEBUG", "INFO", "WARNING", "ERROR")),
    "pseudonymisation.key_env_var": Key(
        str, "ECOMLAKE_PSEUDONYM_KEY", "environment variable that holds the user-id hashing key"
    ),
    "pseudonymisation.allow_dev_key": Key(
        bool, False, "use a fixed, public development key when the variable is unset (local only)"
    ),
    "generate.output": Key(str, "data/rees46", "where `generate` writes CSV (relative: repo root)"),
    "generate.events": Key(int, 200_000, "approximate number of clickstream events"),
    "generate.seed": Key(int, 42, "random seed; the same seed gives the same files"),
    "generate.start_date": Key(str, "2019-10-01", "first day of generated events (YYYY-MM-DD)"),
    "generate.days": Key(int, 61, "number of days of events"),
    "generate.dirty_fraction": Key(float, 0.005, "share of rows made dirty on purpose", minimum=0),
    "generate.fraud_user_fraction": Key(float, 0.02, "share of users that are bots or fraudsters", minimum=0),
    "generate.hidden_fraud_fraction": Key(float, 0.0, "share of users that are hidden fraud (account takeover, "
                                          "slow scrapers) or legitimate bulk buyers, a third each (0: none)",
                                          minimum=0),
    "generate.new_product_fraction": Key(float, 0.0, "share of each category's products that arrive in the last "
                                         "14 days (new arrivals, for cold-start recommendations; 0: none)", minimum=0),
    "generate.style_affinity": Key(float, 0.0, "chance an apparel view goes to the user's preferred style "
                                   "(a Fashion-MNIST class; 0: styles play no part)", minimum=0),
    "generate.product_images": Key(bool, False, "give apparel products a Fashion-MNIST image of their style "
                                   "(catalog/product_images.csv; needs dataset-fashion-mnist)"),
    "generate.item_relations": Key(bool, False, "plant substitutes, complements (bought within days after the "
                                   "main product) and category transitions in sessions (for the item graph)"),
    "generate.change_points": Key(bool, False, "plant a bot surge and a price shock for `monitor` to find "
                                  "(dates and columns in the ground truth)"),
    "generate.regions": Key(bool, False, "write a customer master (customers/customers.csv: region, city, "
                            "coordinates) and plant regional differences (ground truth 'regions')"),
    "generate.searches": Key(int, 0, "searches in a search log beside the events (search/<day>.csv, with "
                             "true relevance and position bias planted); 0 = none", minimum=0),
    "generate.daily": Key(bool, False, "one CSV per day (events/2019-10-01.csv) instead of one per month"),
    "clean.max_price": Key(float, 50_000.0, "prices above this are quarantined as absurd_price",
                           minimum=0, exclusive=True),
    "clean.min_event_time": Key(str, "2000-01-01", "events before this are quarantined"),
    "clean.future_tolerance_minutes": Key(
        int, 60, "events later than their ingest time plus this are quarantined as event_in_future"
    , minimum=0),
    "sessionize.gap_minutes": Key(int, 30, "inactivity gap that starts a new session", minimum=1),
    "features.interaction_weights.view": Key(float, 1.0, "interaction strength of a view", minimum=0),
    "features.interaction_weights.cart": Key(float, 3.0, "interaction strength of an add-to-cart", minimum=0),
    "features.interaction_weights.remove_from_cart": Key(float, 0.0, "interaction strength of a removal", minimum=0),
    "features.interaction_weights.purchase": Key(float, 5.0, "interaction strength of a purchase", minimum=0),
    "features.interaction_half_life_days": Key(float, 14.0, "interaction strength halves every this many days",
                                               minimum=0, exclusive=True),
    "features.label_horizon_days": Key(int, 14, "labels look this many days past the cutoff", minimum=1),
    "train.als_ranks": Key(list, [16, 32], "ALS ranks tried when tuning", minimum=1),
    "train.als_reg_params": Key(list, [0.01, 0.1], "ALS regParam values tried when tuning", minimum=0),
    "train.als_alphas": Key(list, [1.0, 10.0], "ALS alpha values tried when tuning", minimum=0),
    "train.als_max_iter": Key(int, 10, "ALS iterations", minimum=1),
    "train.als_blocks": Key(int, 0, "Spark ALS's user and item blocks each (0: Spark's default, 10); about the "
                            "cores of the cluster is faster on small clusters (README, ALS settings)", minimum=0),
    "train.ease_lambdas": Key(list, [100.0, 250.0, 500.0, 1000.0], "EASE L2 strengths tried when tuning",
                              minimum=0, exclusive=True),
    "train.ease_max_items": Key(int, 10_000, "EASE models at most this many items, those with the most users "
                                "(its item x item matrices are dense on the driver: 8 n^2 bytes each)", minimum=1),
    "train.two_stage": Key(bool, True, "train recommend also trains the two-stage ranker (EASE and category "
                           "popularity join ALS, co-occurrence and popularity as candidate generators)"),
    "train.blend_als_weights": Key(list, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "ALS's weights tried for the MovieLens "
                                   "EASE + ALS blend (EASE gets 1 - w), tuned on the first inner split", minimum=0),
    "train.ranker_depth": Key(int, 50, "candidates each generator proposes per user to the two-stage ranker",
                              minimum=1),
    "train.ranker_folds": Key(int, 3, "training worlds of the two-stage ranker on MovieLens (inner splits of the "
                              "training part, each a different seed); on shop data: weeks before the cutoff",
                              minimum=1),
    "train.ranker_trees": Key(int, 300, "boosting rounds of the two-stage ranker (LambdaMART, rank:ndcg)",
                              minimum=1),
    "train.ranker_max_depth": Key(int, 5, "tree depth of the two-stage ranker", minimum=1),
    "train.ranker_learning_rate": Key(float, 0.05, "learning rate of the two-stage ranker", minimum=0,
                                      exclusive=True),
    "train.ranker_min_child_weight": Key(float, 20.0, "smallest hessian sum in a leaf of the two-stage ranker "
                                         "(larger: smoother)", minimum=0),
    "train.recommend_k": Key(int, 20, "recommendations per user (metrics at 10 and at this k)", minimum=1),
    "train.forecast_holdout_days": Key(int, 14, "days held out at the end of the sales history", minimum=1),
    "train.forecast_backtest_folds": Key(int, 3, "rolling-origin backtest windows (weekly steps back from the "
                                         "hold-out)", minimum=1),
    "train.forecast_gbt_max_iter": Key(int, 40, "trees of the direct gradient-boosted forecaster", minimum=1),
    "train.segments_k": Key(int, 5, "number of KMeans customer segments", minimum=2),
    "train.seed": Key(int, 7, "seed for splits and models"),
    "clv.horizon_weeks": Key(float, 52.0, "CLV and expected purchases look this many weeks ahead",
                             minimum=0, exclusive=True),
    "clv.max_fit_rows": Key(int, 200_000, "Gamma-Gamma fits on at most this many distinct (x, m) rows", minimum=1),
    "sentiment.test_fraction": Key(float, 0.2, "share of reviews held out (fixed by a hash of review_id)",
                                   minimum=0, exclusive=True),
    "sentiment.vocabulary_size": Key(int, 20_000, "words kept by the TF-IDF and deep text models", minimum=1),
    "sentiment.embedding_train_rows": Key(int, 0, "training reviews embedded with MiniLM, 0: all "
                                          "(~40/s/core with TensorFlow, ~9 in numpy)", minimum=0),
    "cold_start.k": Key(int, 10, "new products recommended per user (metrics at this k)", minimum=1),
    "cold_start.horizon_days": Key(int, 14, "days after the cutoff the recommendations are measured on", minimum=1),
    "cold_start.train_days": Key(int, 7, "days before the cutoff whose new-to-the-user items train the content ranker",
                                 minimum=1),
    "cold_start.negatives": Key(int, 20, "items drawn per user as negatives when training the content ranker",
                                minimum=1),
    "cold_start.max_iter": Key(int, 100, "iterations of the content ranker's logistic regression", minimum=1),
    "cold_start.max_items": Key(int, 50_000, "most candidate products (their content is broadcast to every worker)",
                                minimum=1),
    "cold_start.image_model": Key(str, "image_cnn", "which model's rows of gold/item_image_embeddings to use"),
    "cold_start.similar_k": Key(int, 10, "visually similar products kept per product", minimum=1),
    "graph.k": Key(int, 5, "complements and substitutes kept per product (metrics at this k)", minimum=1),
    "graph.window_days": Key(int, 7, "days after a purchase in which meeting a product makes a bought_after edge",
                             minimum=1),
    "graph.min_count": Key(int, 2, "sessions a pair must be co-viewed in to be a substitute or a community edge",
                           minimum=1),
    "graph.max_session_items": Key(int, 50, "sessions with more distinct products add no co-occurrence edges "
                                   "(bots and scrapers would add every pair)", minimum=1),
    "graph.item2vec_vector_size": Key(int, 32, "dimensions of the item2vec (Spark ML Word2Vec) embeddings", minimum=1),
    "graph.item2vec_window": Key(int, 3, "item2vec context window (views before and after)", minimum=1),
    "graph.item2vec_min_count": Key(int, 2, "sessions a product must be viewed in to get an item2vec embedding",
                                    minimum=1),
    "graph.item2vec_max_iter": Key(int, 3, "item2vec passes over the sessions", minimum=1),
    "graph.communities": Key(int, 15, "communities found by power iteration clustering of the co-view graph",
                             minimum=2),
    "graph.community_max_iter": Key(int, 20, "power iterations of the community clustering", minimum=1),
    "search.k": Key(int, 10, "results per query (and the cutoff of nDCG@k)", minimum=1),
    "search.candidates": Key(int, 100, "candidates each retriever (BM25, MiniLM) proposes per query", minimum=1),
    "search.positions": Key(int, 10, "positions of the results page whose propensity is estimated", minimum=1),
    "search.label_days": Key(int, 14, "days before the cutoff whose clicks train the ranker (earlier days give "
                             "the click features)", minimum=1),
    "search.max_weight": Key(float, 5.0, "largest inverse-propensity weight of a click (caps the variance)",
                             minimum=1),
    "search.serve_model": Key(str, "ranker_debiased_features", "the ranker `search --query` answers with",
                              ("ranker_ipw", "ranker_debiased_features", "ranker_raw_clicks")),
    "search.ctr_prior": Key(float, 20.0, "impressions of the log's mean click rate a click rate is shrunk with",
                            minimum=0),
    "search.trees": Key(int, 200, "boosting rounds of the search ranker (SparkXGBRanker)", minimum=1),
    "search.max_depth": Key(int, 5, "tree depth of the search ranker", minimum=1),
    "search.learning_rate": Key(float, 0.1, "learning rate of the search ranker", minimum=0, exclusive=True),
    "search.min_child_weight": Key(float, 5.0, "smallest hessian sum in a leaf of the search ranker", minimum=0),
    "intents.human_queue_below": Key(float, 0.4, "a message whose action confidence is below this goes to "
                                     "the human queue", minimum=0),
    "intents.aspect_method": Key(str, "keyword_rules", "which method's aspects go to gold/review_aspects",
                                 choices=("weak_lr", "keyword_rules", "zero_shot_minilm")),
    "intents.weak_aspect_labels": Key(str, "rules", "the aspect classifiers learn from reviews where rules and "
                                      "zero-shot agree, or from the rules' flags on every review",
                                      choices=("agreement", "rules")),
    "intents.max_iter": Key(int, 100, "iterations of each weak-label logistic regression (L-BFGS)", minimum=1),
    "intents.min_mentions": Key(int, 20, "reviews that must talk about an aspect before a suggestion names it",
                                minimum=1),
    "risk.alert_threshold": Key(float, 0.5, "users whose risk score is at least this are alerted", minimum=0),
    "risk.test_fraction": Key(float, 0.3, "share of users held out to measure the risk classifier",
                              minimum=0, exclusive=True),
    "risk.gbt_max_iter": Key(int, 60, "trees of the risk classifier's gradient-boosted model (depth 4)", minimum=1),
    "risk.classifier": Key(str, "gbt", "whose score the alerts use when labels exist: "
                           "logistic_regression or gbt", choices=("logistic_regression", "gbt")),
    "release.epsilon": Key(float, 1.0, "privacy cost (epsilon) of one release, unless --epsilon says otherwise",
                           minimum=0, exclusive=True),
    "release.total_epsilon": Key(float, 10.0, "privacy budget: the epsilons of all releases of silver/events add "
                                 "up to at most this (ops/privacy_ledger); a release past it is refused",
                                 minimum=0, exclusive=True),
    "release.max_cells_per_user": Key(int, 4, "a user counts in at most this many cells (day x category x funnel "
                                      "step) of a release; more are dropped at random", minimum=1),
    "release.days": Key(int, 7, "days a release covers (before its --as-of date)", minimum=1),
    "release.regions": Key(list, ["north", "south", "east", "west", "central"],
                           "the public regions of the regional_demand release; customers elsewhere or without a "
                           "record count under 'other'"),
    "release.regional_max_cells_per_user": Key(int, 1, "regional_demand: a user counts in at most this many cells of a "
                                               "release (region x category, or day x region x category at the day "
                                               "grain); more are dropped at random", minimum=1),
    "release.regional_grain": Key(str, "window", "regional_demand: one cell per region x category for the whole "
                                  "window ('window') or per day ('day')", ("window", "day")),
    "release.max_units_per_cell": Key(int, 1, "regional_demand: a user's purchases count at most this many times "
                                      "in one cell", minimum=1),
    "release.max_price": Key(float, 1000.0, "regional_demand: each purchase's price is clamped to 0 .. this in "
                             "the revenue (the revenue noise grows with it); set it from public prices (the "
                             "catalogue's list), never from the purchases released", minimum=0, exclusive=True),
    "regional.forecast_days": Key(int, 7, "days `regional` forecasts per region and category (0: no forecasts)",
                                  minimum=0),
    "regional.backtest_folds": Key(int, 3, "rolling-origin backtest windows of the regional forecasts (weekly "
                                   "steps back from --as-of)", minimum=1),
    "monitor.days": Key(int, 1, "days a monitor run checks (those before its --as-of)", minimum=1),
    "monitor.history_days": Key(int, 28, "trailing days a day's metric is compared with (their median and MAD)",
                                minimum=2),
    "monitor.min_history_days": Key(int, 14, "a daily metric with fewer days of history gets no verdict", minimum=1),
    "monitor.z_threshold": Key(float, 4.0, "a daily metric alerts when it is more than this many robust standard "
                               "deviations (1.4826 MAD, at least its noise floor) from its trailing median",
                               minimum=0, exclusive=True),
    "monitor.min_relative_scale": Key(float, 0.02, "the robust standard deviation of a level (a median price, a "
                                      "price index, events per session) is taken as at least this share of its "
                                      "median: weekly promotions move a price index by a few per cent",
                                      minimum=0),
    "monitor.null_columns": Key(list, ["category_code", "brand", "user_session"],
                                "silver/events columns whose daily share of nulls is watched"),
    "monitor.segment_column": Key(str, "category_code", "silver/events column whose values each get their own daily "
                                  "median price (empty: none)"),
    "monitor.rules": Key(dict, {"price_positive": "price > 0",
                                "known_event_type": "event_type IN ('view', 'cart', 'remove_from_cart', 'purchase')"},
                         "named Spark SQL conditions every silver/events row must meet"),
    "monitor.rule_max_failing_share": Key(float, 0.0, "a day alerts when more of its rows than this share fail a rule",
                                          minimum=0),
    "monitor.psi_alert": Key(float, 0.25, "a model input or score drifted when its PSI is above this (0.1-0.25: "
                             "moderate, above: major)", minimum=0, exclusive=True),
    "monitor.drift_bins": Key(int, 10, "quantile bins of the reference for PSI and KS", minimum=2),
    "monitor.max_auc_drop": Key(float, 0.05, "a model decayed when a scored date's AUC, once its labels are in, is "
                                "this much below its test AUC", minimum=0),
    "monitor.max_ndcg_drop": Key(float, 0.05, "recommendations decayed when a scored date's NDCG@10, once its "
                                 "horizon is over, is this much below the run's test NDCG@10", minimum=0),
    "monitor.alert_file": Key(str, "", "where a monitor run writes its alerts (JSON); empty: "
                              "<lake_root>/ops/alerts/monitor_<as-of>.json"),
    "monitor.exit_on_alert": Key(bool, True, "exit with status 4 when anything alerts"),
    "pricing.lead_time_days": Key(int, 7, "replenishment lead time of the inventory suggestion", minimum=1),
    "pricing.service_level": Key(float, 0.95, "chance that stock covers lead-time demand", minimum=0, exclusive=True),
    "ops.lease_timeout_seconds": Key(
        int, 600, "a job's lease on its tables expires this long after its last heartbeat (killed runs)"
    , minimum=1),
    "ops.lease_wait_seconds": Key(
        int, 0, "how long a job waits for another run's lease before it exits with a message (0: no wait)"
    , minimum=0),
    "deep.local_dir": Key(
        str, "", "local or FUSE folder (e.g. /dbfs/ecomlake/deep) for train_deep's Petastorm data, Horovod "
        "checkpoints and models; empty: <lake_root>/models, which then must be a local path"
    ),
    "deep.petastorm_fixes": Key(
        bool, True, "train_deep's workers patch Petastorm 0.13.1's batch reader (no copy of every row group, "
        "numeric columns straight to numpy; ecomlake.deep.petastorm_fixes)"
    ),
    "deep.horovod_sparse_as_dense": Key(
        bool, True, "embedding gradients allreduced as dense tensors (fused with the rest) instead of allgathered"
    ),
    "deep.horovod_groups": Key(
        int, 1, "gradients allreduced in this many grouped operations per step (0: Horovod fuses what is "
        "ready each cycle)", minimum=0
    ),
    "deep.horovod_cycle_time_ms": Key(
        float, 5.0, "HOROVOD_CYCLE_TIME: how long Horovod's background thread gathers requests (0: Horovod's "
        "default)", minimum=0
    ),
    "deep.horovod_compression": Key(str, "none", "gradient compression on the wire", ("none", "fp16")),
    "maintain.retention_hours": Key(
        float, 168.0, "VACUUM keeps removed files this long (never shorter than incremental reads need)"
    , minimum=0),
}


def defaults() -> dict:
    config: dict = {}
    for dotted, key in SCHEMA.items():
        _set(config, dotted, copy.deepcopy(key.default))
    return config


def _set(config: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _unknown(dotted: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(dotted, list(SCHEMA), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{dotted}' in {where}{hint}")


def _check_value(dotted: str, value, where: str):
    key = SCHEMA[dotted]
    expected = key.type
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"config key '{dotted}' in {where} must be {expected.__name__}, "
            f"got {value!r} ({type(value).__name__})"
        )
    if key.choices and value not in key.choices:
        raise ConfigError(
            f"config key '{dotted}' in {where} must be one of {', '.join(key.choices)}, got {value!r}"
        )
    if expected is list and key.default and all(isinstance(v, str) for v in key.default):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key '{dotted}' in {where} must be a list of names, got {value!r}")
    elif expected is list:
        if not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"config key '{dotted}' in {where} must be a non-empty list of numbers, got {value!r}")
    if key.minimum is not None:
        for number in value if expected is list else [value]:
            if number < key.minimum or (key.exclusive and number == key.minimum):
                bound = f"above {key.minimum:g}" if key.exclusive else f"at least {key.minimum:g}"
                each = "each value of " if expected is list else ""
                raise ConfigError(f"{each}config key '{dotted}' in {where} must be {bound}, got {value!r}")
    if expected is dict:
        for name, item in value.items():
            if not isinstance(item, (str, int, float, bool, type(None))):
                raise ConfigError(
                    f"config key '{dotted}.{name}' in {where} must be a scalar, got {item!r}"
                )
        value = {str(name): item for name, item in value.items()}
    return value


def _update_mapping(config: dict, dotted: str, items: dict) -> None:
    """A mapping key (spark.conf, monitor.rules) takes new entries on top of its defaults; an entry
    set to null or empty is removed (a default rule switched off)."""
    mapping = _get(config, dotted)
    for name, item in items.items():
        if item is None or item == "":
            mapping.pop(name, None)
        else:
            mapping[name] = item


def _mapping_key(dotted: str) -> str | None:
    """The mapping key a dotted override writes into (monitor.rules.x -> monitor.rules), if any."""
    for name, key in SCHEMA.items():
        if key.type is dict and dotted.startswith(name + "."):
            return name
    return None


def merge(config: dict, overrides: dict, where: str, prefix: str = "") -> None:
    """Merge a (nested) mapping into config, validating every key against SCHEMA."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where} must hold a mapping of config keys, got {overrides!r}")
    for name, value in overrides.items():
        dotted = f"{prefix}{name}"
        if dotted in SCHEMA:
            checked = _check_value(dotted, value, where)
            if SCHEMA[dotted].type is dict:
                _update_mapping(config, dotted, checked)
            else:
                _set(config, dotted, checked)
        elif any(k.startswith(dotted + ".") for k in SCHEMA) and isinstance(value, dict):
            merge(config, value, where, prefix=dotted + ".")
        else:
            raise _unknown(dotted, where)


def apply_override(config: dict, assignment: str) -> None:
    """Apply one `key=value` override (from --conf)."""
    if "=" not in assignment:
        raise ConfigError(f"--conf takes key=value, got '{assignment}'")
    dotted, raw = assignment.split("=", 1)
    dotted = dotted.strip()
    value = yaml.safe_load(raw) if raw.strip() else ""
    where = f"--conf {dotted}"
    mapping = _mapping_key(dotted)
    if mapping:
        _update_mapping(config, mapping, _check_value(mapping, {dotted[len(mapping) + 1:]: value}, where))
    elif dotted in SCHEMA:
        _set(config, dotted, _check_value(dotted, value, where))
    else:
        raise _unknown(dotted, where)


PACKAGED_CONF = Path(__file__).resolve().parent / "conf"  # conf/ copied into the wheel (setup.py)


def checkout_root() -> Path | None:
    """The source checkout this library runs from (lib/ecomlake/config.py -> its root), or None
    when it runs from an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "setup.py").is_file() and (root / "conf").is_dir() else None


def repo_root() -> Path:
    """What relative paths are anchored at: the checkout, or the working directory of an installed wheel."""
    return checkout_root() or Path.cwd()


def conf_dir() -> Path:
    """The checkout's conf/, else the copy shipped inside the wheel."""
    root = checkout_root()
    return root / "conf" if root else PACKAGED_CONF


def config_path(env: str) -> Path:
    return conf_dir() / f"{env}.yaml"


def load(env: str = "local", config_file: str | None = None, overrides=(), lake: str | None = None) -> dict:
    """Defaults <- config file <- --conf overrides <- --lake; relative paths resolved from the repo root."""
    if env not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment '{env}'; choose one of {', '.join(ENVIRONMENTS)}")
    path = Path(config_file) if config_file else config_path(env)
    config = defaults()
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        merge(config, data, str(path))
    elif config_file:
        raise ConfigError(f"config file {path} does not exist")
    for assignment in overrides:
        apply_override(config, assignment)
    if lake:
        config["lake_root"] = lake
    if config["env"] != env:
        raise ConfigError(f"{path} sets env '{config['env']}' but the job runs with --env {env}")
    # a file of a conf/ folder anchors relative paths at that folder's parent (the checkout)
    base = path.resolve().parent.parent if path.exists() and path.resolve().parent != PACKAGED_CONF else repo_root()
    for dotted in ("lake_root", "generate.output", "deep.local_dir"):
        if _get(config, dotted):
            _set(config, dotted, resolve_path(_get(config, dotted), base))
    return config


def resolve_path(value: str, base: Path) -> str:
    """Leave URIs (s3://, dbfs:/, file:/...) and absolute paths alone; anchor relative ones at base."""
    if "://" in value or value.startswith(("dbfs:", "/")):
        return value
    return str((base / value).resolve())


def is_uri(path: str) -> bool:
    """A Hadoop-style URI with a scheme other than file: (dbfs:/, s3a://, abfss://, hdfs://)."""
    scheme = path.split(":", 1)[0] if ":" in path else ""
    return len(scheme) > 1 and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum() \
        and scheme.lower() != "file"


def horovod_tuning(config: dict) -> dict:
    """The deep.horovod_* keys as train_deep's worker spec takes them (distributed.optimizer_options)."""
    deep = config["deep"]
    return {"sparse_as_dense": deep["horovod_sparse_as_dense"], "groups": deep["horovod_groups"],
            "cycle_time_ms": deep["horovod_cycle_time_ms"], "compression": deep["horovod_compression"]}


def deep_local_dir(config: dict) -> str:
    """Where train_deep writes what worker processes open as files (Petastorm data, checkpoints,
    models): deep.local_dir, else <lake_root>/models when the lake is local. Spark jobs take any
    Hadoop URI as lake_root; Horovod workers and Keras need a POSIX path (a FUSE mount will do)."""
    local_dir = config["deep"]["local_dir"]
    if local_dir:
        if is_uri(local_dir):
            raise ConfigError(f"deep.local_dir must be a local or FUSE path (e.g. /dbfs/ecomlake/deep), "
                              f"not a URI: {local_dir}")
        return re.sub(r"^file:/*", "/", local_dir)
    root = config["lake_root"]
    if is_uri(root):
        raise ConfigError(f"lake_root {root} is a URI, and train_deep keeps its Petastorm data, Horovod "
                          f"checkpoints and models on a local or FUSE path: set deep.local_dir "
                          f"(e.g. --conf deep.local_dir=/dbfs/ecomlake/deep on Databricks)")
    return root


# Public and fixed on purpose: only for the embedded demo lake, never for real data.
DEVELOPMENT_KEY = b"ecomlake-local-development-key-not-secret"


def is_development_key(key: bytes) -> bool:
    return key == DEVELOPMENT_KEY


def pseudonymisation_key(config: dict) -> bytes:
    """The user-id hashing key from the environment; never logged, never stored."""
    var = config["pseudonymisation"]["key_env_var"]
    value = os.environ.get(var)
    if value:
        if len(value) < 16:
            raise ConfigError(f"the pseudonymisation key in ${var} must be at least 16 characters long")
        return value.encode("utf-8")
    if config["env"] == "local" and config["pseudonymisation"]["allow_dev_key"]:
        return DEVELOPMENT_KEY
    raise ConfigError(
        f"${var} is not set: the clean job refuses to pseudonymise user ids without a key "
        f"outside the local environment (set it from your secret store)"
    )

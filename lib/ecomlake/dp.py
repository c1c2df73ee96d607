"""Differentially private releases: numbers that may leave the company (job `release`).

The privacy unit is the user: a release protects everything one user contributes to it, every
event of the window, not one event. PipelineDP (on its Spark RDD backend, with python-dp's secure
noise) does the two steps that make that true:
  1. contribution bounding: each user counts at most once in a cell (day x category x funnel step)
     and in at most `max_cells` cells; a user with more keeps a random `max_cells` of them;
  2. Laplace noise of scale max_cells / epsilon on each cell's count of users.
The cells are public (the window's days x the catalogue's top-level categories x the three
steps), so no cell's presence depends on the data and no budget is spent on choosing them.
Everything after the noise (rounding, clamping at 0, rates between steps) is post-processing,
which costs no privacy. Releases add up: the ledger (ops/privacy_ledger) sums their epsilons.
"""
from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomlake.sessionize import top_category

FUNNEL_STEPS = ("view", "cart", "purchase")
CELL_COLUMNS = ("event_date", "category", "step")


def window_days(as_of: str, days: int) -> list[str]:
    """The `days` dates before as_of (as_of itself excluded), oldest first."""
    end = date.fromisoformat(as_of)
    return [(end - timedelta(days=offset)).isoformat() for offset in range(days, 0, -1)]


def funnel_cells(events: DataFrame, first_day: str, as_of: str) -> DataFrame:
    """(user_key, event_date, category, step): the cells each user reached in [first_day, as_of),
    once per cell. event_date is a 'YYYY-MM-DD' string, as in the public cells."""
    return (events
            .where((F.col("event_date") >= F.lit(first_day).cast("date"))
                   & (F.col("event_date") < F.lit(as_of).cast("date"))
                   & F.col("event_type").isin(*FUNNEL_STEPS))
            .select("user_key", F.date_format("event_date", "yyyy-MM-dd").alias("event_date"),
                    top_category(F.col("category_code")).alias("category"), F.col("event_type").alias("step"))
            .distinct())


def catalogue_categories(products: DataFrame) -> DataFrame:
    """The top-level categories of the catalogue (public: the shop shows them), 'unknown' included."""
    return (products.select(top_category(F.col("category_code")).alias("category"))
            .unionByName(products.sparkSession.createDataFrame([("unknown",)], "category string"))
            .distinct())


def public_cells(days: list[str], categories: list[str]) -> list[tuple[str, str, str]]:
    return [(day, category, step) for day in days for category in sorted(categories) for step in FUNNEL_STEPS]


def laplace_scale(epsilon: float, max_cells: int) -> float:
    """The noise scale b of each count: its L1 sensitivity (one user moves at most max_cells counts,
    each by 1) over epsilon. The standard deviation is sqrt(2) b."""
    return max_cells / epsilon


def noisy_cell_counts(cells: DataFrame, keys: list[tuple[str, str, str]], epsilon: float,
                      max_cells: int) -> DataFrame:
    """(event_date, category, step, users): each public cell's count of users, bounded and noised
    by PipelineDP (pure epsilon-DP, Laplace). Cells outside `keys` are dropped; cells in `keys` that
    nobody reached get noise only, as they must."""
    from pipeline_dp import dataframes as pdp
    from pipeline_dp.aggregate_params import NoiseKind

    query = (pdp.QueryBuilder(cells.select("user_key", *CELL_COLUMNS), "user_key")
             .groupby(list(CELL_COLUMNS), max_groups_contributed=max_cells, max_contributions_per_group=1,
                      public_keys=keys)
             .count(name="users")
             .build_query())
    return query.run_query(pdp.Budget(epsilon=epsilon, delta=0.0), noise_kind=NoiseKind.LAPLACE)


def _rate(numerator: str, denominator: str) -> Column:
    return F.when(F.col(denominator) > 0, F.round(F.col(numerator) / F.col(denominator), 4))


def funnel_table(counts: DataFrame) -> DataFrame:
    """One row per day and category: viewers, carters and buyers (noisy counts rounded, never below
    0) and the rates cart/view and purchase/view computed from them (post-processing)."""
    users = F.greatest(F.round(F.col("users")), F.lit(0.0)).cast("long")
    wide = (counts.withColumn("users", users)
            .groupBy("event_date", "category")
            .agg(*(F.sum(F.when(F.col("step") == step, F.col("users"))).alias(name)
                   for step, name in zip(FUNNEL_STEPS, ("viewers", "carters", "buyers")))))
    return (wide.withColumn("event_date", F.to_date("event_date"))
            .withColumn("cart_rate", _rate("carters", "viewers"))
            .withColumn("purchase_rate", _rate("buyers", "viewers")))


def exact_funnel_table(cells: DataFrame) -> DataFrame:
    """The same table without bounding or noise: what a release is measured against (benchmarks
    and tests only; it is never released)."""
    counts = cells.groupBy(*CELL_COLUMNS).agg(F.count(F.lit(1)).cast("double").alias("users"))
    return funnel_table(counts)


def users_over_bound(cells: DataFrame, max_cells: int) -> DataFrame:
    """(users, over_bound, cells, cells_kept): how many users reach more cells than the bound, and
    how many cells bounding keeps (what the bound trades for less noise)."""
    per_user = cells.groupBy("user_key").agg(F.count(F.lit(1)).alias("n"))
    return per_user.agg(F.count(F.lit(1)).alias("users"),
                        F.sum((F.col("n") > max_cells).cast("long")).alias("over_bound"),
                        F.sum("n").alias("cells"),
                        F.sum(F.least(F.col("n"), F.lit(max_cells))).alias("cells_kept"))

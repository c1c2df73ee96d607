"""Differentially private releases: numbers that may leave the company (job `release`).

Two releases: the daily funnel (users who viewed, carted, bought per day x category) and regional
demand (units bought and revenue per day x region x category, from the customer master).

The privacy unit is the user: a release protects everything one user contributes to it, every
event of the window, not one event. PipelineDP (on its Spark RDD backend, with python-dp's secure
noise) does the two steps that make that true:
  1. contribution bounding: each user counts at most once in a cell (day x category x funnel step)
     and in at most `max_cells` cells; a user with more keeps a random `max_cells` of them;
  2. Laplace noise of scale max_cells / epsilon on each cell's count of users.
The cells are public (the window's days x the catalogue's top-level categories x the three
steps), so no cell's presence depends on the data and no budget is spent on choosing them.
Regional demand bounds a user the same way (at most `max_cells` day x region x category cells, or
region x category cells of the whole window,
and at most `max_units` purchases in a cell, each price clamped to [0, max_price]) and spends half
of epsilon on the units and half on the revenue (PipelineDP splits a query's budget equally
between its metrics). Its regions are public too: the configured list (release.regions), every
other region, and users without a customer record, under 'other'.
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


OTHER_REGION = "other"   # a region outside the public list, or no customer record
REGIONAL_CELL_COLUMNS = ("event_date", "region", "category")


def regional_purchases(events: DataFrame, customers: DataFrame, first_day: str, as_of: str,
                       regions: list[str], whole_window: bool = False) -> DataFrame:
    """(user_key, event_date 'YYYY-MM-DD', region, category, price): every purchase in
    [first_day, as_of), its user's region from the customer master (OTHER_REGION when that is not
    one of the public `regions`, or unknown). whole_window: event_date is first_day for every
    purchase (one cell per region and category for the window: public_regional_cells([first_day], ...))."""
    public = F.col("region").isin(*regions) if regions else F.lit(False)
    day = F.lit(first_day) if whole_window else F.date_format("event_date", "yyyy-MM-dd")
    return (events
            .where((F.col("event_date") >= F.lit(first_day).cast("date"))
                   & (F.col("event_date") < F.lit(as_of).cast("date")) & (F.col("event_type") == "purchase"))
            .join(customers.select("user_key", "region"), "user_key", "left")
            .select("user_key", day.alias("event_date"),
                    F.when(public, F.col("region")).otherwise(F.lit(OTHER_REGION)).alias("region"),
                    top_category(F.col("category_code")).alias("category"), F.col("price").cast("double")))


def public_regional_cells(days: list[str], regions: list[str], categories: list[str]) -> list[tuple[str, str, str]]:
    return [(day, region, category) for day in days for region in [*sorted(set(regions)), OTHER_REGION]
            for category in sorted(categories)]


def regional_scales(epsilon: float, max_cells: int, max_units: int, max_price: float) -> dict[str, float]:
    """The Laplace scale of each released number: one user moves at most max_cells cells, each by
    at most max_units units and max_units x max_price revenue; each metric has epsilon / 2."""
    return {"units": max_cells * max_units / (epsilon / 2),
            "revenue": max_cells * max_units * max_price / (epsilon / 2)}


def noisy_regional_demand(purchases: DataFrame, keys: list[tuple[str, str, str]], epsilon: float, max_cells: int,
                          max_units: int, max_price: float) -> DataFrame:
    """(event_date, region, category, units, revenue): each public cell's purchases and their
    revenue, bounded and noised by PipelineDP (pure epsilon-DP, Laplace); raw noisy numbers (see
    regional_table)."""
    from pipeline_dp import dataframes as pdp
    from pipeline_dp.aggregate_params import NoiseKind

    query = (pdp.QueryBuilder(purchases.select("user_key", *REGIONAL_CELL_COLUMNS, "price"), "user_key")
             .groupby(list(REGIONAL_CELL_COLUMNS), max_groups_contributed=max_cells,
                      max_contributions_per_group=max_units, public_keys=keys)
             .count(name="units")
             .sum("price", min_value=0.0, max_value=float(max_price), name="revenue")
             .build_query())
    return query.run_query(pdp.Budget(epsilon=epsilon, delta=0.0), noise_kind=NoiseKind.LAPLACE)


def regional_table(noisy: DataFrame) -> DataFrame:
    """The released rows: units rounded, revenue to the cent, neither below 0 (post-processing)."""
    return noisy.select(F.to_date("event_date").alias("event_date"), "region", "category",
                        F.greatest(F.round("units"), F.lit(0.0)).cast("long").alias("units"),
                        F.greatest(F.round("revenue", 2), F.lit(0.0)).alias("revenue"))


def exact_regional_demand(purchases: DataFrame) -> DataFrame:
    """The same table without bounding or noise (benchmarks and tests only; never released)."""
    return (purchases.groupBy(*REGIONAL_CELL_COLUMNS)
            .agg(F.count(F.lit(1)).alias("units"), F.round(F.sum("price"), 2).alias("revenue"))
            .withColumn("event_date", F.to_date("event_date")))


def regional_over_bound(purchases: DataFrame, max_cells: int, max_units: int) -> DataFrame:
    """(users, over_bound, units, units_kept_at_most): users whose purchases reach more cells than
    the bound or more units in a cell, and the units left after the per-cell bound (the cell bound
    drops more: PipelineDP keeps a random max_cells of a user's cells)."""
    per_cell = (purchases.groupBy("user_key", *REGIONAL_CELL_COLUMNS).agg(F.count(F.lit(1)).alias("n"))
                .withColumn("kept", F.least(F.col("n"), F.lit(max_units))))
    per_user = per_cell.groupBy("user_key").agg(
        F.count(F.lit(1)).alias("cells"), F.max("n").alias("most"), F.sum("n").alias("units"),
        F.sum("kept").alias("kept"))
    over = (F.col("cells") > max_cells) | (F.col("most") > max_units)
    return per_user.agg(F.count(F.lit(1)).alias("users"), F.sum(over.cast("long")).alias("over_bound"),
                        F.sum("units").alias("units"), F.sum("kept").alias("units_kept_at_most"))

"""Watching data and models after they ship (issue 16 §2): pure DataFrame functions.

- `drift`: how far a feature or score has moved between a reference snapshot (the training data)
  and today: the population stability index (PSI) and the Kolmogorov-Smirnov distance, both on the
  reference's quantile bins, computed in Spark (only the bin edges and the per-bin counts, a few
  numbers per column, reach the driver).
- `daily_quality_metrics` + `robust_anomalies`: a day's row count, null shares and quarantine
  shares against the trailing norm of the same metric (median and median absolute deviation of
  the previous days: one bad day in the history does not move them).
The `monitor` job that runs them every day is not built yet.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

PSI_ALERT = 0.25        # the usual reading: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a major one
MAD_TO_SIGMA = 1.4826   # the MAD of a normal distribution times this is its standard deviation
_SMOOTHING = 1e-4       # share given to an empty bin, so that PSI stays finite


def quantile_edges(reference: DataFrame, columns: list[str], bins: int,
                   relative_error: float = 0.001) -> dict[str, list[float]]:
    """The inner edges of `bins` quantile bins of each column in the reference (duplicates merged:
    a column with few distinct values gets fewer bins)."""
    probabilities = [i / bins for i in range(1, bins)]
    quantiles = reference.approxQuantile(columns, probabilities, relative_error)
    return {column: sorted(set(values)) for column, values in zip(columns, quantiles)}


def _bucket(column: str, edges: list[float]) -> Column:
    """Bin index of a value: how many inner edges are <= it (0 .. len(edges)); null stays null."""
    value = F.col(column).cast("double")
    return F.when(value.isNotNull(),
                  F.size(F.filter(F.array(*[F.lit(float(e)) for e in edges]), lambda edge: edge <= value)))


def _bin_shares(frame: DataFrame, edges: dict[str, list[float]], side: str) -> DataFrame:
    """(feature, bucket, <side>_rows, <side>_total) per column and non-empty bin."""
    stacked = frame.select(F.explode(F.array(*[
        F.struct(F.lit(c).alias("feature"), _bucket(c, e).alias("bucket")) for c, e in edges.items()])).alias("x"))
    counts = (stacked.select("x.feature", "x.bucket").where(F.col("bucket").isNotNull())
              .groupBy("feature", "bucket").agg(F.count(F.lit(1)).alias(f"{side}_rows")))
    return counts.withColumn(f"{side}_total", F.sum(f"{side}_rows").over(Window.partitionBy("feature")))


def drift(reference: DataFrame, current: DataFrame, columns: list[str], bins: int = 10) -> DataFrame:
    """(feature, psi, ks, reference_rows, current_rows): PSI = sum over bins of (c - r) ln(c / r),
    and KS = the largest gap between the two cumulative shares at a bin edge, with r and c the
    shares of the reference's and today's non-null values in each of the reference's quantile bins."""
    edges = quantile_edges(reference, columns, bins)
    grid = (reference.sparkSession.createDataFrame(
        [(c, b) for c, e in edges.items() for b in range(len(e) + 1)], "feature string, bucket int"))
    joined = (grid.join(_bin_shares(reference, edges, "reference"), ["feature", "bucket"], "left")
              .join(_bin_shares(current, edges, "current"), ["feature", "bucket"], "left"))
    totals = Window.partitionBy("feature")
    shares = joined.select(
        "feature", "bucket",
        *[F.coalesce(F.col(f"{side}_rows"), F.lit(0)).alias(f"{side}_rows") for side in ("reference", "current")],
        *[F.max(f"{side}_total").over(totals).alias(f"{side}_total") for side in ("reference", "current")])
    r = F.col("reference_rows") / F.col("reference_total")
    c = F.col("current_rows") / F.col("current_total")
    cumulative = Window.partitionBy("feature").orderBy("bucket").rowsBetween(Window.unboundedPreceding, 0)
    per_bin = shares.select(
        "feature", "bucket", "reference_total", "current_total",
        ((F.greatest(c, F.lit(_SMOOTHING)) - F.greatest(r, F.lit(_SMOOTHING)))
         * F.log(F.greatest(c, F.lit(_SMOOTHING)) / F.greatest(r, F.lit(_SMOOTHING)))).alias("psi_term"),
        F.abs(F.sum(c).over(cumulative) - F.sum(r).over(cumulative)).alias("cdf_gap"))
    return (per_bin.groupBy("feature")
            .agg(F.round(F.sum("psi_term"), 6).alias("psi"), F.round(F.max("cdf_gap"), 6).alias("ks"),
                 F.coalesce(F.max("reference_total"), F.lit(0)).alias("reference_rows"),
                 F.coalesce(F.max("current_total"), F.lit(0)).alias("current_rows")))


def daily_quality_metrics(events: DataFrame, quarantine: DataFrame, columns: list[str]) -> DataFrame:
    """(event_date, metric, value): each day's rows, the share of nulls in each of `columns`, and
    the share of that day's rows (kept + quarantined) set aside for each reason. Quarantined rows
    without a parseable date have no day and are left out."""
    rows = events.groupBy("event_date").agg(
        F.count(F.lit(1)).alias("rows"),
        *[F.avg(F.col(c).isNull().cast("double")).alias(f"null_share:{c}") for c in columns])
    long_rows = rows.select("event_date", F.explode(F.array(
        F.struct(F.lit("rows").alias("metric"), F.col("rows").cast("double").alias("value")),
        *[F.struct(F.lit(f"null_share:{c}").alias("metric"), F.col(f"`null_share:{c}`").alias("value"))
          for c in columns])).alias("m")).select("event_date", "m.metric", "m.value")
    set_aside = (quarantine.where(F.col("event_date").isNotNull())
                 .groupBy("event_date", "reason").agg(F.count(F.lit(1)).alias("n")))
    day_total = (set_aside.groupBy("event_date").agg(F.sum("n").alias("quarantined"))
                 .join(rows.select("event_date", "rows"), "event_date", "right")
                 .select("event_date", (F.col("rows") + F.coalesce(F.col("quarantined"), F.lit(0))).alias("total")))
    reasons = (set_aside.join(day_total, "event_date")
               .select("event_date", F.concat(F.lit("quarantine_share:"), F.col("reason")).alias("metric"),
                       (F.col("n") / F.col("total")).alias("value")))
    return long_rows.unionByName(reasons)


def _array_median(values: Column) -> Column:
    """The median of a non-empty numeric array (the mean of the two middle values when even)."""
    ordered = F.array_sort(values)
    n = F.size(ordered)
    low = F.element_at(ordered, ((n + 1) / 2).cast("int"))
    high = F.element_at(ordered, (n / 2 + 1).cast("int"))
    return (low + high) / 2


def robust_anomalies(daily: DataFrame, keys: list[str], value: str = "value", date: str = "event_date",
                     history_days: int = 28, min_history: int = 14, threshold: float = 4.0,
                     min_scale_share: float = 0.01) -> DataFrame:
    """Each row of `daily` (one per series and day) with the trailing median and MAD of the same
    series over the previous `history_days` days (the day itself excluded; missing days are not
    filled), z = (value - median) / scale with scale = 1.4826 MAD (at least min_scale_share of
    |median|, so a constant history does not make every small change infinite), and `alert`
    when |z| > threshold with at least `min_history` days of history."""
    day_number = F.datediff(F.col(date), F.lit("1970-01-01"))
    trailing = (Window.partitionBy(*keys).orderBy(day_number).rangeBetween(-history_days, -1))
    with_history = daily.withColumn("_history", F.collect_list(F.col(value).cast("double")).over(trailing))
    median = _array_median(F.col("_history"))
    out = (with_history
           .withColumn("history_days", F.size("_history"))
           .withColumn("median", F.when(F.col("history_days") > 0, median))
           .withColumn("mad", F.when(F.col("history_days") > 0, _array_median(
               F.transform("_history", lambda x: F.abs(x - F.col("median"))))))
           .withColumn("scale", F.greatest(MAD_TO_SIGMA * F.col("mad"), min_scale_share * F.abs(F.col("median")),
                                           F.lit(1e-12)))
           .withColumn("z", (F.col(value) - F.col("median")) / F.col("scale"))
           .withColumn("alert", (F.col("history_days") >= min_history) & (F.abs(F.col("z")) > threshold))
           .drop("_history"))
    return out

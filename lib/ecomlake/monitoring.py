"""Watching data and models after they ship (issue 16 §2): pure DataFrame functions.

- `drift`: how far a feature or score has moved between a reference snapshot (the training data)
  and today: the population stability index (PSI) and the Kolmogorov-Smirnov distance, both on the
  reference's quantile bins, computed in Spark (only the bin edges and the per-bin counts, a few
  numbers per column, reach the driver).
- `daily_quality_metrics` + `robust_anomalies`: a day's row counts, null shares, prices and
  quarantine shares against the trailing norm of the same metric (median and median absolute deviation of
  the previous days: one bad day in the history does not move them).
- `rule_failures`: declarative checks from config (Spark SQL expressions), per day.
The `monitor` job (ecomlake.jobs.monitor) runs them every day and writes gold/monitoring.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

PSI_ALERT = 0.25        # the usual reading: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a major one
MAD_TO_SIGMA = 1.4826   # the MAD of a normal distribution times this is its standard deviation
MEAN_AD_TO_SIGMA = 1.2533  # the same for the mean absolute deviation (sqrt(pi / 2))
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


# Kinds of daily metric, for the floor of their noise scale in robust_anomalies: a count's
# Poisson noise, a share's binomial noise on the day's rows, a level's (a median) 1 % of itself.
COUNT, SHARE, LEVEL = "count", "share", "level"
METRIC_SCHEMA = "event_date date, metric string, column string, segment string, kind string, value double, n double"


def _metric(name: str, column: str, kind: str, value: Column, n: Column, segment: Column | None = None) -> Column:
    return F.struct(F.lit(name).alias("metric"), F.lit(column).alias("column"),
                    (segment if segment is not None else F.lit("")).cast("string").alias("segment"),
                    F.lit(kind).alias("kind"), value.cast("double").alias("value"), n.cast("double").alias("n"))


def _long(frame: DataFrame, metrics: list[Column]) -> DataFrame:
    return frame.select("event_date", F.explode(F.array(*metrics)).alias("m")).select("event_date", "m.*")


def _price_index(events: DataFrame, price_column: str, segment_column: str | None, history_days: int) -> DataFrame:
    """METRIC_SCHEMA rows price_index (overall and per segment): the median over the day's products
    of (the product's median price that day / its median daily price over the previous
    history_days days). Products new in the window have no reference and are left out. Unlike the
    median price, it does not move when shoppers look at dearer or cheaper products, nor when a few
    products are on promotion: it moves when most products' prices do."""
    segment = (F.coalesce(F.col(segment_column).cast("string"), F.lit("unknown")) if segment_column
               else F.lit(""))
    product_days = events.groupBy("event_date", "product_id").agg(
        F.percentile_approx(price_column, 0.5, 10_000).alias("p"), F.first(segment).alias("_segment"))
    trailing = (Window.partitionBy("product_id").orderBy(F.datediff("event_date", F.lit("1970-01-01")))
                .rangeBetween(-history_days, -1))
    ratios = (product_days.withColumn("_history", F.collect_list("p").over(trailing))
              .where(F.size("_history") > 0)
              .select("event_date", "_segment", (F.col("p") / _array_median(F.col("_history"))).alias("ratio")))
    overall = ratios.groupBy("event_date").agg(F.percentile_approx("ratio", 0.5, 10_000).alias("r"),
                                               F.count(F.lit(1)).alias("k"))
    out = _long(overall, [_metric("price_index", price_column, LEVEL, F.col("r"), F.col("k"))])
    if segment_column:
        by_segment = ratios.groupBy("event_date", "_segment").agg(
            F.percentile_approx("ratio", 0.5, 10_000).alias("r"), F.count(F.lit(1)).alias("k"))
        out = out.unionByName(_long(by_segment, [_metric("price_index", price_column, LEVEL, F.col("r"), F.col("k"),
                                                         F.col("_segment"))]))
    return out


def daily_quality_metrics(events: DataFrame, quarantine: DataFrame, columns: list[str],
                          segment_column: str | None = None, price_column: str | None = None,
                          history_days: int = 28) -> DataFrame:
    """METRIC_SCHEMA rows, one per day, metric and segment (n: the rows the value comes from):
    - rows (column *), rows:<event_type> (event_type), users (user_key), events_per_session
      (user_session), when events has those columns;
    - null_share:<c> for each of `columns`;
    - median_price overall, and price_index (see _price_index) overall and per `segment_column`
      value (null: 'unknown'), when price_column (the index when events has product_id);
    - late_share (_ingested_at): the share of the day's rows that came in a later batch than the
      first one that brought rows of that day, when events has _batch_id and _ingested_at;
    - quarantine_share:<reason> (_quarantine): the share of that day's rows (kept + quarantined)
      set aside for each reason. Quarantined rows without a parseable date have no day and are
      left out."""
    has = set(events.columns)
    rows = F.count(F.lit(1))
    per_day = [rows.alias("rows"), *[F.avg(F.col(c).isNull().cast("double")).alias(f"null:{c}") for c in columns]]
    if "user_key" in has:
        per_day.append(F.countDistinct("user_key").alias("users"))
    if "user_session" in has:
        per_day.append(F.countDistinct("user_session").alias("sessions"))
    if price_column:
        per_day.append(F.percentile_approx(price_column, 0.5, 10_000).alias("median_price"))
    daily = events.groupBy("event_date").agg(*per_day)
    n = F.col("rows")
    metrics = [_metric("rows", "*", COUNT, n, n),
               *[_metric(f"null_share:{c}", c, SHARE, F.col(f"`null:{c}`"), n) for c in columns]]
    if "user_key" in has:
        metrics.append(_metric("users", "user_key", COUNT, F.col("users"), n))
    if "user_session" in has:
        metrics.append(_metric("events_per_session", "user_session", LEVEL, n / F.col("sessions"), F.col("sessions")))
    if price_column:
        metrics.append(_metric("median_price", price_column, LEVEL, F.col("median_price"), n))
    out = _long(daily, metrics)
    if "event_type" in has:
        by_type = events.groupBy("event_date", "event_type").agg(rows.alias("k"))
        out = out.unionByName(by_type.select("event_date", F.explode(F.array(_metric(
            "rows", "event_type", COUNT, F.col("k"), F.col("k"), F.col("event_type")))).alias("m")).select(
            "event_date", "m.*"))
    if price_column and "product_id" in has:
        out = out.unionByName(_price_index(events, price_column, segment_column, history_days))
    if {"_batch_id", "_ingested_at"} <= has:
        batches = events.groupBy("event_date", "_batch_id").agg(rows.alias("k"), F.min("_ingested_at").alias("t"))
        late = batches.groupBy("event_date").agg(
            (1 - F.min_by("k", F.struct("t", "_batch_id")) / F.sum("k")).alias("late"), F.sum("k").alias("k"))
        out = out.unionByName(_long(late, [_metric("late_share", "_ingested_at", SHARE, F.col("late"), F.col("k"))]))
    set_aside = (quarantine.where(F.col("event_date").isNotNull())
                 .groupBy("event_date", "reason").agg(F.count(F.lit(1)).alias("q")))
    day_total = (set_aside.groupBy("event_date").agg(F.sum("q").alias("quarantined"))
                 .join(daily.select("event_date", "rows"), "event_date", "right")
                 .select("event_date", (F.col("rows") + F.coalesce(F.col("quarantined"), F.lit(0))).alias("total")))
    reasons = set_aside.join(day_total, "event_date").select(
        "event_date", F.explode(F.array(_metric("quarantine_share", "_quarantine", SHARE,
                                                F.col("q") / F.col("total"), F.col("total"),
                                                F.col("reason")))).alias("m")).select("event_date", "m.*")
    return out.unionByName(reasons).select(
        "event_date", F.when(F.col("segment") != "", F.concat_ws(":", "metric", "segment"))
        .otherwise(F.col("metric")).alias("metric"), "column", "segment", "kind", "value", "n")


def rule_failures(events: DataFrame, rules: dict[str, str]) -> DataFrame:
    """(event_date, rule, failing_share, n): per day, the share of rows for which each rule (a
    Spark SQL boolean expression every row should satisfy) is false or null."""
    if not rules:
        return events.sparkSession.createDataFrame([], "event_date date, rule string, failing_share double, n long")
    daily = events.groupBy("event_date").agg(
        F.count(F.lit(1)).alias("n"),
        *[F.avg((~F.coalesce(F.expr(sql), F.lit(False))).cast("double")).alias(f"r{i}")
          for i, sql in enumerate(rules.values())])
    return daily.select("event_date", "n", F.explode(F.array(*[
        F.struct(F.lit(name).alias("rule"), F.col(f"r{i}").alias("failing_share"))
        for i, name in enumerate(rules)])).alias("x")).select("event_date", "x.rule", "x.failing_share", "n")


def _array_median(values: Column) -> Column:
    """The median of a non-empty numeric array (the mean of the two middle values when even)."""
    ordered = F.array_sort(values)
    n = F.size(ordered)
    low = F.element_at(ordered, ((n + 1) / 2).cast("int"))
    high = F.element_at(ordered, (n / 2 + 1).cast("int"))
    return (low + high) / 2


def _noise_floor(columns: list[str]) -> Column:
    """The least scale a metric's day-to-day noise can have, when daily rows carry `kind` and `n`:
    a count's Poisson sqrt(median); a share's binomial sqrt(p (1 - p) / n) on the day's n rows,
    with p at least 1 / n (a reason seen once in a while is not a zero-variance series)."""
    if not {"kind", "n"} <= set(columns):
        return F.lit(0.0)
    p = F.greatest(F.col("median"), 1 / F.greatest(F.col("n"), F.lit(1.0)))
    return (F.when(F.col("kind") == COUNT, F.sqrt(F.greatest(F.col("median"), F.lit(0.0))))
            .when(F.col("kind") == SHARE, F.sqrt(p * (1 - p) / F.greatest(F.col("n"), F.lit(1.0))))
            .otherwise(F.lit(0.0)))


def robust_anomalies(daily: DataFrame, keys: list[str], value: str = "value", date: str = "event_date",
                     history_days: int = 28, min_history: int = 14, threshold: float = 4.0,
                     min_scale_share: float = 0.01, gap_days: int = 0) -> DataFrame:
    """Each row of `daily` (one per series and day) with the trailing median and MAD of the same
    series over the previous `history_days` days (the day itself excluded; missing days are not
    filled), z = (value - median) / scale with scale = 1.4826 MAD (1.2533 times the mean absolute
    deviation when the MAD is 0: Iglewicz and Hoaglin's modified z-score) (at least min_scale_share of
    |median|, so a constant history does not make every small change infinite, and at least the
    noise floor of the metric's kind when rows carry `kind` and `n`), and `alert`
    when |z| > threshold with at least `min_history` days of history. gap_days leaves out the days
    just before (a value over the last 7 days compares with windows that do not overlap it: gap 6)."""
    day_number = F.datediff(F.col(date), F.lit("1970-01-01"))
    trailing = Window.partitionBy(*keys).orderBy(day_number).rangeBetween(-history_days - gap_days, -1 - gap_days)
    with_history = daily.withColumn("_history", F.collect_list(F.col(value).cast("double")).over(trailing))
    median = _array_median(F.col("_history"))
    out = (with_history
           .withColumn("history_days", F.size("_history"))
           .withColumn("median", F.when(F.col("history_days") > 0, median))
           .withColumn("mad", F.when(F.col("history_days") > 0, _array_median(
               F.transform("_history", lambda x: F.abs(x - F.col("median"))))))
           .withColumn("_mean_ad", F.when(F.col("history_days") > 0, F.aggregate(
               F.transform("_history", lambda x: F.abs(x - F.col("median"))), F.lit(0.0), lambda a, b: a + b)
               / F.col("history_days")))
           # A MAD of 0 with a history that still varies (a series that takes two values, the
           # lower one more than half the time) falls back to the mean absolute deviation.
           .withColumn("scale", F.greatest(F.when(F.col("mad") > 0, MAD_TO_SIGMA * F.col("mad"))
                                           .otherwise(MEAN_AD_TO_SIGMA * F.col("_mean_ad")),
                                           min_scale_share * F.abs(F.col("median")),
                                           _noise_floor(daily.columns), F.lit(1e-12)))
           .withColumn("z", (F.col(value) - F.col("median")) / F.col("scale"))
           .withColumn("alert", (F.col("history_days") >= min_history) & (F.abs(F.col("z")) > threshold))
           .drop("_history", "_mean_ad"))
    return out


def planted_detection(alerts: list[tuple], changes: list[dict], days: list[str]) -> dict:
    """How a run's daily alerts (monitored_date ISO, column) meet the planted changes (generator
    ground truth: kind, dates, columns, detect) over the checked `days`. An alert is true when a
    change planted on its day moves its column. A change with detect 'each' (a jump) must be found
    on each of its days; one with detect 'any' (a ramp, which the trailing norm absorbs) is found
    when any of its days has a true alert. Returns, per change, what was found; the false alerts;
    the quiet days (nothing planted) and how many of them had a false alert."""
    columns_on: dict[str, set] = {}
    for c in changes:
        for d in c["dates"]:
            columns_on.setdefault(d, set()).update(c["columns"])
    per_change = []
    for c in changes:
        planted_days = [d for d in c["dates"] if d in days]
        hit = sorted({d for d, col in alerts if d in planted_days and col in c["columns"]})
        if not planted_days:
            continue
        each = c.get("detect", "each") == "each"
        per_change.append({"kind": c["kind"], "detect": c.get("detect", "each"), "planted_days": len(planted_days),
                           "days_flagged": len(hit), "found": len(hit) == len(planted_days) if each else bool(hit),
                           "first_flagged": hit[0] if hit else None, "last_flagged": hit[-1] if hit else None})
    false = sorted({(d, col) for d, col in alerts if d in days and col not in columns_on.get(d, set())})
    quiet = [d for d in days if d not in columns_on]
    return {"changes": per_change, "changes_found": sum(c["found"] for c in per_change),
            "changes_planted": len(per_change), "false_alerts": len(false), "quiet_days": len(quiet),
            "quiet_days_with_false_alert": len({d for d, _ in false if d in quiet}),
            "false_alert_list": [f"{d} {col}" for d, col in false]}

"""Customer lifetime value: BG/NBD (repeat purchases) and Gamma-Gamma (spend), by maximum likelihood.

Fader, Hardie & Lee, "Counting your customers the easy way" (2005) and "RFM and CLV" (2005).
Per customer, from an orders table (customer_id, order_date, amount), in Spark:
  frequency  x    repeat purchase days in the calibration period (same-day orders are one purchase)
  recency    t_x  time from the first to the last purchase day, in `unit_days` units (weeks)
  age        T    time from the first purchase day to the end of calibration
  monetary   m    mean amount of the repeat purchase days (0 when x = 0)
Fitting needs the likelihood of every customer, but BG/NBD only depends on (x, t_x, T), so the
driver receives the distinct triples with their counts (bounded by the number of days squared,
not by customers); Gamma-Gamma receives (x, m rounded to cents) with counts, sampled down to
`max_fit_rows` if more. Predictions (they need the Gauss hypergeometric function) run in a
vectorised pandas function over the customers.
"""
from __future__ import annotations

import math

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ecomlake.errors import InputError

SUMMARY_COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary",
                   "frequency_holdout", "monetary_holdout", "holdout_length"]


def rfm_summary(orders: DataFrame, calibration_end: str, holdout_end: str | None = None,
                unit_days: float = 7.0) -> DataFrame:
    """orders (customer_id, order_date, amount) -> one row per customer who bought by calibration_end.
    Customers whose first purchase is after calibration_end are not in the summary (not yet acquired)."""
    from ecomlake.errors import require_columns

    require_columns(orders, ["customer_id", "order_date", "amount"], "orders")
    days = (orders.groupBy("customer_id", F.col("order_date").cast("date").alias("day"))
            .agg(F.sum("amount").alias("amount")))
    end = F.to_date(F.lit(calibration_end))
    first = days.where(F.col("day") <= end).groupBy("customer_id").agg(F.min("day").alias("first_day"))
    joined = days.join(first, "customer_id")
    in_calibration = F.col("day") <= end
    repeat = in_calibration & (F.col("day") > F.col("first_day"))
    if holdout_end:
        in_holdout = (F.col("day") > end) & (F.col("day") <= F.to_date(F.lit(holdout_end)))
    else:
        in_holdout = F.lit(False)
    summary = joined.groupBy("customer_id", "first_day").agg(
        F.sum(F.when(repeat, 1).otherwise(0)).alias("frequency"),
        F.max(F.when(in_calibration, F.col("day"))).alias("last_day"),
        F.avg(F.when(repeat, F.col("amount"))).alias("monetary"),
        F.sum(F.when(in_holdout, 1).otherwise(0)).alias("frequency_holdout"),
        F.avg(F.when(in_holdout, F.col("amount"))).alias("monetary_holdout"))
    holdout_length = (F.datediff(F.to_date(F.lit(holdout_end)), end) / unit_days) if holdout_end else F.lit(0.0)
    return summary.select(
        F.col("customer_id").cast("string").alias("customer_id"),
        F.col("frequency").cast("double"),
        (F.datediff("last_day", "first_day") / unit_days).alias("recency"),
        (F.datediff(end, "first_day") / unit_days).alias("T"),
        F.coalesce("monetary", F.lit(0.0)).alias("monetary"),
        F.col("frequency_holdout").cast("double"),
        F.coalesce("monetary_holdout", F.lit(0.0)).alias("monetary_holdout"),
        holdout_length.cast("double").alias("holdout_length"))


# --- BG/NBD ---------------------------------------------------------------------------------------

def bgnbd_log_likelihood(params, x, t_x, T) -> np.ndarray:
    """Per-customer log-likelihood (FHL 2005, eq. 6) in the lifetimes-style stable form."""
    from scipy.special import gammaln

    r, alpha, a, b = params
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def _fit(negative_ll, start, names) -> dict:
    from scipy.optimize import minimize

    result = minimize(lambda log_p: negative_ll(np.exp(log_p)), np.log(start), method="Nelder-Mead",
                      options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 20000, "maxfev": 20000})
    if not result.success or not np.isfinite(result.fun):
        raise InputError(f"maximum likelihood did not converge ({result.message}); too few customers?")
    return {**dict(zip(names, (float(v) for v in np.exp(result.x)))), "log_likelihood": float(-result.fun)}


def fit_bgnbd(summary: DataFrame) -> dict:
    """r, alpha, a, b by maximum likelihood over the distinct (x, t_x, T) triples (weighted)."""
    rows = summary.groupBy("frequency", "recency", "T").count().collect()
    if len(rows) < 4:
        raise InputError(f"BG/NBD needs customers with varied histories; got {len(rows)} distinct (x, t_x, T)")
    x, t_x, T, n = (np.array([row[i] for row in rows], dtype=float) for i in range(4))
    fitted = _fit(lambda p: -(n * bgnbd_log_likelihood(p, x, t_x, T)).sum(), [1.0, 1.0, 1.0, 1.0],
                  ["r", "alpha", "a", "b"])
    return {**fitted, "customers": int(n.sum())}


def bgnbd_expected_purchases(params: dict, t, x, t_x, T) -> np.ndarray:
    """E[purchases in the next t units | x, t_x, T] (FHL 2005, eq. 10)."""
    from scipy.special import hyp2f1

    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x, t_x, T, t = (np.asarray(v, dtype=float) for v in (x, t_x, T, t))
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    return head * body / (1 + _dead_odds(params, x, t_x, T))


def _dead_odds(params: dict, x, t_x, T) -> np.ndarray:
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return np.where(x > 0, odds, 0.0)


def bgnbd_probability_alive(params: dict, x, t_x, T) -> np.ndarray:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    return 1.0 / (1.0 + _dead_odds(params, x, t_x, T))


def bgnbd_unconditional_purchases(params: dict, t) -> float:
    """E[X(t)] for a customer just acquired (FHL 2005, eq. 9): the population's expected repeat count."""
    from scipy.special import hyp2f1

    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    z = t / (alpha + t)
    return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z)))


# --- Gamma-Gamma ----------------------------------------------------------------------------------

def gamma_gamma_log_likelihood(params, x, m) -> np.ndarray:
    """Per-customer log-likelihood of the mean spend m over x repeat purchases (FHL 2005b, eq. 3)."""
    from scipy.special import gammaln

    p, q, v = params
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
            + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v))


def fit_gamma_gamma(summary: DataFrame, max_fit_rows: int = 200_000, seed: int = 7) -> dict:
    """p, q, v over repeat customers with a positive spend."""
    repeat = summary.where((F.col("frequency") > 0) & (F.col("monetary") > 0))
    grouped = repeat.groupBy("frequency", F.round("monetary", 2).alias("monetary")).count()
    total = grouped.count()
    if total > max_fit_rows:  # keeps what reaches the driver bounded; the fit is on a sample then
        grouped = grouped.sample(fraction=max_fit_rows / total, seed=seed)
    rows = grouped.collect()
    if len(rows) < 3:
        raise InputError(f"Gamma-Gamma needs repeat customers with spend; got {len(rows)} distinct (x, m)")
    x, m, n = (np.array([row[i] for row in rows], dtype=float) for i in range(3))
    fitted = _fit(lambda p: -(n * gamma_gamma_log_likelihood(p, x, m)).sum(), [1.0, 1.0, 1.0], ["p", "q", "v"])
    return {**fitted, "customers": int(n.sum()), "sampled": total > max_fit_rows}


def gamma_gamma_expected_spend(params: dict, x, m) -> np.ndarray:
    """E[M | x, m]: a weighted mean of the population mean p v / (q - 1) and the customer's own m."""
    p, q, v = params["p"], params["q"], params["v"]
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    return (p * (v + x * m)) / (p * x + q - 1)


# --- Per-customer values --------------------------------------------------------------------------

VALUE_SCHEMA = ("customer_id string, frequency double, recency double, T double, monetary double, "
                "frequency_holdout double, monetary_holdout double, holdout_length double, predicted_holdout_purchases double, "
                "probability_alive double, expected_purchases double, expected_spend double, clv double")


def customer_values(summary: DataFrame, bgnbd: dict, gamma_gamma: dict, horizon: float) -> DataFrame:
    """Expected purchases over `horizon` units, P(alive), expected spend per purchase and
    CLV = expected purchases x expected spend (undiscounted), plus the holdout prediction."""
    def compute(frames):
        for pdf in frames:
            x, t_x, T = pdf["frequency"].to_numpy(), pdf["recency"].to_numpy(), pdf["T"].to_numpy()
            pdf["predicted_holdout_purchases"] = bgnbd_expected_purchases(bgnbd, pdf["holdout_length"].to_numpy(),
                                                                          x, t_x, T)
            pdf["probability_alive"] = bgnbd_probability_alive(bgnbd, x, t_x, T)
            pdf["expected_purchases"] = bgnbd_expected_purchases(bgnbd, horizon, x, t_x, T)
            population_mean = gamma_gamma["p"] * gamma_gamma["v"] / (gamma_gamma["q"] - 1)
            spend = np.where(x > 0, gamma_gamma_expected_spend(gamma_gamma, np.maximum(x, 1), pdf["monetary"]),
                             population_mean)
            pdf["expected_spend"] = spend
            pdf["clv"] = pdf["expected_purchases"] * spend
            yield pdf

    return summary.mapInPandas(compute, VALUE_SCHEMA)


def calibration_table(values: DataFrame, max_frequency: int = 7) -> DataFrame:
    """Predicted vs actual holdout purchases by calibration frequency (0..max_frequency-1, then 'max+')."""
    bucket = F.when(F.col("frequency") >= max_frequency, F.lit(f"{max_frequency}+")) \
        .otherwise(F.col("frequency").cast("int").cast("string"))
    order = F.least(F.col("frequency"), F.lit(float(max_frequency))).cast("int")
    return (values.groupBy(bucket.alias("calibration_frequency"), order.alias("bucket_order"))
            .agg(F.count("*").alias("customers"),
                 F.avg("frequency_holdout").alias("actual_holdout_purchases"),
                 F.avg("predicted_holdout_purchases").alias("predicted_holdout_purchases"))
            .orderBy("bucket_order"))


def holdout_metrics(values: DataFrame) -> dict:
    """Totals, per-customer MAE/RMSE and correlation of predicted vs actual holdout purchases, and the
    MAE of a naive baseline that repeats each customer's calibration rate (x / T) through the holdout."""
    actual, predicted = F.col("frequency_holdout"), F.col("predicted_holdout_purchases")
    naive = F.when(F.col("T") > 0, F.col("frequency") / F.col("T")).otherwise(0.0) * F.col("holdout_length")
    row = values.agg(F.count("*").alias("customers"), F.sum(actual).alias("actual_holdout_purchases"),
                     F.sum(predicted).alias("predicted_holdout_purchases"),
                     F.avg(F.abs(actual - predicted)).alias("mae"),
                     F.sqrt(F.avg((actual - predicted) ** 2)).alias("rmse"),
                     F.corr(actual, predicted).alias("correlation"),
                     F.avg(F.abs(actual - naive)).alias("naive_rate_mae")).first()
    return {k: float(v) if v is not None else math.nan for k, v in row.asDict().items()}

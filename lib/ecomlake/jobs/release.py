"""release: differentially private numbers for outside the company (daily funnel, regional demand).

  ./spark-submit.sh release daily_funnel --as-of 2019-12-01 [--days 7] [--epsilon 1.0]
  ./spark-submit.sh release regional_demand --as-of 2019-12-01 [--days 7] [--epsilon 1.0]

daily_funnel reads silver/events (the --days days before --as-of) and bronze/products (the public
list of top-level categories). Counts, per day x category, the users who viewed, carted and
bought, with each user's whole contribution bounded (release.max_cells_per_user cells, once per
cell) and Laplace noise from PipelineDP (pure epsilon-DP, epsilon = --epsilon or release.epsilon):
see ecomlake.dp for what is protected. -> gold/dp_daily_funnel: event_date, category, viewers,
carters, buyers (noisy, rounded, >= 0), cart_rate, purchase_rate (post-processing), noise_scale.
regional_demand reads the same and silver/customers: per region (release.regions, the rest
'other') x category, over the whole window (release.regional_grain = window; event_date is its
first day) or per day (= day), the units bought and their revenue, a user bounded to
release.regional_max_cells_per_user cells and release.max_units_per_cell purchases in each, prices
clamped to release.max_price. -> gold/dp_regional_demand: event_date, region, category, units,
revenue, units_noise_scale, revenue_noise_scale.
Both write:
  ops/privacy_ledger      one row per release (epsilon, window, bound) before its numbers are
                          computed; a release that would take the ledger's sum past
                          release.total_epsilon is refused with a message, and nothing is written
                          (both releases spend the one budget on silver/events' users)
  the released table, replaced per release_id
A release is named by its parameters (name, as-of, days, epsilon, bounds): running it again
returns the stored numbers and spends nothing (fresh noise on the same data would let anyone
average it away). A run killed after its ledger row and before its table completes on the next
run without spending again: its noisy numbers never left the process.
"""
from __future__ import annotations

import logging
import sys
from datetime import date, datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import dp, lake, ops, runs, tables
from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.errors import ConfigError, EcomlakeError, InputError

log = logging.getLogger(__name__)
JOB = "release"
RELEASES = ("daily_funnel", "regional_demand")
OUTPUTS = {"daily_funnel": tables.GOLD_DP_DAILY_FUNNEL, "regional_demand": tables.GOLD_DP_REGIONAL_DEMAND}
INPUTS = {"daily_funnel": [tables.SILVER_EVENTS, tables.BRONZE_PRODUCTS],
          "regional_demand": [tables.SILVER_EVENTS, tables.SILVER_CUSTOMERS, tables.BRONZE_PRODUCTS]}
PROTECTED = tables.SILVER_EVENTS.id  # the data whose users the budget protects
LEDGER_SCHEMA = ("release_id string, release string, dataset string, window_start date, window_end date, "
                 "epsilon double, delta double, max_cells_per_user int, run_id string, recorded_at timestamp")


class BudgetExhausted(EcomlakeError):
    """The release would spend more privacy budget than is left: nothing was computed."""


def spent(spark: SparkSession, root: str) -> tuple[float, dict[str, dict]]:
    """(epsilon spent on PROTECTED so far, ledger rows by release_id)."""
    if not lake.table_exists(spark, tables.OPS_PRIVACY_LEDGER.path(root)):
        return 0.0, {}
    rows = lake.read_table(spark, root, tables.OPS_PRIVACY_LEDGER).where(F.col("dataset") == PROTECTED).collect()
    return float(sum(r["epsilon"] for r in rows)), {r["release_id"]: r.asDict() for r in rows}


def released(spark: SparkSession, root: str, release: str, release_id: str):
    """The stored table of a release, or None when its numbers were never written."""
    if not lake.table_exists(spark, OUTPUTS[release].path(root)):
        return None
    rows = lake.read_table(spark, root, OUTPUTS[release]).where(F.col("release_id") == release_id)
    return rows if rows.limit(1).count() else None


def run(spark: SparkSession, config: dict, release: str, as_of: str, days: int | None = None,
        epsilon: float | None = None) -> dict:
    if release not in RELEASES:
        raise ConfigError(f"unknown release '{release}': one of {', '.join(RELEASES)}")
    root, settings = config["lake_root"], config["release"]
    as_of = parse_as_of(as_of)
    days = settings["days"] if days is None else days
    epsilon = settings["epsilon"] if epsilon is None else epsilon
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    if not epsilon > 0:
        raise ConfigError(f"--epsilon must be above 0, got {epsilon}")
    max_cells = settings["max_cells_per_user" if release == "daily_funnel" else "regional_max_cells_per_user"]
    total = settings["total_epsilon"]
    window = dp.window_days(as_of, days)
    params = {"days": days, "epsilon": epsilon, "max_cells_per_user": max_cells}
    if release == "regional_demand":
        params.update({"max_units_per_cell": settings["max_units_per_cell"], "max_price": settings["max_price"],
                       "regions": sorted(set(settings["regions"])), "grain": settings["regional_grain"]})
    release_id = runs.make_run_id(JOB, release, as_of, params)
    run_id, started = ops.new_run_id(JOB), datetime.now(timezone.utc)
    with ops.job_lease(spark, config, JOB, run_id):  # one release at a time: the budget check and its row go together
        spent_before, ledger = spent(spark, root)
        stored = released(spark, root, release, release_id) if release_id in ledger else None
        if stored is not None:
            log.info("release %s (%s as of %s, epsilon %g) was released before: its stored numbers, nothing "
                     "spent", release_id, release, as_of, epsilon)
            ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                           args={"release": release, "as_of": as_of, **params},
                           details={"release_id": release_id, "already_released": True,
                                    "epsilon_spent": spent_before})
            return _summary(release_id, release, as_of, epsilon, spent_before, total, stored, new=False)
        if release_id in ledger:
            log.warning("release %s is in ops/privacy_ledger but its numbers were never written (a run stopped "
                        "between the two): computing them now, without spending again", release_id)
        elif spent_before + epsilon > total + 1e-9:
            raise BudgetExhausted(
                f"release refused: it costs epsilon {epsilon:g}, and {spent_before:g} of the budget "
                f"release.total_epsilon = {total:g} on {PROTECTED} is spent ({len(ledger)} release(s) in "
                f"{tables.OPS_PRIVACY_LEDGER.id}); {max(total - spent_before, 0):g} is left. Release with a "
                f"smaller --epsilon, or raise the budget only if your privacy policy allows it.")
        if release == "regional_demand" and not lake.table_exists(spark, tables.SILVER_CUSTOMERS.path(root)):
            raise InputError("release regional_demand needs silver/customers: run `ingest --source customers "
                             "--input FILE` and then `clean` first")
        versions = runs.input_versions(spark, root, INPUTS[release])
        events = lake.read_table(spark, root, tables.SILVER_EVENTS)
        # Read three times (emptiness, the noisy numbers, the bound's report): scan the events once.
        if release == "daily_funnel":
            cells = dp.funnel_cells(events, window[0], as_of)
        else:
            cells = dp.regional_purchases(events, lake.read_table(spark, root, tables.SILVER_CUSTOMERS), window[0],
                                          as_of, params["regions"], whole_window=params["grain"] == "window")
        cells = cells.persist(StorageLevel.MEMORY_AND_DISK)
        if not cells.limit(1).count():
            steps = "view, cart or purchase" if release == "daily_funnel" else "purchase"
            raise InputError(f"silver/events has no {steps} from {window[0]} to before {as_of}: nothing to release")
        if release_id not in ledger:  # spent before anything is computed: a crash can only over-count
            entry = spark.createDataFrame([(release_id, release, PROTECTED, date.fromisoformat(window[0]),
                                            date.fromisoformat(as_of), float(epsilon), 0.0, int(max_cells), run_id,
                                            started.replace(tzinfo=None))], LEDGER_SCHEMA)
            lake.append_table(entry, root, tables.OPS_PRIVACY_LEDGER)
        categories = [r["category"] for r in dp.catalogue_categories(
            lake.read_table(spark, root, tables.BRONZE_PRODUCTS)).collect()]  # the catalogue's, not the users'
        if release == "daily_funnel":
            table, bound, scales = _daily_funnel(cells, window, categories, epsilon, max_cells)
        else:
            table, bound, scales = _regional_demand(cells, window, categories, epsilon, max_cells, params)
        table = table.withColumns({"release_id": F.lit(release_id), "release": F.lit(release),
                                   "epsilon": F.lit(float(epsilon)), **{c: F.lit(v) for c, v in scales.items()},
                                   "released_at": F.lit(started.replace(tzinfo=None))})
        lake.replace_partition(table, root, OUTPUTS[release], "release_id", release_id)
        spent_after = spent_before + (0.0 if release_id in ledger else epsilon)
        stored = released(spark, root, release, release_id)
        written = {t.id: lake.table_version(spark, root, t) for t in (OUTPUTS[release], tables.OPS_PRIVACY_LEDGER)}
        ops.record_run(spark, root, run_id=run_id, job=JOB, started_at=started, status="succeeded",
                       args={"release": release, "as_of": as_of, **params}, input_versions=versions,
                       output_versions=written, counts={"rows": stored.count()},
                       details={"release_id": release_id, "epsilon_spent": spent_after, **bound})
        log.info("release %s: %s, %s to %s, %d categories, epsilon %g (noise scale %s); %d of %d users are over "
                 "the contribution bound; budget spent %g of %g", release_id, release, window[0], window[-1],
                 len(categories), epsilon, ", ".join(f"{k} {v:g}" for k, v in scales.items()),
                 bound["users_over_bound"], bound["users"], spent_after, total)
        cells.unpersist()
        return _summary(release_id, release, as_of, epsilon, spent_after, total, stored, new=True)


def _daily_funnel(cells, window, categories, epsilon, max_cells):
    """(table, bound report, noise scales) of the daily funnel release."""
    counts = dp.noisy_cell_counts(cells, dp.public_cells(window, categories), epsilon, max_cells)
    bound = dp.users_over_bound(cells, max_cells).first()
    return (dp.funnel_table(counts), {"users": bound["users"], "users_over_bound": bound["over_bound"],
                                      "cells_dropped_by_bound": bound["cells"] - bound["cells_kept"]},
            {"noise_scale": dp.laplace_scale(epsilon, max_cells)})


def _regional_demand(purchases, window, categories, epsilon, max_cells, params):
    """(table, bound report, noise scales) of the regional demand release."""
    max_units, max_price = params["max_units_per_cell"], params["max_price"]
    days = window if params["grain"] == "day" else window[:1]   # a window cell is dated by its first day
    keys = dp.public_regional_cells(days, params["regions"], categories)
    table = dp.regional_table(dp.noisy_regional_demand(purchases, keys, epsilon, max_cells, max_units, max_price))
    bound = dp.regional_over_bound(purchases, max_cells, max_units).first()
    scales = dp.regional_scales(epsilon, max_cells, max_units, max_price)
    return (table, {"users": bound["users"], "users_over_bound": bound["over_bound"], "units": bound["units"],
                    "units_kept_at_most": bound["units_kept_at_most"]},
            {"units_noise_scale": scales["units"], "revenue_noise_scale": scales["revenue"]})


def _summary(release_id, release, as_of, epsilon, spent_epsilon, total, table, new: bool) -> dict:
    return {"release_id": release_id, "release": release, "as_of": as_of, "epsilon": epsilon, "new": new,
            "epsilon_spent": spent_epsilon, "epsilon_left": total - spent_epsilon,
            "rows": table.count() if table is not None else 0}


def main(argv=None) -> int:
    parser = job_parser(JOB, __doc__)
    parser.add_argument("release", choices=RELEASES, help="what to release")
    parser.add_argument("--as-of", required=True, help="the release covers the --days days before this date")
    parser.add_argument("--days", type=int, help="days covered (default: release.days)")
    parser.add_argument("--epsilon", type=float, help="privacy cost of this release (default: release.epsilon)")
    return run_job(JOB, parser, lambda spark, config, a: run(spark, config, a.release, a.as_of, a.days, a.epsilon),
                   argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

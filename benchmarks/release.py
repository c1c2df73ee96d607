"""Accuracy of the differentially private daily funnel against epsilon (job `release`).

  .venv/bin/python benchmarks/release.py [--events 200000] [--workdir /tmp/ecomlake-bench-release]

Generates N events and runs the pipeline unless the workdir already holds them; then, for the
`--days` days before --as-of, computes the exact funnel (users who viewed, carted, bought, per day
and top-level category) and the released one (ecomlake.dp: bounded to --max-cells cells per
user, Laplace noise through PipelineDP) at each epsilon, --repeats times, and prints the
median relative error of the rates cart/view and purchase/view, per day x category cell and per
category over the whole window (the daily noisy counts summed: post-processing). Cells whose exact
viewers are under --min-viewers are left out of the daily figure (a rate of 2 buyers in 9 viewers
says little even without noise); their number is printed. Epsilon 1e6 shows the bounding alone.
With --regional, the regional_demand release instead, on a lake generated with the customer
master (generate.regions), at each grain (one cell per region x category for the window, or per
day): the median relative error of units and revenue per region x category and per region over
the window (the released cells summed) and, at the day grain, per region x day, over the cells
with at least --min-units exact units, for each --max-cells and --max-units bound, prices clamped to
release.max_price; against all purchases and against those of the buyers who are not the
generator's card testers or bots (the ground truth's labels).
Not a test and not a release: the ledger is not touched, and the exact numbers stay here.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake import config as cfg  # noqa: E402
from ecomlake import dp, lake, tables  # noqa: E402
from ecomlake.jobs import pipeline  # noqa: E402
from ecomlake.jobs.risk import planted_fraud_labels  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

log = logging.getLogger("bench.release")
RATES = ("cart_rate", "purchase_rate")


def relative_errors(released, exact, min_viewers: int) -> dict[str, list[float]]:
    """|released - exact| / exact of each rate, over the cells with enough viewers and a rate > 0."""
    out = {rate: [] for rate in RATES}
    for key, truth in exact.items():
        if (truth["viewers"] or 0) < min_viewers:
            continue
        got = released.get(key, {})
        for rate in RATES:
            if truth[rate]:
                out[rate].append(abs((got.get(rate) or 0.0) - truth[rate]) / truth[rate])
    return out


def by_cell(frame) -> dict:
    return {(str(r["event_date"]), r["category"]): r.asDict() for r in frame.collect()}


def by_category(rows: dict) -> dict:
    """The window's rates per category from the daily counts (sums of the released counts)."""
    totals: dict = {}
    for (_, category), r in rows.items():
        t = totals.setdefault((None, category), {"viewers": 0, "carters": 0, "buyers": 0})
        for column in ("viewers", "carters", "buyers"):
            t[column] += r[column] or 0
    for t in totals.values():
        t["cart_rate"] = t["carters"] / t["viewers"] if t["viewers"] else None
        t["purchase_rate"] = t["buyers"] / t["viewers"] if t["viewers"] else None
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default="/tmp/ecomlake-bench-release")
    parser.add_argument("--as-of", default="2019-12-01")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    parser.add_argument("--max-cells", type=int, nargs="+", default=None,
                        help="contribution bounds to compare (cells per user; default 2 4 10, --regional 1 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-viewers", type=int, default=50)
    parser.add_argument("--regional", action="store_true", help="measure the regional_demand release")
    parser.add_argument("--min-units", type=int, default=10, help="--regional: cells judged need this many units")
    parser.add_argument("--max-units", type=int, nargs="+", default=[1, 2],
                        help="--regional: purchases a user counts with in one cell")
    parser.add_argument("--grains", nargs="+", default=["window", "day"], choices=["window", "day"],
                        help="--regional: one cell per region x category for the window, or per day")
    parser.add_argument("--output", default=None, help="default: results-release.json (--regional: "
                                                       "results-release-regional.json) next to this script")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    work = Path(args.workdir) / (f"events-{args.events}" + ("-regions" if args.regional else ""))
    config = cfg.load("local", overrides=[f"generate.output={work}/raw", "spark.conf.spark.sql.shuffle.partitions=4",
                                          f"generate.regions={str(args.regional).lower()}"],
                      lake=str(work / "lake"))
    spark = get_spark(config, "bench-release")
    spark.sparkContext.setLogLevel("ERROR")
    root = config["lake_root"]
    if not lake.table_exists(spark, tables.SILVER_EVENTS.path(root)):
        pipeline.run(spark, config, events=args.events, seed=args.seed)
    if args.regional:
        args.max_cells = args.max_cells or [1, 2]
        return regional(spark, config, args)
    args.max_cells = args.max_cells or [2, 4, 10]
    args.output = args.output or str(Path(__file__).with_name("results-release.json"))

    window = dp.window_days(args.as_of, args.days)
    cells = dp.funnel_cells(lake.read_table(spark, root, tables.SILVER_EVENTS), window[0], args.as_of).persist()
    categories = [r["category"] for r in dp.catalogue_categories(
        lake.read_table(spark, root, tables.BRONZE_PRODUCTS)).collect()]
    keys = dp.public_cells(window, categories)
    exact = by_cell(dp.exact_funnel_table(cells))
    judged = sum(1 for r in exact.values() if (r["viewers"] or 0) >= args.min_viewers)
    bounds = {}
    for max_cells in sorted(set(args.max_cells)):
        bound = bounds[max_cells] = dp.users_over_bound(cells, max_cells).first().asDict()
        log.info("window %s..%s: %d users, %d cells reached (%d public), %d day x category rows with >= %d viewers; "
                 "%d users over the bound of %d cells; %d of %d cells kept",
                 window[0], window[-1], bound["users"], bound["cells"], len(keys), judged, args.min_viewers,
                 bound["over_bound"], max_cells, bound["cells_kept"], bound["cells"])

    results = []
    for max_cells, epsilon in [(m, e) for m in sorted(set(args.max_cells)) for e in [1e6, *args.epsilons]]:
        daily = {rate: [] for rate in RATES}
        weekly = {rate: [] for rate in RATES}
        seconds = []
        for _ in range(1 if epsilon == 1e6 else args.repeats):
            started = time.time()
            released = by_cell(dp.funnel_table(dp.noisy_cell_counts(cells, keys, epsilon, max_cells)))
            seconds.append(time.time() - started)
            for rate, values in relative_errors(released, exact, args.min_viewers).items():
                daily[rate] += values
            for rate, values in relative_errors(by_category(released), by_category(exact), args.min_viewers).items():
                weekly[rate] += values
        row = {"max_cells_per_user": max_cells, "epsilon": epsilon,
               "noise_scale": dp.laplace_scale(epsilon, max_cells),
               "seconds_per_release": round(statistics.fmean(seconds), 1),
               **{f"daily_{rate}_median_rel_error": round(statistics.median(v), 4) for rate, v in daily.items()},
               **{f"window_{rate}_median_rel_error": round(statistics.median(v), 4) for rate, v in weekly.items()}}
        results.append(row)
        log.info("max_cells %2d epsilon %-8g noise scale %7.2f  daily cart/view %.3f purchase/view %.3f  "
                 "window cart/view %.3f purchase/view %.3f  (%.1f s per release)", max_cells, epsilon,
                 row["noise_scale"],
                 row["daily_cart_rate_median_rel_error"], row["daily_purchase_rate_median_rel_error"],
                 row["window_cart_rate_median_rel_error"], row["window_purchase_rate_median_rel_error"],
                 row["seconds_per_release"])
    out = {"events": args.events, "as_of": args.as_of, "days": args.days, "repeats": args.repeats,
           "min_viewers": args.min_viewers, "judged_daily_cells": judged, "categories": len(categories),
           "bounds": {str(m): b for m, b in bounds.items()}, "results": results}
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    log.info("wrote %s", args.output)


def regional_errors(released: dict, exact: dict, min_units: int) -> dict[str, list[float]]:
    """|released - exact| / exact of units and revenue over the exact cells with >= min_units units."""
    out = {"units": [], "revenue": []}
    for key, truth in exact.items():
        if truth["units"] < min_units:
            continue
        got = released.get(key, {"units": 0, "revenue": 0.0})
        for measure in out:
            out[measure].append(abs(got[measure] - truth[measure]) / truth[measure])
    return out


def summed(rows, keys: tuple[int, ...]) -> dict:
    """{key: {units, revenue}} of (event_date, region, category) rows summed over the other keys."""
    out: dict = {}
    for r in rows:
        key = tuple((str(r["event_date"]), r["region"], r["category"])[i] for i in keys)
        cell = out.setdefault(key, {"units": 0, "revenue": 0.0})
        cell["units"] += r["units"]
        cell["revenue"] += r["revenue"]
    return out


def regional(spark, config: dict, args) -> None:
    root, settings = config["lake_root"], config["release"]
    max_price, regions = settings["max_price"], settings["regions"]
    window = dp.window_days(args.as_of, args.days)
    events, customers = (lake.read_table(spark, root, t) for t in (tables.SILVER_EVENTS, tables.SILVER_CUSTOMERS))
    daily = dp.regional_purchases(events, customers, window[0], args.as_of, regions).persist()
    categories = [r["category"] for r in dp.catalogue_categories(
        lake.read_table(spark, root, tables.BRONZE_PRODUCTS)).collect()]
    # Judged views of a release: (key positions of (event_date, region, category) kept, grains).
    views = {"region_category_window": ((1, 2), ("window", "day")), "region_window": ((1,), ("window", "day")),
             "region_day": ((0, 1), ("day",))}
    # The generator's card testers buy in loops: the demand of everybody else, which bounding
    # each user's contribution keeps, is the second yardstick.
    labels = planted_fraud_labels(spark, config).where(F.col("label") == 0).select("user_key")
    truth = {"all": dp.exact_regional_demand(daily).collect(),            # a few hundred cells
             "legitimate": dp.exact_regional_demand(daily.join(labels, "user_key")).collect()}
    exact = {(yardstick, name): summed(rows, k) for yardstick, rows in truth.items() for name, (k, _) in views.items()}
    judged = {f"{y}_{n}": sum(1 for c in cells.values() if c["units"] >= args.min_units) for (y, n), cells in exact.items()}
    log.info("the window's units: %d in all, %d by buyers who are not card testers or bots; judged cells (>= %d "
             "units): %s", sum(r["units"] for r in truth["all"]), sum(r["units"] for r in truth["legitimate"]),
             args.min_units, judged)
    log.info("purchase prices: median %.0f, 90 %% %.0f, 95 %% %.0f, 99 %% %.0f (revenue clamps each at %g)",
             *daily.approxQuantile("price", [0.5, 0.9, 0.95, 0.99], 0.001), max_price)
    results, bounds = [], {}
    for grain in args.grains:
        purchases = daily if grain == "day" else dp.regional_purchases(events, customers, window[0], args.as_of,
                                                                       regions, whole_window=True).persist()
        keys = dp.public_regional_cells(window if grain == "day" else window[:1], regions, categories)
        for max_cells, max_units in [(c, u) for c in sorted(set(args.max_cells)) for u in sorted(set(args.max_units))]:
            bound = bounds[f"{grain}_{max_cells}x{max_units}"] = dp.regional_over_bound(
                purchases, max_cells, max_units).first().asDict()
            log.info("grain %s: %d buyers, %d units; %d users over the bound (%d cells, %d units a cell)", grain,
                     bound["users"], bound["units"], bound["over_bound"], max_cells, max_units)
            for epsilon in [1e6, *args.epsilons]:
                errors = {key: {"units": [], "revenue": []} for key in exact if grain in views[key[1]][1]}
                seconds = []
                for _ in range(1 if epsilon == 1e6 else args.repeats):
                    started = time.time()
                    released = dp.regional_table(dp.noisy_regional_demand(purchases, keys, epsilon, max_cells,
                                                                          max_units, max_price)).collect()
                    seconds.append(time.time() - started)
                    for (yardstick, name), measures in errors.items():
                        got = summed(released, views[name][0])
                        for measure, values in regional_errors(got, exact[(yardstick, name)], args.min_units).items():
                            measures[measure] += values
                scales = dp.regional_scales(epsilon, max_cells, max_units, max_price)
                row = {"grain": grain, "max_cells_per_user": max_cells, "max_units_per_cell": max_units,
                       "epsilon": epsilon, "units_noise_scale": scales["units"],
                       "revenue_noise_scale": scales["revenue"],
                       "seconds_per_release": round(statistics.fmean(seconds), 1),
                       **{f"{yardstick}_{name}_{measure}": round(statistics.median(v), 4)
                          for (yardstick, name), measures in errors.items() for measure, v in measures.items()}}
                results.append(row)
                log.info("grain %-6s max_cells %d max_units %d epsilon %-8g median relative error, %s", grain,
                         max_cells, max_units, epsilon, "  ".join(
                             f"{k}={v:.3f}" for k, v in row.items() if k.startswith(("all_", "legitimate_"))))
    out = {"events": args.events, "as_of": args.as_of, "days": args.days, "repeats": args.repeats,
           "min_units": args.min_units, "judged": judged, "max_price": max_price,
           "units": sum(r["units"] for r in truth["all"]), "legitimate_units": sum(r["units"] for r in truth["legitimate"]),
           "regions": regions, "categories": len(categories), "bounds": bounds, "results": results}
    output = args.output or str(Path(__file__).with_name("results-release-regional.json"))
    Path(output).write_text(json.dumps(out, indent=2) + "\n")
    log.info("wrote %s", output)


if __name__ == "__main__":
    main()

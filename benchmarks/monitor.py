"""The monitor's daily alerts against planted truth, at several z thresholds (job `monitor`).

  make monitor monitor-quiet && .venv/bin/python benchmarks/monitor.py

Reads gold/monitoring of the two lakes those targets build (the newest run of each) and the
generator's ground truth beside them: `lakehouse-monitor` (a bot surge and a price shock planted,
generate.change_points) and `lakehouse` (nothing planted beyond the card testers every generated
lake has). For each threshold on the robust z of the daily quality metrics (the rules and schema
checks do not depend on it) it prints what ecomlake.monitoring.planted_detection finds: the planted
changes found, the false alerts (day x column) and the quiet days (nothing planted) with one. No
Spark job is re-run: the z of every metric and day is stored, so a threshold is a filter.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from pyspark.sql import functions as F  # noqa: E402

from ecomlake import config as cfg  # noqa: E402
from ecomlake import lake, monitoring, tables  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402

log = logging.getLogger("bench.monitor")
LAKES = {"planted": ("lakehouse-monitor/lake", "lakehouse-monitor/data"), "quiet": ("lakehouse", "data/rees46")}


def daily_alerts(rows, threshold: float) -> list[tuple[str, str]]:
    """(day, column) of the daily checks that alert when quality metrics alert at |z| > threshold."""
    quality = rows.where((F.col("check") == "quality") & (F.abs("score") > threshold)
                         & (F.get_json_object("detail", "$.history_days").cast("int") >= F.lit(14)))
    others = rows.where(F.col("check").isin("rule", "schema") & F.col("alert"))
    pairs = quality.select("monitored_date", "column").union(others.select("monitored_date", "column")).distinct()
    return [(r[0].isoformat(), r[1]) for r in pairs.collect()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[3.0, 3.5, 4.0, 5.0, 6.0])
    parser.add_argument("--output", default=str(Path(__file__).with_name("results-monitor.json")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spark = get_spark(cfg.load("local"), "bench-monitor")
    spark.sparkContext.setLogLevel("ERROR")
    results = {}
    for name, (root, data) in LAKES.items():
        if not lake.table_exists(spark, tables.GOLD_MONITORING.path(root)):
            log.error("%s has no gold/monitoring: run `make %s` first", root,
                      "monitor" if name == "planted" else "monitor-quiet")
            sys.exit(2)
        table = lake.read_table(spark, root, tables.GOLD_MONITORING)
        as_of = table.agg(F.max("as_of_date")).first()[0]
        rows = table.where(F.col("as_of_date") == as_of).cache()
        days = sorted(r[0].isoformat() for r in rows.where(F.col("check") == "quality")
                      .select("monitored_date").distinct().collect())
        changes = json.loads(lake.read_text_file(spark, f"{data}/_ground_truth/generator.json"))["change_points"]
        for t in args.thresholds:
            got = monitoring.planted_detection(daily_alerts(rows, t), changes, days)
            results[f"{name} z>{t:g}"] = got
            found = ", ".join(f"{c['kind']} {c['days_flagged']}/{c['planted_days']} days" for c in got["changes"])
            log.info("%-7s z > %-4g found %d of %d (%s); false alerts %d; quiet days with one %d of %d",
                     name, t, got["changes_found"], got["changes_planted"], found, got["false_alerts"],
                     got["quiet_days_with_false_alert"], got["quiet_days"])
    Path(args.output).write_text(json.dumps(results, indent=2))
    log.info("written %s", args.output)


if __name__ == "__main__":
    main()

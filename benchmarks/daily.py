"""Daily-operation benchmark: 30 daily REES46 files run one day at a time, incremental against
full refresh, with the lake's file count and bytes.

  .venv/bin/python benchmarks/daily.py [--events 10000000] [--days 30] [--maintain-every 7] \
      [--maintain-retention-days 7] [--full-refresh-days 2,10,20,30] [--workdir /tmp/ecomlake-daily] \
      [--json benchmarks/results-daily.json]

Per day: seconds of ingest + clean + sessionize on the lake that holds every earlier day
(incremental, the default of each job), then the lake's files and bytes; every --maintain-every
days `maintain` runs (OPTIMIZE + VACUUM) and its time is printed apart. A simulated day lasts a
minute here, not 24 hours, so VACUUM's retention is scaled the same way: --maintain-retention-days
7 keeps what the last 7 simulated days removed (the wall time they took), as `maintain`'s default
168 h does in production. On the days of
--full-refresh-days, a second lake that holds the same files times `clean --full-refresh` +
`sessionize --full-refresh`, which grows with history. Not a test: numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import logging
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake import config as cfg  # noqa: E402
from ecomlake.jobs import clean, generate, ingest, sessionize  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402


def lake_size(root: str) -> tuple[int, int]:
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(folder, name))
    return files, size


def timed(fn) -> float:
    started = time.time()
    fn()
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000,
                        help="events generated over 61 days (10M: about 5M in the first 30 daily files)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--maintain-every", type=int, default=7, help="0: never")
    parser.add_argument("--maintain-retention-days", type=float, default=7,
                        help="VACUUM retention in simulated days (scaled to the wall time they took)")
    parser.add_argument("--full-refresh-days", default="2,10,20,30")
    parser.add_argument("--workdir", default="/tmp/ecomlake-daily")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir)
    raw, arrivals, full_arrivals = work / "raw", work / "arrivals", work / "arrivals-full"
    for folder in (work / "lake", work / "lake-full", arrivals, full_arrivals):
        shutil.rmtree(folder, ignore_errors=True)
    arrivals.mkdir(parents=True)
    full_arrivals.mkdir(parents=True)
    # The generator spreads --events over its 61 days (config generate.days); the first --days files run.
    overrides = [f"generate.output={raw}", "spark.conf.spark.ui.enabled=false"]
    config = cfg.load("local", overrides=overrides, lake=str(work / "lake"))
    full_config = cfg.load("local", overrides=overrides, lake=str(work / "lake-full"))
    spark = get_spark(config, "bench-daily")
    spark.sparkContext.setLogLevel("ERROR")
    t = time.time()
    generate.run(spark, config, events=args.events, daily=True)
    print(f"generate --daily: {args.events:,} events in {time.time() - t:.0f} s", flush=True)
    files = sorted((raw / "events").glob("*.csv"))[: args.days]
    full_days = {int(d) for d in args.full_refresh_days.split(",") if d}
    rows, day_started = [], []
    print(f"{'day':>4} {'lines':>9} {'ingest':>7} {'clean':>7} {'sessionize':>10} {'total':>7} "
          f"{'full refresh':>12} {'maintain':>8} {'lake files':>10} {'lake MiB':>9}", flush=True)
    for day, path in enumerate(files, start=1):
        day_started.append(time.time())
        os.link(path, arrivals / path.name)
        os.link(path, full_arrivals / path.name)
        lines = sum(1 for _ in open(path, "rb")) - 1
        step = {"ingest": timed(lambda: ingest.run(spark, config, "rees46", str(arrivals))),
                "clean": timed(lambda: clean.run(spark, config)),
                "sessionize": timed(lambda: sessionize.run(spark, config))}
        full = None
        if day in full_days:
            ingest.run(spark, full_config, "rees46", str(full_arrivals))
            full = timed(lambda: (clean.run(spark, full_config, full_refresh=True),
                                  sessionize.run(spark, full_config, full_refresh=True)))
        maintained = None
        if args.maintain_every and day % args.maintain_every == 0:
            from ecomlake.jobs import maintain

            # the wall time of the last --maintain-retention-days simulated days, as the retention
            first = day_started[max(0, day - int(math.ceil(args.maintain_retention_days)))]
            retention_hours = (time.time() - first) / 3600
            maintained = timed(lambda: maintain.run(spark, config, retention_hours=retention_hours))
        n_files, n_bytes = lake_size(config["lake_root"])
        row = {"day": day, "lines": lines, **step, "total": sum(step.values()), "full_refresh": full,
               "maintain": maintained, "lake_files": n_files, "lake_bytes": n_bytes}
        rows.append(row)
        print(f"{day:>4} {lines:>9,} {step['ingest']:>7.1f} {step['clean']:>7.1f} {step['sessionize']:>10.1f} "
              f"{row['total']:>7.1f} {full if full is not None else float('nan'):>12.1f} "
              f"{maintained if maintained is not None else float('nan'):>8.1f} {n_files:>10,} "
              f"{n_bytes / 2**20:>9.1f}", flush=True)
    if len(rows) >= 30:
        print(f"day 30 / day 2 (incremental): {rows[29]['total'] / rows[1]['total']:.2f}x (goal <= 1.3x)")
    fulls = [r for r in rows if r["full_refresh"] is not None]
    if len(fulls) >= 2:
        print(f"full refresh, day {fulls[-1]['day']} / day {fulls[0]['day']}: "
              f"{fulls[-1]['full_refresh'] / fulls[0]['full_refresh']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"events": args.events, "days": args.days, "rows": rows}, indent=1))
    spark.stop()


if __name__ == "__main__":
    main()

"""ETL benchmark: generate N events, run ingest -> clean -> sessionize, compare sessionize with DuckDB.

  .venv/bin/python benchmarks/etl.py --events 10000000 [--events 40000000] [--workdir /tmp/ecomlake-bench]

Prints per job: wall time and events/s; peak RSS of the Python driver and of the Spark JVM
(sampled every 0.2 s); then the same sessionization as one DuckDB SQL query over the same
Parquet files that back silver/events, the Spark/DuckDB time ratio (Spark timed cold and warm,
both writing sessions to Parquet) and whether the session counts match. Not a test: numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ecomlake import config as cfg  # noqa: E402
from ecomlake import lake, sessionize, tables  # noqa: E402
from ecomlake.jobs import clean, generate, ingest  # noqa: E402
from ecomlake.jobs import sessionize as sessionize_job  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402

DUCKDB_SESSIONS = """
COPY (
  WITH e AS (
    SELECT user_key, event_time, event_type, product_id, category_code, price,
           CASE event_type WHEN 'view' THEN 0 WHEN 'cart' THEN 1 WHEN 'remove_from_cart' THEN 2 ELSE 3 END AS type_order
    FROM read_parquet({files})
  ), marked AS (
    SELECT *, CASE WHEN lag(event_time) OVER w IS NULL
                     OR epoch(event_time) - epoch(lag(event_time) OVER w) > {gap_seconds} THEN 1 ELSE 0 END AS starts
    FROM e WINDOW w AS (PARTITION BY user_key ORDER BY event_time, type_order, product_id)
  ), numbered AS (
    SELECT *, sum(starts) OVER (PARTITION BY user_key ORDER BY event_time, type_order, product_id
                                ROWS UNBOUNDED PRECEDING) AS session_number
    FROM marked
  )
  SELECT user_key, session_number, min(event_time) AS session_start, max(event_time) AS session_end,
         count(*) AS events, sum((event_type = 'view')::INT) AS views, sum((event_type = 'cart')::INT) AS carts,
         sum((event_type = 'remove_from_cart')::INT) AS removes, sum((event_type = 'purchase')::INT) AS purchases,
         count(DISTINCT product_id) AS distinct_products,
         round(sum(CASE WHEN event_type = 'purchase' THEN price ELSE 0 END), 2) AS revenue,
         arg_min(category_code, (event_time, type_order, product_id)) AS first_category
  FROM numbered GROUP BY user_key, session_number
) TO '{out}' (FORMAT PARQUET)
"""


class PeakMemory:
    """Peak RSS of this Python process and of its JVM child, sampled in a background thread."""

    def __init__(self):
        self.peak_python = self.peak_jvm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                self.peak_python = max(self.peak_python, me.memory_info().rss)
                jvm = sum(c.memory_info().rss for c in me.children(recursive=True) if "java" in c.name())
                self.peak_jvm = max(self.peak_jvm, jvm)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(label, fn, rows_for_rate=None, results=None):
    with PeakMemory() as mem:
        t = time.time()
        out = fn()
        seconds = time.time() - t
    rows = rows_for_rate(out) if rows_for_rate else None
    rate = f"{rows / seconds:>12,.0f} events/s" if rows else " " * 21
    print(f"  {label:<28} {seconds:>8.1f} s {rate}   peak RSS python {mem.peak_python / 2**20:>6.0f} MiB,"
          f" JVM {mem.peak_jvm / 2**20:>6.0f} MiB", flush=True)
    if results is not None:
        results[label] = {"seconds": seconds, "events_per_s": rows / seconds if rows else None,
                          "peak_python_mib": mem.peak_python / 2**20, "peak_jvm_mib": mem.peak_jvm / 2**20}
    return out


def bench(spark, events: int, workdir: Path, driver_memory: str, regenerate: bool) -> dict:
    import duckdb

    root = workdir / f"n{events}"
    import shutil

    shutil.rmtree(root / "lake", ignore_errors=True)  # every run starts from an empty lake
    config = cfg.load("local", overrides=[f"generate.output={root}/raw"], lake=str(root / "lake"))
    results: dict = {"events": events}
    print(f"\n== {events:,} events (workdir {root}) ==", flush=True)
    truth = timed("generate", lambda: generate.run(spark, config, events=events, force=regenerate),
                  lambda t: t["data_lines"], results)
    n_lines = truth["data_lines"]
    timed("ingest", lambda: ingest.run(spark, config, "rees46", f"{root}/raw/events"), lambda _: n_lines, results)
    timed("clean", lambda: clean.run(spark, config), lambda r: r["bronze_rows"], results)
    silver_rows = results["clean"]["events_per_s"] * results["clean"]["seconds"]
    timed("sessionize (job, 2 tables)", lambda: sessionize_job.run(spark, config), lambda _: silver_rows, results)

    gap = config["sessionize"]["gap_minutes"]
    silver = lake.read_table(spark, config["lake_root"], tables.SILVER_EVENTS)
    # The Parquet files of the current Delta snapshot (a list of file names, not of rows).
    files = [f.removeprefix("file://").removeprefix("file:") for f in silver.inputFiles()]

    def spark_sessions(tag):
        out = str(root / f"spark_sessions_{tag}.parquet")
        sessionize.sessions(sessionize.assign_sessions(silver, gap)).write.mode("overwrite").parquet(out)
        return out

    timed("spark sessions cold", lambda: spark_sessions("cold"), lambda _: silver_rows, results)
    spark_out = timed("spark sessions warm", lambda: spark_sessions("warm"), lambda _: silver_rows, results)
    duck_out = str(root / "duckdb_sessions.parquet")
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    sql = DUCKDB_SESSIONS.format(files=json.dumps(files), gap_seconds=gap * 60, out=duck_out)
    timed("duckdb sessions", lambda: con.execute(sql), lambda _: silver_rows, results)

    spark_count = spark.read.parquet(spark_out).count()
    duck_count = con.execute(f"SELECT count(*) FROM read_parquet('{duck_out}')").fetchone()[0]
    spark_events = spark.read.parquet(spark_out).agg({"events": "sum"}).head()[0]
    duck_events = con.execute(f"SELECT sum(events) FROM read_parquet('{duck_out}')").fetchone()[0]
    ratio_warm = results["spark sessions warm"]["seconds"] / results["duckdb sessions"]["seconds"]
    ratio_cold = results["spark sessions cold"]["seconds"] / results["duckdb sessions"]["seconds"]
    results.update(spark_sessions=spark_count, duckdb_sessions=duck_count,
                   sessions_match=spark_count == duck_count and spark_events == duck_events,
                   spark_duckdb_ratio_warm=ratio_warm, spark_duckdb_ratio_cold=ratio_cold,
                   silver_rows=int(silver_rows), driver_memory=driver_memory)
    print(f"  sessions: spark {spark_count:,}, duckdb {duck_count:,}, "
          f"match: {results['sessions_match']}; Spark/DuckDB time: warm {ratio_warm:.2f}x, cold {ratio_cold:.2f}x")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, action="append", required=True, help="repeatable")
    parser.add_argument("--workdir", default="/tmp/ecomlake-bench")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--shuffle-partitions", type=int, default=16)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--regenerate", action="store_true",
                        help="regenerate the CSV even if the workdir holds it (else generate is skipped)")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    config = cfg.load("local", overrides=[
        f"spark.conf.spark.driver.memory={args.driver_memory}",
        f"spark.conf.spark.sql.shuffle.partitions={args.shuffle_partitions}",
        f"spark.conf.spark.local.dir={args.workdir}/spark-local"])
    spark = get_spark(config, "bench-etl")
    spark.sparkContext.setLogLevel("ERROR")
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"Spark {spark.version} local[*], driver memory {args.driver_memory}, "
          f"{args.shuffle_partitions} shuffle partitions")
    all_results = [bench(spark, n, Path(args.workdir), args.driver_memory, args.regenerate) for n in args.events]
    if len(all_results) > 1:
        base = all_results[0]
        print("\nscaling relative to the first size:")
        for r in all_results[1:]:
            k = r["events"] / base["events"]
            for job in ("ingest", "clean", "sessionize (job, 2 tables)", "spark sessions warm", "duckdb sessions"):
                print(f"  {job:<28} x{r[job]['seconds'] / base[job]['seconds']:.2f} time for x{k:.1f} events")
    print(f"\npython driver max RSS (getrusage): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2))


if __name__ == "__main__":
    main()

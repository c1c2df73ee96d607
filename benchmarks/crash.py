"""Crash test of every daily job: kill -9 right after each Delta commit, re-run, same tables.

  .venv/bin/python benchmarks/crash.py [--events 3000] [--workdir /tmp/ecomlake-crash] [--jobs ingest,clean,...]
  make crash-test

For ingest, clean, sessionize, features, train propensity and score, in the order a day runs
them: the lake just before the job is copied; the job runs as its own process (group) and is
SIGKILLed as soon as it has made n Delta commits (n = 1, 2, ... until it finishes first); every
table under the lake is read (each must be readable); the job is re-run in this process; the
tables must equal those of an uninterrupted run (run metadata aside: ingest times, batch ids,
model run creation times and model directories, ops/ run records). Prints one line per job.
tests/test_crash.py runs the same harness for clean after its second commit in CI.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))
sys.path.insert(0, str(REPO))

from ecomlake import config as cfg  # noqa: E402
from ecomlake.jobs import clean, features, generate, ingest, score, sessionize, train  # noqa: E402
from ecomlake.spark import get_spark  # noqa: E402
from tests import crash  # noqa: E402

AS_OF = "2019-11-17"
IGNORED = ("created_at", "model_path")


def steps(raw: Path) -> dict:
    """job -> (run in this process, command-line arguments)."""
    events = str(raw / "events")
    return {
        "ingest": (lambda s, c: ingest.run(s, c, "rees46", events), ["--source", "rees46", "--input", events]),
        "clean": (lambda s, c: clean.run(s, c), []),
        "sessionize": (lambda s, c: sessionize.run(s, c), []),
        "features": (lambda s, c: features.run(s, c, AS_OF), ["--as-of", AS_OF]),
        "train": (lambda s, c: train.run(s, c, "propensity", AS_OF), ["propensity", "--as-of", AS_OF]),
        "score": (lambda s, c: score.run(s, c, AS_OF, task="propensity"), ["--as-of", AS_OF, "--task", "propensity"]),
    }


def comparable(spark, root: str) -> dict:
    return {name: [tuple(v for v, c in zip(row, sorted(cols)) if c not in IGNORED) for row in rows]
            for name, (cols, rows) in _with_columns(spark, root).items()}


def _with_columns(spark, root):
    out = {}
    for name, rows in crash.contents(spark, root).items():
        cols = spark.read.format("delta").load(os.path.join(root, name)).drop(
            "_batch_id", "_ingested_at", "ingested_at", "batch_id").columns
        out[name] = (cols, rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--workdir", default="/tmp/ecomlake-crash")
    parser.add_argument("--jobs", default="ingest,clean,sessionize,features,train,score")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    overrides = [f"generate.output={work / 'raw'}", "spark.master=local[2]", "spark.conf.spark.ui.enabled=false",
                 "spark.conf.spark.sql.shuffle.partitions=2"]
    config = cfg.load("local", overrides=overrides, lake=str(work / "before"))
    spark = get_spark(config, "crash-test")
    spark.sparkContext.setLogLevel("ERROR")
    generate.run(spark, config, events=args.events)
    all_steps = steps(work / "raw")
    wanted = args.jobs.split(",")
    failures = 0
    for job, (in_process, cli_args) in all_steps.items():
        if job not in wanted:
            in_process(spark, config)
            continue
        before = config["lake_root"]
        reference = crash.copy_lake(before, str(work / "reference"))
        in_process(spark, cfg.load("local", overrides=overrides, lake=reference))
        expected = comparable(spark, reference)
        kills, started, mismatches = 0, time.time(), []
        for commits in range(1, 60):
            lake_copy = crash.copy_lake(before, str(work / "work"))
            command = crash.job_command(job, lake_copy, *cli_args)
            if not crash.run_killed_after(command, lake_copy, commits, timeout=900):
                break
            kills += 1
            crash.contents(spark, lake_copy)  # every table readable right after the kill
            in_process(spark, cfg.load("local", overrides=overrides, lake=lake_copy))
            if comparable(spark, lake_copy) != expected:
                mismatches.append(commits)
        failures += bool(mismatches)
        print(f"{job:<11} killed after each of {kills} commits, re-run: "
              f"{'identical' if not mismatches else f'DIFFERENT after commits {mismatches}'} "
              f"({time.time() - started:.0f} s)", flush=True)
        in_process(spark, config)  # the day goes on: the next job starts from this one's result
    spark.stop()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

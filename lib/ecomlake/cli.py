"""What every job shares: common flags, config loading, and errors printed without a stack trace."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import date, timedelta
from typing import Callable

from ecomlake import config as cfg
from ecomlake.errors import ConfigError, EcomlakeError

# Exit status of a job that finished but set something aside (a whole input file quarantined):
# the good data went through, and a scheduler still sees that someone must look.
EXIT_QUARANTINED = 3
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def job_parser(job: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=job, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="local", choices=cfg.ENVIRONMENTS,
                        help="environment whose conf/<env>.yaml to use (default: local)")
    parser.add_argument("--config-file", help="config file to use instead of conf/<env>.yaml")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --conf sessionize.gap_minutes=45 (repeatable)")
    parser.add_argument("--lake", help="lake root (overrides the config's lake_root)")
    return parser


def run_job(job: str, parser: argparse.ArgumentParser, body: Callable, argv=None) -> int:
    """Parse args, load config, get Spark, run body(spark, config, args); user errors exit 2."""
    args = parser.parse_args(argv)
    started = time.time()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        config = cfg.load(args.env, args.config_file, args.conf, args.lake)
        from ecomlake.spark import get_spark

        spark = get_spark(config, job)
        spark.sparkContext.setLogLevel("WARN")
        result = body(spark, config, args)
    except EcomlakeError as exc:
        print(f"{job}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Spark analysis errors still name the column; show only that part.
        if os.environ.get("ECOMLAKE_DEBUG") or type(exc).__name__ not in ("AnalysisException",):
            raise
        print(f"{job}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"{job}: done in {time.time() - started:.1f} s")
    quarantined_files = result.get("quarantined_files", 0) if isinstance(result, dict) else 0
    if quarantined_files:
        print(f"{job}: {quarantined_files} input file(s) quarantined whole: see quarantine/files "
              f"(exit status {EXIT_QUARANTINED})", file=sys.stderr)
        return EXIT_QUARANTINED
    return 0


def parse_as_of(value: str, flag: str = "--as-of") -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"{flag} must be a date YYYY-MM-DD, got '{value}'") from None


def add_as_of_minus_days(parser: argparse.ArgumentParser) -> None:
    """--as-of-minus-days N: a scheduler passes its run date as --as-of and the label horizon here
    (training needs labels that end before the run date: `--as-of 2019-12-01 --as-of-minus-days 14`)."""
    parser.add_argument("--as-of-minus-days", type=int, default=0, metavar="N",
                        help="use the date N days before --as-of as the cutoff (default 0)")


def shifted_as_of(as_of: str | None, minus_days: int) -> str | None:
    if as_of is None or not minus_days:
        return as_of
    if minus_days < 0:
        raise ConfigError(f"--as-of-minus-days must not be negative, got {minus_days}")
    return (date.fromisoformat(parse_as_of(as_of)) - timedelta(days=minus_days)).isoformat()


def exit_with(code: int) -> None:
    if code:
        sys.exit(code)

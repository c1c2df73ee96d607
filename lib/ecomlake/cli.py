"""What every job shares: common flags, config loading, logging, and errors without a stack trace."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Callable

from ecomlake import config as cfg
from ecomlake import logs
from ecomlake.dates import add_days, parse_as_of  # noqa: F401 (parse_as_of: the jobs import it from here)
from ecomlake.errors import ConfigError, EcomlakeError

# Exit status of a job that finished but set something aside (a whole input file quarantined):
# the good data went through, and a scheduler still sees that someone must look.
EXIT_QUARANTINED = 3
# Exit status of a job that finished and found something a person must act on (monitor's alerts).
EXIT_ALERTS = 4
log = logging.getLogger(__name__)


def job_parser(job: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=job, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="local", choices=cfg.ENVIRONMENTS,
                        help="environment whose conf/<env>.yaml to use (default: local)")
    parser.add_argument("--config-file", help="config file to use instead of conf/<env>.yaml")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --conf sessionize.gap_minutes=45 (repeatable)")
    parser.add_argument("--lake", help="lake root (overrides the config's lake_root)")
    parser.add_argument("--log-level", type=str.upper, choices=logs.LEVELS,
                        help="level of the job's log lines (default: the config's logging.level, INFO)")
    return parser


def run_job(job: str, parser: argparse.ArgumentParser, body: Callable, argv=None) -> int:
    """Parse args, load config, get Spark, run body(spark, config, args); user errors exit 2.
    Logs go to stderr in one format; the run ends with one JSON summary line on stdout."""
    args = parser.parse_args(argv)
    started = time.time()
    logs.configure(job, args.log_level or "INFO")

    def finish(status: str, code: int, result=None, error: str | None = None) -> int:
        logs.write_summary(logs.summary_line(job, status, code, time.time() - started, result, error))
        return code

    try:
        config = cfg.load(args.env, args.config_file, args.conf, args.lake)
        logs.configure(job, args.log_level or config["logging"]["level"])
        from ecomlake.spark import get_spark

        spark = get_spark(config, job)
        spark.sparkContext.setLogLevel("WARN")
        result = body(spark, config, args)
    except EcomlakeError as exc:
        log.error("%s: error: %s", job, exc)
        return finish("failed", 2, error=str(exc))
    except Exception as exc:  # Spark analysis errors still name the column; show only that part.
        if os.environ.get("ECOMLAKE_DEBUG") or type(exc).__name__ not in ("AnalysisException",):
            finish("crashed", 1, error=f"{type(exc).__name__}: {str(exc)[:500]}")
            raise
        message = str(exc).splitlines()[0]
        log.error("%s: error: %s", job, message)
        return finish("failed", 2, error=message)
    log.info("%s: done in %.1f s", job, time.time() - started)
    quarantined_files = result.get("quarantined_files", 0) if isinstance(result, dict) else 0
    if quarantined_files:
        log.warning("%s: %s input file(s) quarantined whole: see quarantine/files (exit status %s)",
                    job, quarantined_files, EXIT_QUARANTINED)
        return finish("quarantined", EXIT_QUARANTINED, result)
    alerts = result.get("alerts", 0) if isinstance(result, dict) else 0
    if alerts:
        log.warning("%s: %s alert(s): see %s (exit status %s)", job, alerts, result.get("alert_file"), EXIT_ALERTS)
        return finish("alerted", EXIT_ALERTS, result)
    return finish("succeeded", 0, result)


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
    return add_days(parse_as_of(as_of), -minus_days)


def exit_with(code: int) -> None:
    """End a job's process with its status (every job's __main__ comes here)."""
    from ecomlake.spark import cancel_barrier_timer

    cancel_barrier_timer()  # only now: a cancelled timer fails any later barrier stage in this JVM
    if code:
        sys.exit(code)

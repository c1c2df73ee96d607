"""Logs a platform can route: one line format for every job and one JSON summary line per run.

Every log line goes to stderr as

    2026-11-30 23:40:12,345 INFO ingest [write bronze/events] ecomlake.jobs.ingest: 6,000 rows ...

(time, level, job, step, logger, message). `step` is the long step the job is in (`log_step`),
`-` outside one. The level comes from `--log-level`, else the config key `logging.level`.

When a job ends (done, failed or quarantined files), one line of JSON goes to stdout:

    {"ecomlake_run": {"job": "ingest", "status": "succeeded", "exit_code": 0, "seconds": 12.3, ...}}

so a scheduler or log shipper finds it without parsing prose: it is the last line of stdout.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import sys
import time
from datetime import date, datetime, timezone
from typing import Iterator

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(job)s [%(step)s] %(name)s: %(message)s"
SUMMARY_KEY = "ecomlake_run"
MAX_RESULT_CHARS = 4000

_job: contextvars.ContextVar[str] = contextvars.ContextVar("ecomlake_job", default="-")
_step: contextvars.ContextVar[str] = contextvars.ContextVar("ecomlake_step", default="-")
log = logging.getLogger(__name__)


class _JobAndStep(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job = _job.get()
        record.step = _step.get()
        return True


class _CurrentStream(logging.StreamHandler):
    """Writes to whatever sys.stderr / sys.stdout is at the time of the call, so a redirected or
    captured stream (pytest, a notebook) receives the lines."""

    def __init__(self, stream_name: str):
        self._stream_name = stream_name  # set first: StreamHandler.__init__ reads self.stream
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it; the property decides
        pass


def configure(job: str, level: str = "INFO") -> None:
    """Route ecomlake's and other libraries' records through one handler with the job's format.
    Called at the start of every run; calling it again replaces the handler, never adds one."""
    level = level.upper()
    if level not in LEVELS:
        from ecomlake.errors import ConfigError
        raise ConfigError(f"log level must be one of {', '.join(LEVELS)}, got '{level}'")
    _job.set(job)
    _step.set("-")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "ecomlake", False)]:
        root.removeHandler(handler)
    handler = _CurrentStream("stderr")
    handler.ecomlake = True
    handler.addFilter(_JobAndStep())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    # A handler on the root sees every logger's records that pass that logger's own level: ours
    # at the chosen level; third-party ones (petastorm, horovod) keep the root's WARNING.
    logging.getLogger("ecomlake").setLevel(level)
    # a job module run as a script (spark-submit of an installed wheel's ecomlake/jobs/<job>.py)
    logging.getLogger("__main__").setLevel(level)
    logging.getLogger("py4j").setLevel(logging.WARNING)


@contextlib.contextmanager
def log_step(name: str, logger: logging.Logger | None = None, announce: bool = True) -> Iterator[None]:
    """Name a long step: lines logged inside carry [outer > name]; its start (unless announce is
    False) and its duration are logged, so a long run shows where it is."""
    logger = logger or log
    outer = _step.get()
    token = _step.set(name if outer == "-" else f"{outer} > {name}")
    started = time.monotonic()
    if announce:
        logger.info("started")
    try:
        yield
    except BaseException:
        logger.info("stopped after %.1f s", time.monotonic() - started)
        raise
    else:
        logger.info("done in %.1f s", time.monotonic() - started)
    finally:
        _step.reset(token)


def summary_line(job: str, status: str, exit_code: int, seconds: float, result=None,
                 error: str | None = None) -> str:
    """The JSON line a run ends with (see the module docstring)."""
    record = {"job": job, "status": status, "exit_code": exit_code, "seconds": round(seconds, 3),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if error is not None:
        record["error"] = error
    if result is not None:
        try:
            record["result"] = jsonable(result)
        except Exception as exc:  # the summary must never fail a run whose tables are written
            record["result"] = f"not summarised: {type(exc).__name__}"
            return json.dumps({SUMMARY_KEY: record})
        if len(json.dumps(record["result"])) > MAX_RESULT_CHARS:  # a model's coefficients, say
            record["result"] = jsonable(result, max_depth=2, max_items=20)
    return json.dumps({SUMMARY_KEY: record})


def write_summary(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def jsonable(value, depth: int = 0, max_items: int = 50, max_depth: int = 4):
    """A job's result as plain JSON: dict keys as strings, tuples as lists, dates as ISO text,
    NaN as null; nesting below max_depth levels (as text) and items beyond max_items are cut
    (the tables hold it all)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if depth >= max_depth:
        return str(value)[:200]
    if isinstance(value, dict):
        items = list(value.items())[:max_items]
        return {(k if isinstance(k, str) else "/".join(map(str, k)) if isinstance(k, tuple) else str(k)):
                jsonable(v, depth + 1, max_items, max_depth) for k, v in items}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v, depth + 1, max_items, max_depth) for v in list(value)[:max_items]]
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # numpy scalars only
        return jsonable(value.item(), depth, max_items, max_depth)
    return str(value)[:200]

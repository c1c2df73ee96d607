"""Build the SparkSession from a config dict (never from strings to eval)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager

log = logging.getLogger("ecomlake.spark")  # also when run as `python -m ecomlake.spark`

# Delta Lake's SQL support; needed wherever Delta is not built into the runtime.
DELTA_SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# Every timestamp in the lake is UTC; sessions and daily aggregates depend on it.
BASE_SESSION_CONF = {"spark.sql.session.timeZone": "UTC"}
# Spark keeps 100 compiled code-generated classes; a day's jobs plan many more distinct queries,
# and each one evicted is compiled again (Janino, CPU-bound). 2,000 cut three daily runs of
# ingest + clean + sessionize in one session from 157 s to 126 s here. A static conf: set when a
# session or spark-submit starts, never on a running session (Databricks sets its own).
# Spark redacts property values whose names match this in the UI, event logs and its own logs;
# its default pattern misses the pseudonymisation key's name (e.g. when it travels as
# spark.yarn.appMasterEnv.ECOMLAKE_PSEUDONYM_KEY in YARN cluster mode).
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|pseudonym"
STARTUP_SESSION_CONF = {"spark.sql.codegen.cache.maxEntries": "2000", "spark.redaction.regex": REDACTION_REGEX}


def delta_packages() -> list[str]:
    """Maven coordinates of the Delta jars that match the installed delta-spark (one version fact)."""
    from importlib.metadata import version

    delta = version("delta-spark")
    scala = "2.13" if int(version("pyspark").split(".")[0]) >= 4 else "2.12"
    return [f"io.delta:delta-spark_{scala}:{delta}", f"io.delta:delta-storage:{delta}"]


def session_conf(config: dict) -> dict:
    conf = dict(BASE_SESSION_CONF)
    conf.update(STARTUP_SESSION_CONF)
    conf.update(DELTA_SESSION_CONF)
    conf.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config["spark"]["conf"].items()})
    return conf


@contextmanager
def conf_set(spark, key: str, value: str):
    """Set one session conf for the duration of a block, then put back what was there (or unset it)."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)


def get_spark(config: dict, app: str):
    """Return the active session (spark-submit, Databricks) or build one from config."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        # A session we did not build (spark-submit, Databricks): still pin the time zone.
        for key, value in BASE_SESSION_CONF.items():
            active.conf.set(key, value)
        return active
    if config["env"] == "local":
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # else Spark may bind a public address
        # Python workers (pandas UDFs) must run the driver's interpreter, which has ecomlake installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(f"{config['spark']['app_name']}-{app}")
    if config["spark"]["master"]:
        builder = builder.master(config["spark"]["master"])
    for key, value in session_conf(config).items():
        builder = builder.config(key, value)
    if config["spark"]["delta_from_pip"]:
        builder = builder.config("spark.jars.packages", ",".join(delta_packages()))
    return builder.getOrCreate()


def cancel_barrier_timer() -> None:
    """Spark 3.5's BarrierTaskContext starts a non-daemon Timer thread ("Barrier task timer for
    barrier() calls.") once a barrier stage ran in this JVM: with a local master (executors inside
    the driver's JVM) a job that trained with xgboost.spark finished but its spark-submit never
    exited. Cancelling the timer lets the JVM end. Call it only when the process ends: a barrier
    stage after it fails ("Timer already cancelled"). A no-op without a SparkContext."""
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is None:
        return
    try:
        module = getattr(getattr(context._jvm.org.apache.spark, "BarrierTaskContext$"), "MODULE$")
        getattr(module, "org$apache$spark$BarrierTaskContext$$timer")().cancel()
    except Exception as exc:  # another Spark version may not have it: nothing to cancel then
        log.debug("no barrier timer to cancel: %s", exc)


def _resolve_jars() -> None:
    """Start a local session once so Ivy fetches Delta's jars into ~/.ivy2 (used by set-up)."""
    from ecomlake import config as cfg
    from ecomlake import logs

    logs.configure("resolve-jars")
    config = cfg.load("local")
    spark = get_spark(config, "resolve-jars")
    spark.range(1).count()
    spark.stop()
    log.info("Delta jars resolved: %s", ", ".join(delta_packages()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolve-jars", action="store_true")
    if parser.parse_args().resolve_jars:
        _resolve_jars()

"""gold/model_runs: one row per trained model (baselines included) with what it read and scored.

run_id is a hash of (task, model, as_of, parameters): re-training for the same cutoff with the
same parameters replaces its row (MERGE) instead of adding a duplicate.
The Delta versions of the tables it read are recorded beside it (they also change when another
as-of partition is written, so they are not part of the identity).

Model artifacts are never overwritten in place: every training attempt writes into a directory of
its own, <lake_root>/models/<task>/<run_id>/<attempt> (`new_attempt_dir`), and the row is
recorded (pointing at it) only after the artifact is complete. A re-train therefore leaves the
directory the old row points to untouched while it writes, and a crash mid-write leaves a
directory no row points to. Directories of replaced attempts stay until removed by hand.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.errors import InputError

SCHEMA = ("run_id string, task string, model string, is_baseline boolean, as_of_date date, "
          "created_at timestamp, params string, metrics map<string,double>, details string, "
          "input_versions map<string,bigint>, model_path string")


def make_run_id(task: str, model: str, as_of: str, params: dict) -> str:
    text = json.dumps([task, model, as_of, params], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def model_dir(lake_root: str, task: str, run_id: str) -> str:
    """The folder of a run's attempts (each attempt's model lives in a subdirectory)."""
    return f"{lake_root.rstrip('/')}/models/{task}/{run_id}"


def new_attempt_id() -> str:
    """UTC time to the microsecond plus a random suffix: unique, and newer attempts sort later."""
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:6]}"


def new_attempt_dir(lake_root: str, task: str, run_id: str) -> str:
    """A fresh directory (not created yet) for one training attempt of a run: write the model
    there, then record the run with model_path = this directory."""
    return f"{model_dir(lake_root, task, run_id)}/{new_attempt_id()}"


def recorded_model_paths(spark: SparkSession, lake_root: str, run_id: str) -> set[str]:
    """The model directories gold/model_runs points to for a run_id (empty without the table)."""
    if not lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(lake_root)):
        return set()
    rows = (lake.read_table(spark, lake_root, tables.GOLD_MODEL_RUNS)
            .where((F.col("run_id") == run_id) & F.col("model_path").isNotNull())
            .select("model_path").collect())
    return {r.model_path for r in rows}


def input_versions(spark: SparkSession, lake_root: str, read: list[tables.Table]) -> dict[str, int]:
    return {t.id: int(lake.table_version(spark, lake_root, t)) for t in read}


def model_run(task: str, model: str, as_of: str | None, params: dict, input_versions: dict, metrics: dict,
              details: dict | None = None, *, model_path: str | None = None, baseline: bool = False,
              run_id: str | None = None) -> dict:
    """One gold/model_runs record, as `record` takes it. run_id defaults to make_run_id(task, model,
    as_of, params); a job passes its own when some params (a deep model's epochs) are not identity."""
    return {"run_id": run_id or make_run_id(task, model, as_of, params), "task": task, "model": model,
            "is_baseline": baseline, "as_of": as_of, "params": params, "metrics": metrics,
            "details": details or {}, "input_versions": input_versions, "model_path": model_path}


def record(spark: SparkSession, lake_root: str, runs: list[dict]) -> None:
    """Upsert runs by run_id. Each dict: run_id, task, model, is_baseline, as_of, params, metrics,
    details, input_versions, model_path."""
    now = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    rows = [(r["run_id"], r["task"], r["model"], r["is_baseline"],
             date.fromisoformat(r["as_of"]) if r["as_of"] else None, now,
             json.dumps(r["params"], sort_keys=True, default=str),
             {k: float(v) for k, v in r["metrics"].items() if v is not None},
             json.dumps(r.get("details", {}), sort_keys=True, default=str),
             r["input_versions"], r.get("model_path")) for r in runs]
    df = spark.createDataFrame(rows, SCHEMA)
    path = tables.GOLD_MODEL_RUNS.path(lake_root)
    if not lake.table_exists(spark, path):
        lake.append_table(df, lake_root, tables.GOLD_MODEL_RUNS)
        return
    from delta.tables import DeltaTable

    (DeltaTable.forPath(spark, path).alias("t").merge(df.alias("s"), "t.run_id = s.run_id")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())


def find(spark: SparkSession, lake_root: str, task: str, run_id: str | None = None, model: str | None = None,
         producer: str | None = None) -> dict:
    """A named run, or the newest non-baseline run of a task that saved a model (with `model`: the
    newest run of that model of the task). `producer`: the command that trains the task, for the
    error when there is none (default `train <task> --as-of DATE`)."""
    runs = lake.read_table(spark, lake_root, tables.GOLD_MODEL_RUNS).where(F.col("task") == task)
    if run_id:
        runs = runs.where(F.col("run_id") == run_id)
    elif model:
        runs = runs.where(F.col("model") == model)
    else:
        runs = runs.where(~F.col("is_baseline") & F.col("model_path").isNotNull())
    row = runs.orderBy(F.desc("created_at"), F.desc("as_of_date"), "run_id").limit(1).collect()
    if not row:
        what = (f"run {run_id} of task {task}" if run_id else f"{model} run of task {task}" if model
                else f"trained {task} model")
        raise InputError(f"gold/model_runs has no {what}: run `{producer or f'train {task} --as-of DATE'}` first")
    out = row[0].asDict()
    out["params"] = json.loads(out["params"])
    out["details"] = json.loads(out["details"])
    return out

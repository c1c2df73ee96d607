"""Airflow DAGs for ecomlake (Airflow 3: `airflow.sdk`; built and checked by `make airflow-check`).

ecomlake_daily: ingest -> clean -> sessionize -> features -> score every night, then monitor (its
alerts fail the task: exit status 4) and, on Sundays, maintain. ecomlake_weekly_training: features at the training cutoff, then `train all`.

Each task runs the spark-submit front end (`ecomlake <job> ...` from the installed wheel, or a
checkout's ./spark-submit.sh: the `ecomlake_command` param) with --env cluster on the Airflow
worker. Dates: the run for the interval [D, D+1) starts once D is over and uses --as-of D+1 (its
data_interval_end: features use events before it, so every event of D counts); training uses
--as-of-minus-days <label horizon> so that its labels are complete. A backfill of an old interval
gets that interval's dates. Nothing here does work at import time (no Variable, no connection,
no file read): the scheduler parses this file often.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.weekday import BranchDayOfWeekOperator
from airflow.sdk import DAG, Param

AS_OF = "{{ data_interval_end | ds }}"
DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(hours=1),
}
PARAMS = {
    "ecomlake_command": Param("ecomlake", type="string",
                              description="`ecomlake` (the installed wheel) or /path/to/checkout/spark-submit.sh"),
    "env": Param("cluster", enum=["local", "cluster"], description="conf/<env>.yaml of the jobs"),
    "lake_root": Param("", type="string", description="lake root; empty: the config's lake_root"),
    "raw_events": Param("hdfs:///raw/ecomlake/rees46/events", type="string",
                        description="folder or glob where the daily clickstream files land"),
    "label_horizon_days": Param(14, type="integer", description="days of labels a training cutoff needs"),
}


def ecomlake_job(task_id: str, job_args: str, **kwargs) -> BashOperator:
    """One ecomlake job through the spark-submit front end; exit status 3 (an input file
    quarantined whole, the good ones went through) fails the task so that someone looks."""
    return BashOperator(
        task_id=task_id,
        bash_command=("{{ params.ecomlake_command }} " + job_args + " --env {{ params.env }}"
                      "{% if params.lake_root %} --lake {{ params.lake_root }}{% endif %}"),
        **kwargs,
    )


# What both DAGs share: one active run at a time (the jobs' leases also refuse an overlap).
COMMON = {"start_date": datetime(2026, 1, 1), "catchup": False, "max_active_runs": 1,
          "default_args": DEFAULT_ARGS, "params": PARAMS, "tags": ["ecomlake"]}

with DAG(
    dag_id="ecomlake_daily",
    description="ecomlake nightly: ingest, clean, sessionize, features, score; maintain on Sundays",
    schedule="30 2 * * *",
    **COMMON,
) as daily:
    ingest = ecomlake_job("ingest", "ingest --source rees46 --input '{{ params.raw_events }}'")
    clean = ecomlake_job("clean", "clean")
    sessionize = ecomlake_job("sessionize", "sessionize")
    features = ecomlake_job("features", f"features --as-of {AS_OF}")
    score = ecomlake_job("score", f"score --as-of {AS_OF}")
    # Exit status 4 is a finding (data or a model went wrong), not a flaky run: no retries, and a
    # branch of its own, so an alert never keeps Sunday's maintenance from running.
    monitor = ecomlake_job("monitor", f"monitor --as-of {AS_OF}", retries=0)
    sunday = BranchDayOfWeekOperator(task_id="is_sunday", week_day="Sunday", use_task_logical_date=True,
                                     follow_task_ids_if_true=["maintain"], follow_task_ids_if_false=[])
    maintain = ecomlake_job("maintain", "maintain", retries=1)
    ingest >> clean >> sessionize >> features >> score >> sunday >> maintain
    score >> monitor

with DAG(
    dag_id="ecomlake_weekly_training",
    description="ecomlake weekly: features at the training cutoff, then every Spark ML model",
    schedule="0 6 * * 0",
    **COMMON,
) as weekly:
    shifted = f"--as-of {AS_OF} --as-of-minus-days {{{{ params.label_horizon_days }}}}"
    ecomlake_job("features_at_cutoff", f"features {shifted}") >> ecomlake_job("train", f"train all {shifted}")

"""One function per job for the wheel's console commands (`ecomlake-ingest --source rees46 ...`):
each runs the job in this Python process (on Databricks, in the cluster's own session) with the
job's own flags, and exits with its status (2: a user error, 3: an input file quarantined), so that
a scheduler (Databricks python_wheel_task, Airflow) sees a failure as one."""
from __future__ import annotations

import importlib
import sys

from ecomlake.cli import exit_with
from ecomlake.submit import JOBS


def _job_command(job: str):
    def command() -> None:
        exit_with(importlib.import_module(f"ecomlake.jobs.{job}").main(sys.argv[1:]))

    command.__name__ = command.__qualname__ = job
    command.__doc__ = f"ecomlake-{job.replace('_', '-')}: the {job} job (see ecomlake.jobs.{job})."
    return command


for _job in JOBS:
    globals()[_job] = _job_command(_job)

"""Crash harness: run a job in its own process group, SIGKILL the group right after its n-th Delta
commit (a new `_delta_log/*.json` anywhere under the lake), and report whether it was killed.

Used by tests/test_crash.py (one job, in CI) and benchmarks/crash.py (every job, every commit).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import SHORT_LIVED_JVM

REPO = Path(__file__).resolve().parents[1]
RUN_METADATA = ("_batch_id", "_ingested_at", "ingested_at", "batch_id")


def delta_tables(root: str) -> list[str]:
    return sorted(folder[: -len("/_delta_log")] for folder, _, _ in os.walk(root) if folder.endswith("/_delta_log"))


def contents(spark, root: str) -> dict[str, list[tuple]]:
    """Every table but ops/ (run records differ by design), without run-time metadata, as sorted
    rows of strings. Reading every table, ops/ included, is also the check that each is readable."""
    out = {}
    for path in delta_tables(root):
        name = os.path.relpath(path, root)
        df = spark.read.format("delta").load(path)  # raises if a table cannot be read
        if name.startswith("ops/"):
            df.count()
            continue
        df = df.drop(*RUN_METADATA)
        out[name] = sorted(tuple(str(v) for v in r) for r in df.select(*sorted(df.columns)).collect())
    return out


def delta_commits(lake_root: str) -> set[str]:
    """Every commit file of every Delta table under the lake."""
    found = set()
    for folder, _, names in os.walk(lake_root):
        if folder.endswith("_delta_log"):
            found.update(os.path.join(folder, n) for n in names
                         if n.endswith(".json") and not n.startswith(".") and n[:20].isdigit())
    return found


def job_command(job: str, lake_root: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"ecomlake.jobs.{job}", *args, "--lake", lake_root,
            "--conf", "spark.master=local[1]", "--conf", "spark.conf.spark.ui.enabled=false",
            "--conf", "spark.conf.spark.sql.shuffle.partitions=2",
            "--conf", "spark.conf.spark.databricks.delta.snapshotPartitions=1", "--conf", SHORT_LIVED_JVM]


def run_killed_after(command: list[str], lake_root: str, commits: int, timeout: float = 300) -> bool:
    """Run command; SIGKILL its process group as soon as `commits` new Delta commits exist.
    True when it was killed, False when it ended first (it makes fewer commits than that)."""
    before = delta_commits(lake_root)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(REPO / "lib")}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if len(delta_commits(lake_root) - before) >= commits:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
            if process.poll() is not None:
                if process.returncode not in (0, 3):
                    raise RuntimeError(f"{command} failed: {process.stderr.read().decode()[-2000:]}")
                return False
            time.sleep(0.02)
        raise TimeoutError(f"{command} ran longer than {timeout} s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def copy_lake(source: str, target: str) -> str:
    """A copy of the lake at source (an empty lake when nothing was written there yet)."""
    shutil.rmtree(target, ignore_errors=True)
    if os.path.exists(source):
        shutil.copytree(source, target)
    else:
        os.makedirs(target)
    return target

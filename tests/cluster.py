"""A Spark standalone cluster on this machine (pyspark's own Master and Workers on 127.0.0.1),
started and always stopped by `standalone_cluster()`; used by tests/test_cluster.py
(`make cluster-test`)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pyspark

SPARK_CLASS = Path(pyspark.__file__).resolve().parent / "bin" / "spark-class"
MASTER_PORT, MASTER_UI_PORT = 7077, 8080
MASTER_URL = f"spark://127.0.0.1:{MASTER_PORT}"


def _alive_workers() -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{MASTER_UI_PORT}/json/", timeout=2) as response:
            state = json.load(response)
    except OSError:
        return -1
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def standalone_cluster(workdir: Path, workers: int = 2, cores: int = 1, memory: str = "2g", timeout: float = 120):
    """Start a master and `workers` workers (`cores` cores and `memory` each); yield the master URL;
    stop them all on exit, also when the body fails."""
    if _alive_workers() >= 0:
        raise RuntimeError(f"something already serves a Spark master UI on port {MASTER_UI_PORT}: stop it first")
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(workdir / "logs")}
    processes = []

    def start(name: str, *args: str) -> None:
        log = open(workdir / f"{name}.log", "w")
        processes.append(subprocess.Popen([str(SPARK_CLASS), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
              "--port", str(MASTER_PORT), "--webui-port", str(MASTER_UI_PORT))
        for i in range(workers):
            start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", MASTER_URL, "--host", "127.0.0.1",
                  "--cores", str(cores), "--memory", memory, "--webui-port", "0",
                  "--work-dir", str(workdir / f"worker-{i}"))
        deadline = time.time() + timeout
        while _alive_workers() < workers:
            if time.time() > deadline:
                raise TimeoutError(f"{workers} workers did not register with {MASTER_URL} in {timeout:.0f} s "
                                   f"(logs: {workdir})")
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a cluster process exited at start (logs: {workdir})")
            time.sleep(0.5)
        yield MASTER_URL
    finally:
        for process in reversed(processes):
            _stop(process)

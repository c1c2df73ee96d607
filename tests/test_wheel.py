"""The wheel works without a checkout: built by `make wheel`, installed into a fresh virtualenv
whose path holds the pinned stack but not this checkout, it runs a small pipeline through its
`ecomlake` command (spark-submit, like ./spark-submit.sh) with the configuration it carries."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
import zipfile
from pathlib import Path

import pytest

from ecomlake import lake, submit, tables
from tests.conftest import SHORT_LIVED_JVM

pytestmark = [pytest.mark.e2e, pytest.mark.subprocess]


def test_the_wheel_carries_the_config_and_a_command_per_job(built_wheel):
    with zipfile.ZipFile(built_wheel) as zf:
        names = zf.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = dict(line.split(" = ") for line in zf.read(entry_points).decode().splitlines() if " = " in line)
    assert {"ecomlake/conf/local.yaml", "ecomlake/conf/cluster.yaml", "ecomlake/conf/databricks.yaml",
            "ecomlake/conf/log4j2.properties"} <= set(names)
    assert scripts["ecomlake"] == "ecomlake.submit:main"
    assert {f"ecomlake-{job.replace('_', '-')}" for job in submit.JOBS} == set(scripts) - {"ecomlake"}


@pytest.fixture(scope="module")
def fresh_venv(built_wheel, tmp_path_factory) -> Path:
    """A new virtualenv with the wheel installed; the stack comes from this environment's
    site-packages through a .pth line (its editable link to the checkout is not read from there)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.check_output([str(venv / "bin" / "python"), "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "ecomlake_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(built_wheel)],
                   check=True)
    return venv


@pytest.mark.slow
def test_the_installed_wheel_runs_a_pipeline_without_the_checkout(spark, fresh_venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    where = subprocess.check_output([str(fresh_venv / "bin" / "python"), "-c",
                                     "import ecomlake.config as c; print(c.__file__, c.checkout_root())"],
                                    cwd=tmp_path, env=env, text=True).split()
    assert where[0].startswith(str(fresh_venv)) and where[1] == "None"
    assert subprocess.run([str(fresh_venv / "bin" / "ecomlake-clean"), "--help"], cwd=tmp_path, env=env,
                          capture_output=True).returncode == 0
    run = subprocess.run([str(fresh_venv / "bin" / "ecomlake"), "pipeline", "--events", "1500", "--seed", "4",
                          "--conf", "spark.master=local[2]", "--conf", "spark.conf.spark.driver.memory=1g",
                          "--conf", "spark.conf.spark.sql.shuffle.partitions=2", "--conf", SHORT_LIVED_JVM],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    # the packaged conf/local.yaml: lake and generated files relative to the working directory
    assert (tmp_path / "data" / "rees46" / "events").is_dir()
    root = str(tmp_path / "lakehouse")
    truth = json.loads((tmp_path / "data" / "rees46" / "_ground_truth" / "generator.json").read_text())
    assert lake.read_table(spark, root, tables.SILVER_EVENTS).count() == truth["clean_events"]
    sessions = lake.read_table(spark, root, tables.SILVER_SESSIONS).agg({"events": "sum"}).head()[0]
    assert sessions == truth["clean_events"]
    # Spark's own INFO lines stay quiet (the packaged log4j2.properties reached the driver)
    assert not re.search(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d INFO ", run.stderr + run.stdout, re.M)

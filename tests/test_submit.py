"""./spark-submit.sh builds the right command (checked with --dry-run; nothing is submitted)."""
import subprocess
import zipfile
from pathlib import Path

from ecomlake import config as cfg
from ecomlake import submit

ROOT = Path(__file__).resolve().parents[1]


def dry_run(*args):
    out = subprocess.run([str(ROOT / "spark-submit.sh"), *args, "--dry-run"], capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr


def test_help_lists_every_job():
    out = subprocess.run([str(ROOT / "spark-submit.sh"), "--help"], capture_output=True, text=True).stdout
    for job in submit.JOBS:
        assert f"\n  {job}: " in out


def test_local_command():
    rc, out, _ = dry_run("pipeline", "--events", "5000")
    assert rc == 0
    cmd = out.strip().splitlines()[-1]
    assert cmd.startswith("+ ") and "spark-submit --master 'local[*]'" in cmd
    assert "--packages io.delta:delta-spark_2.12:3.3.3,io.delta:delta-storage:3.3.3" in cmd
    assert "--driver-memory 6g" in cmd
    assert "--conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in cmd
    assert "--conf spark.sql.codegen.cache.maxEntries=2000" in cmd
    assert "--conf 'spark.redaction.regex=(?i)secret|password|token|access[.]key|pseudonym'" in cmd
    assert cmd.endswith(f"{ROOT}/jobs/pipeline.py --events 5000 --env local")


def test_cluster_command_ships_library_and_config():
    rc, out, _ = dry_run("sessionize", "--env", "cluster", "--gap-minutes", "45")
    assert rc == 0
    cmd = out.strip().splitlines()[-1]
    assert "--master yarn --deploy-mode cluster" in cmd
    assert (f"--py-files {ROOT}/dist/ecomlake.zip --files {cfg.config_path('cluster')},{ROOT}/conf/log4j2.properties"
            in cmd)
    # Spark's log settings reach the driver (in cluster mode, from its working directory) and executors
    assert "--conf spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=log4j2.properties" in cmd
    assert "--conf spark.executor.extraJavaOptions=-Dlog4j2.configurationFile=log4j2.properties" in cmd
    assert cmd.endswith("jobs/sessionize.py --env cluster --gap-minutes 45 --config-file cluster.yaml")
    names = zipfile.ZipFile(ROOT / "dist" / "ecomlake.zip").namelist()
    assert "ecomlake/jobs/sessionize.py" in names and "ecomlake/sessionize.py" in names
    assert "ecomlake/conf/cluster.yaml" in names and "ecomlake/conf/log4j2.properties" in names


def test_client_mode_on_a_standalone_master_and_cluster_mode_refused():
    master = ["--conf", "spark.master=spark://127.0.0.1:7077"]
    rc, out, _ = dry_run("clean", "--env", "cluster", *master, "--conf", "spark.deploy_mode=client")
    cmd = out.strip().splitlines()[-1]
    assert rc == 0 and "--master spark://127.0.0.1:7077 --deploy-mode client" in cmd
    assert f"--conf spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:{ROOT}/conf/log4j2.properties" in cmd
    assert cmd.endswith(f"--config-file {cfg.config_path('cluster')}")
    rc, _, err = dry_run("clean", "--env", "cluster", *master)
    assert rc == 2 and "does not run Python applications in cluster deploy mode" in err
    assert "--conf spark.deploy_mode=client" in err


def test_conf_overrides_reach_spark_submit_and_bad_keys_fail():
    rc, out, _ = dry_run("clean", "--conf", "spark.master=local[1]", "--conf", "spark.conf.spark.sql.shuffle.partitions=3")
    assert rc == 0 and "--master 'local[1]'" in out and "--conf spark.sql.shuffle.partitions=3" in out
    rc, _, err = dry_run("clean", "--conf", "spark.mastr=local[1]")
    assert rc == 2 and "unknown config key 'spark.mastr'" in err and "did you mean 'spark.master'" in err


def test_unknown_job_and_databricks_env():
    rc, _, err = dry_run("sessionise")
    assert rc == 2 and "unknown job 'sessionise'" in err
    rc, _, err = dry_run("clean", "--env", "databricks")
    assert rc == 2 and "notebooks/" in err

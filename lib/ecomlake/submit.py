"""Build and run the spark-submit command for a job (what ./spark-submit.sh calls).

  ./spark-submit.sh --help                     list the jobs
  ./spark-submit.sh <job> --help               the job's own options
  ./spark-submit.sh <job> [--env local|cluster] [--dry-run] [job options]

Locally the job runs on Spark local[*] from this checkout's virtualenv. With --env cluster the
same job goes to the cluster's spark-submit (master and deploy mode from conf/cluster.yaml),
with the library shipped as a zip (--py-files) and the config file as --files. The command is
printed before it runs; --dry-run prints it only.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ecomlake import config as cfg
from ecomlake.errors import EcomlakeError
from ecomlake.spark import delta_packages, session_conf

JOBS = ("pipeline", "generate", "ingest", "clean", "sessionize", "features", "train", "score", "train_deep",
        "clv", "sentiment", "risk", "pricing", "report",
        "maintain", "forget")


def job_summary(job: str) -> str:
    module = importlib.import_module(f"ecomlake.jobs.{job}")
    return (module.__doc__ or "").strip().splitlines()[0]


def usage() -> str:
    lines = [__doc__.strip(), "", "jobs:"]
    lines += [f"  {job_summary(job)}" for job in JOBS]
    return "\n".join(lines)


def build_library_zip(root: Path) -> Path:
    """lib/ecomlake as a zip for --py-files (rebuilt on every submit: it is small)."""
    dist = root / "dist"
    dist.mkdir(exist_ok=True)
    target = dist / "ecomlake.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((root / "lib" / "ecomlake").rglob("*.py")):
            zf.write(path, path.relative_to(root / "lib"))
    return target


def spark_submit_binary(env: str) -> str:
    if env == "local":
        beside = Path(sys.executable).with_name("spark-submit")  # the virtualenv's pyspark
        if beside.exists():
            return str(beside)
    spark_home = os.environ.get("SPARK_HOME")
    if spark_home:
        return str(Path(spark_home) / "bin" / "spark-submit")
    return shutil.which("spark-submit") or "spark-submit"  # checked before a real run, not a dry run


def build_command(job: str, job_args: list[str], config: dict, config_file: Path) -> list[str]:
    root = cfg.repo_root()
    env = config["env"]
    spark = config["spark"]
    cmd = [spark_submit_binary(env)]
    if spark["master"]:
        cmd += ["--master", spark["master"]]
    if env != "local":
        cmd += ["--deploy-mode", spark["deploy_mode"]]
    cmd += ["--name", f"{spark['app_name']}-{job}"]
    if spark["delta_from_pip"]:
        cmd += ["--packages", ",".join(delta_packages())]
    conf = session_conf(config)
    driver_memory = conf.pop("spark.driver.memory", None)
    if driver_memory:  # must be set before the driver JVM starts
        cmd += ["--driver-memory", driver_memory]
    if env == "local" and "spark.driver.extraJavaOptions" not in conf:
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{root / 'conf' / 'log4j2.properties'}"
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    passthrough = list(job_args)
    if env != "local":
        cmd += ["--py-files", str(build_library_zip(root)), "--files", str(config_file)]
        # In cluster deploy mode the driver finds the shipped file in its working directory.
        shipped = config_file.name if spark["deploy_mode"] == "cluster" else str(config_file)
        passthrough = _replace_option(passthrough, "--config-file", shipped)
    cmd.append(str(root / "jobs" / f"{job}.py"))
    return cmd + passthrough


def _replace_option(args: list[str], option: str, value: str) -> list[str]:
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == option:
            skip = True
            continue
        if arg.startswith(option + "="):
            continue
        out.append(arg)
    return out + [option, value]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    job, rest = argv[0], argv[1:]
    if job not in JOBS:
        print(f"spark-submit.sh: error: unknown job '{job}'; jobs: {', '.join(JOBS)}", file=sys.stderr)
        return 2
    if "-h" in rest or "--help" in rest:  # the job's own help needs no Spark
        return importlib.import_module(f"ecomlake.jobs.{job}").main(["--help"]) or 0
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--env", default="local", choices=cfg.ENVIRONMENTS)
    parser.add_argument("--config-file")
    parser.add_argument("--conf", action="append", default=[])
    parser.add_argument("--lake")
    parser.add_argument("--dry-run", action="store_true")
    known, _ = parser.parse_known_args(rest)
    job_args = [a for a in rest if a != "--dry-run"]
    try:
        if known.env == "databricks":
            raise EcomlakeError("on Databricks run the jobs from notebooks/ (or a Databricks job with "
                                "the ecomlake wheel); spark-submit.sh handles --env local and --env cluster")
        config = cfg.load(known.env, known.config_file, known.conf, known.lake)
        config_file = Path(known.config_file).resolve() if known.config_file else cfg.config_path(known.env)
        if "--env" not in job_args:
            job_args += ["--env", known.env]
        cmd = build_command(job, job_args, config, config_file)
    except EcomlakeError as exc:
        print(f"spark-submit.sh: error: {exc}", file=sys.stderr)
        return 2
    print("+ " + shlex.join(cmd), flush=True)
    if known.dry_run:
        return 0
    if not (Path(cmd[0]).exists() or shutil.which(cmd[0])):
        print("spark-submit.sh: error: spark-submit not found: set SPARK_HOME or put spark-submit on PATH",
              file=sys.stderr)
        return 2
    env = dict(os.environ)
    if known.env == "local":
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())

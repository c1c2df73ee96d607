"""Build and run the spark-submit command for a job (what ./spark-submit.sh calls).

  ./spark-submit.sh --help                     list the jobs
  ./spark-submit.sh <job> --help               the job's own options
  ./spark-submit.sh <job> [--env local|cluster] [--dry-run] [job options]

Locally the job runs on Spark local[*] with the pyspark this Python has. With --env cluster the
same job goes to the cluster's spark-submit (master and deploy mode from conf/cluster.yaml),
with the running ecomlake package shipped as a zip (--py-files: from a checkout its lib/, from an
installed wheel the wheel's files) and the config file and Spark's log settings as --files. The
command is printed before it runs; --dry-run prints it only. The wheel's `ecomlake` command is
this same front end.
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import importlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ecomlake import config as cfg
from ecomlake import logs
from ecomlake.errors import EcomlakeError
from ecomlake.spark import delta_packages, session_conf

log = logging.getLogger("ecomlake.submit")  # also when run as `python -m ecomlake.submit`

JOBS = ("pipeline", "generate", "ingest", "clean", "sessionize", "features", "train", "score", "train_deep",
        "clv", "sentiment", "intents", "cold_start", "graph", "risk", "pricing", "report",
        "maintain", "forget", "release", "monitor", "regional", "search")


def job_summary(job: str) -> str:
    module = importlib.import_module(f"ecomlake.jobs.{job}")
    return (module.__doc__ or "").strip().splitlines()[0]


def usage() -> str:
    lines = [__doc__.strip(), "", "jobs:"]
    lines += [f"  {job_summary(job)}" for job in JOBS]
    return "\n".join(lines)


def package_dir() -> Path:
    """The ecomlake package this runs from: lib/ecomlake in a checkout, site-packages/ecomlake from a wheel."""
    import ecomlake

    return Path(ecomlake.__file__).resolve().parent


def build_library_zip() -> Path:
    """The running ecomlake package (its modules and conf/) as a zip for --py-files: what the driver
    runs is what the executors import. Rebuilt on every submit (it is small) into dist/ of a
    checkout, else one folder per user and installed package under the temp dir (never a new
    folder per submit); written aside and renamed, so a submit running at the same time never
    reads a half-written zip."""
    root = cfg.checkout_root()
    package = package_dir()
    if root:
        dist = root / "dist"
    else:
        where = hashlib.sha1(str(package).encode()).hexdigest()[:10]
        dist = Path(tempfile.gettempdir()) / f"ecomlake-submit-{getpass.getuser()}-{where}"
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / "ecomlake.zip"
    partial = dist / f".ecomlake.zip.{os.getpid()}"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*.py")):
            zf.write(path, path.relative_to(package.parent))
        for path in sorted(cfg.conf_dir().iterdir()):
            if path.suffix in (".yaml", ".properties"):
                zf.write(path, f"ecomlake/conf/{path.name}")
    os.replace(partial, target)
    return target


def job_script(job: str) -> Path:
    """The file spark-submit runs: the checkout's jobs/<job>.py, or the installed job module."""
    root = cfg.checkout_root()
    return root / "jobs" / f"{job}.py" if root else package_dir() / "jobs" / f"{job}.py"


def spark_submit_binary(env: str) -> str:
    if env == "local":
        import pyspark

        bundled = Path(pyspark.__file__).resolve().parent / "bin" / "spark-submit"  # pip's pyspark
        if bundled.exists():
            return str(bundled)
    spark_home = os.environ.get("SPARK_HOME")
    if spark_home:
        return str(Path(spark_home) / "bin" / "spark-submit")
    return shutil.which("spark-submit") or "spark-submit"  # checked before a real run, not a dry run


def build_command(job: str, job_args: list[str], config: dict, config_file: Path) -> list[str]:
    env = config["env"]
    spark = config["spark"]
    if env != "local" and spark["master"].startswith("spark://") and spark["deploy_mode"] == "cluster":
        raise EcomlakeError(f"a standalone master ({spark['master']}) does not run Python applications in "
                            f"cluster deploy mode: add --conf spark.deploy_mode=client")
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
    log4j = cfg.conf_dir() / "log4j2.properties"
    in_cluster = env != "local" and spark["deploy_mode"] == "cluster"
    # Spark's own log lines at WARN: the driver reads the file where it runs; executors (and a
    # driver in cluster mode) read the copy --files puts in their working directory.
    java_options = {"spark.driver.extraJavaOptions": log4j.name if in_cluster else f"file:{log4j}"}
    if env != "local":
        java_options["spark.executor.extraJavaOptions"] = log4j.name
    for key, log4j_file in java_options.items():  # added to the user's own options, unless they set one
        if "log4j2.configurationFile" not in conf.get(key, ""):
            conf[key] = f"{conf.get(key, '')} -Dlog4j2.configurationFile={log4j_file}".strip()
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    passthrough = list(job_args)
    if env != "local":
        cmd += ["--py-files", str(build_library_zip()), "--files", f"{config_file},{log4j}"]
        # In cluster deploy mode the driver finds the shipped file in its working directory.
        passthrough = _replace_option(passthrough, "--config-file", config_file.name if in_cluster else str(config_file))
    cmd.append(str(job_script(job)))
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
        sys.stdout.write(usage() + "\n")
        return 0
    job, rest = argv[0], argv[1:]
    logs.configure("spark-submit.sh")
    if job not in JOBS:
        log.error("spark-submit.sh: error: unknown job '%s'; jobs: %s", job, ", ".join(JOBS))
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
        log.error("spark-submit.sh: error: %s", exc)
        return 2
    if known.dry_run:  # the command is this mode's output
        sys.stdout.write("+ " + shlex.join(cmd) + "\n")
        return 0
    log.info("+ %s", shlex.join(cmd))
    if not (Path(cmd[0]).exists() or shutil.which(cmd[0])):
        log.error("spark-submit.sh: error: spark-submit not found: set SPARK_HOME or put spark-submit on PATH")
        return 2
    env = dict(os.environ)
    if known.env == "local":
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())

"""What a scheduler runs: the Databricks bundle (databricks.yml) names entry points the built wheel
has, in the daily order, with parameters each job's own argument parser accepts; Airflow's own
DagBag (Airflow in its own cached virtualenv, scripts/airflow_env.sh) loads dags/ with the same order."""
from __future__ import annotations

import importlib
import re
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DAILY_ORDER = ["ingest", "clean", "sessionize", "features", "score", "monitor", "is_sunday", "maintain"]


@pytest.fixture(scope="module")
def bundle() -> dict:
    return yaml.safe_load((ROOT / "databricks.yml").read_text())


def wheel_entry_points(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(name).decode()
    return dict(line.split(" = ") for line in text.splitlines() if " = " in line)


def resolved(value: str, variables: dict, job_parameters: dict) -> str:
    """The value as Databricks would pass it: ${var.x} from the bundle, {{job.parameters.x}} at run time."""
    value = re.sub(r"\$\{var\.(\w+)\}", lambda m: str(variables[m.group(1)]), str(value))
    return re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: job_parameters[m.group(1)], value)


def parsed_by_the_job(job: str, argv: list[str], monkeypatch):
    """The job's main() parses argv with its own parser; nothing runs (run_job is replaced)."""
    module = importlib.import_module(f"ecomlake.jobs.{job}")
    seen = {}

    def parse_only(name, parser, body, args=None):
        seen["args"] = parser.parse_args(args)
        return 0

    monkeypatch.setattr(module, "run_job", parse_only)
    assert module.main(argv) == 0
    return seen["args"]


def ordered(tasks: list[dict]) -> list[str]:
    """Task keys in dependency order (each task after what it depends on)."""
    done, order = set(), []
    while len(order) < len(tasks):
        ready = [t["task_key"] for t in tasks if t["task_key"] not in done
                 and all(d["task_key"] in done for d in t.get("depends_on", []))]
        assert ready, "a dependency cycle"
        order += ready
        done.update(ready)
    return order


def test_the_daily_job_runs_the_jobs_in_order_and_maintains_on_sundays(bundle):
    tasks = bundle["resources"]["jobs"]["ecomlake_daily"]["tasks"]
    assert ordered(tasks) == DAILY_ORDER
    assert all(len(t.get("depends_on", [])) <= 1 for t in tasks)  # one chain
    by_key = {t["task_key"]: t for t in tasks}
    assert by_key["is_sunday"]["condition_task"] == {"op": "EQUAL_TO", "left": "{{job.start_time.iso_weekday}}",
                                                     "right": "7"}
    assert by_key["maintain"]["depends_on"] == [{"task_key": "is_sunday", "outcome": "true"}]
    assert by_key["monitor"]["depends_on"] == [{"task_key": "score"}] and by_key["monitor"]["max_retries"] == 0
    weekly = bundle["resources"]["jobs"]["ecomlake_weekly_training"]["tasks"]
    assert ordered(weekly) == ["features_at_cutoff", "train"]


def test_every_task_runs_an_entry_point_of_the_built_wheel_with_parameters_its_job_parses(
        bundle, built_wheel, monkeypatch):
    scripts = wheel_entry_points(built_wheel)
    artifact = bundle["artifacts"]["ecomlake_wheel"]
    assert artifact["type"] == "whl" and artifact["build"] == "make wheel"
    checked = 0
    for target in (None, *bundle["targets"]):
        variables = {k: v["default"] for k, v in bundle["variables"].items()}
        variables.update((bundle["targets"].get(target) or {}).get("variables", {}) if target else {})
        for job in bundle["resources"]["jobs"].values():
            assert job["max_concurrent_runs"] == 1
            job_parameters = {p["name"]: p["default"] for p in job["parameters"]}
            assert job_parameters["run_date"] == "{{job.start_time.iso_date}}"
            job_parameters = {**job_parameters, "run_date": "2019-12-15",
                              "lake_root": resolved(job_parameters["lake_root"], variables, {})}
            for cluster in job["job_clusters"]:
                assert cluster["new_cluster"]["spark_version"] == "${var.spark_version}"
                key = cluster["new_cluster"]["spark_env_vars"]["ECOMLAKE_PSEUDONYM_KEY"]
                assert resolved(key, variables, {}) == f"{{{{secrets/{variables['secret_scope']}/pseudonym_key}}}}"
            for task in job["tasks"]:
                if "condition_task" in task:
                    continue
                wheel_task = task["python_wheel_task"]
                assert wheel_task["package_name"] == "ecomlake" and task["libraries"] == [{"whl": "./dist/*.whl"}]
                entry = wheel_task["entry_point"]
                assert entry in scripts, entry
                module = scripts[entry].split(":")[1]
                argv = [resolved(p, variables, job_parameters) for p in wheel_task["parameters"]]
                args = parsed_by_the_job(module, argv, monkeypatch)
                assert args.env == "databricks" and args.lake == variables["lake_root"]
                assert "pseudonym" not in " ".join(argv).lower()  # the key never travels as a parameter
                if hasattr(args, "as_of"):
                    assert args.as_of == "2019-12-15"
                checked += 1
    assert checked == 3 * 9   # 3 targets x (daily: 7 wheel tasks incl. monitor; weekly: 2)
    assert variables["spark_version"].startswith("15.4.")  # Spark 3.5, as the stack pins


def test_training_shifts_its_cutoff_back_by_the_label_horizon(bundle, monkeypatch):
    from ecomlake.cli import shifted_as_of

    [train] = [t for t in bundle["resources"]["jobs"]["ecomlake_weekly_training"]["tasks"] if t["task_key"] == "train"]
    argv = [resolved(p, {k: v["default"] for k, v in bundle["variables"].items()},
                     {"run_date": "2019-12-01", "lake_root": "dbfs:/x"}) for p in train["python_wheel_task"]["parameters"]]
    args = parsed_by_the_job("train", argv, monkeypatch)
    assert args.task == "all" and shifted_as_of(args.as_of, args.as_of_minus_days) == "2019-11-17"


# ---- Airflow: dags/ loaded by Airflow's own DagBag, in Airflow's own virtualenv ---------------

DAGBAG_REPORT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: v for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": str(dag.schedule), "max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
        "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "retries": t.retries,
                              "type": type(t).__name__, "command": getattr(t, "bash_command", None)}
                  for t in dag.tasks}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def airflow_dags(tmp_path_factory) -> dict:
    import json
    import os
    import subprocess

    python = subprocess.run(["bash", str(ROOT / "scripts" / "airflow_env.sh")], check=True, capture_output=True,
                            text=True).stdout.strip().splitlines()[-1]
    home = tmp_path_factory.mktemp("airflow-home")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
           "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([python, "-c", DAGBAG_REPORT, str(ROOT / "dags")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_airflow_loads_the_dags_without_import_errors_in_the_daily_order(airflow_dags):
    assert airflow_dags["errors"] == {}
    daily = airflow_dags["dags"]["ecomlake_daily"]
    tasks = daily["tasks"]
    chain = ["ingest", "clean", "sessionize", "features", "score", "is_sunday", "maintain"]
    for before, after in zip(chain, chain[1:]):
        assert tasks[before]["downstream"] == sorted([after, *(["monitor"] if before == "score" else [])]), before
    assert tasks["maintain"]["downstream"] == [] and tasks["is_sunday"]["type"] == "BranchDayOfWeekOperator"
    assert tasks["monitor"]["downstream"] == [] and tasks["monitor"]["retries"] == 0   # an alert is no flake
    assert daily["max_active_runs"] == 1 and daily["catchup"] is False and daily["schedule"] == "30 2 * * *"
    assert all(t["retries"] >= 1 for name, t in tasks.items() if t["command"] and name != "monitor")
    for job in ("features", "score", "monitor"):
        assert "--as-of {{ data_interval_end | ds }}" in tasks[job]["command"]
    assert tasks["ingest"]["command"].startswith("{{ params.ecomlake_command }} ingest --source rees46 --input ")
    weekly = airflow_dags["dags"]["ecomlake_weekly_training"]["tasks"]
    assert weekly["features_at_cutoff"]["downstream"] == ["train"]
    assert "train all --as-of {{ data_interval_end | ds }} --as-of-minus-days {{ params.label_horizon_days }}" in \
        weekly["train"]["command"]

"""The cluster path for real: a Spark standalone master and two workers on 127.0.0.1 (one core and
2 GiB each), `pipeline`, `features`, `train propensity` and `score` through
`./spark-submit.sh --env cluster` in client mode, and the same jobs locally on the same input: the
tables are the same. Not in `make test` (pytest.ini deselects the `cluster` tier; it takes
minutes): `make cluster-test` runs it and prints both wall times."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyspark
import pytest

from tests import crash
from tests.cluster import standalone_cluster
from tests.conftest import leaked_key_renderings

pytestmark = [pytest.mark.cluster, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2019-11-17"
EVENTS = int(os.environ.get("ECOMLAKE_CLUSTER_TEST_EVENTS", "20000"))
# Set per run, never compared: run times, model directories (under each lake), run records.
RUN_COLUMNS = ("created_at", "model_path", "_batch_id", "_ingested_at", "ingested_at", "batch_id")


def jobs(raw: Path) -> list[tuple[str, list[str]]]:
    return [("pipeline", ["--input", str(raw / "events"), "--catalog", str(raw / "catalog" / "products.csv")]),
            ("features", ["--as-of", AS_OF]),
            ("train", ["propensity", "--as-of", AS_OF]),
            ("score", ["--as-of", AS_OF, "--task", "propensity"])]


KEY = "cluster-test-key-0123456789"


def submit(job: str, args: list[str], lake: Path, env_args: list[str], log: Path) -> str:
    # the cluster's Spark is pyspark's own here (SPARK_HOME is how --env cluster finds spark-submit)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "ECOMLAKE_PSEUDONYM_KEY": KEY,
           "SPARK_HOME": str(Path(pyspark.__file__).resolve().parent)}
    command = [str(ROOT / "spark-submit.sh"), job, *args, "--lake", str(lake), *env_args]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(command)}\n{out.stdout}\n{out.stderr}\n")
    assert out.returncode == 0, f"{job} failed (log {log}):\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def comparable(spark, root: Path) -> dict[str, list[tuple]]:
    """Every table but ops/, run columns dropped, the lake's own path taken out, rows sorted."""
    out = {}
    for path in crash.delta_tables(str(root)):
        name = os.path.relpath(path, root)
        if name.startswith("ops/"):
            continue
        rows = spark.read.format("delta").load(path).drop(*RUN_COLUMNS).collect()
        out[name] = sorted((tuple(_plain(v, str(root)) for v in r) for r in rows), key=_sort_key)
    return out


def _plain(value, root: str):
    if isinstance(value, str):
        return value.replace(root, "<lake>")
    if isinstance(value, dict):
        return {k: _plain(v, root) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v, root) for v in value]
    return value


def _sort_key(row: tuple) -> str:
    return repr(tuple(round(v, 6) if isinstance(v, float) else v for v in row))


def close(a, b) -> bool:
    """Equal, doubles within 1e-7 relative: a model fitted on other partitions adds its gradients
    in another order (the features it reads are exact: sums of money are decimal)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cluster-raw")
    submit("generate", ["--events", str(EVENTS), "--seed", "8", "--conf", f"generate.output={out}"],
           out / "lake-unused", ["--conf", "spark.master=local[2]"], out / "generate.log")
    return out


def test_the_jobs_on_a_standalone_cluster_write_what_they_write_locally(spark, raw, tmp_path):
    # train reads the generator's ground truth (the oracle AUC) from generate.output
    local_args = ["--conf", "spark.master=local[2]", "--conf", "spark.conf.spark.sql.shuffle.partitions=4",
                  "--conf", f"generate.output={raw}"]
    cluster_args = ["--env", "cluster", "--conf", "spark.deploy_mode=client", "--conf", f"generate.output={raw}",
                    "--conf", "spark.conf.spark.executor.memory=1g", "--conf", "spark.conf.spark.executor.cores=1",
                    "--conf", "spark.conf.spark.dynamicAllocation.enabled=false",
                    "--conf", "spark.conf.spark.sql.shuffle.partitions=4", "--conf", "spark.conf.spark.driver.memory=2g",
                    "--conf", f"spark.conf.spark.pyspark.python={sys.executable}",
                    "--conf", "spark.conf.spark.eventLog.enabled=true",
                    "--conf", f"spark.conf.spark.eventLog.dir=file:{tmp_path / 'event-logs'}"]
    (tmp_path / "event-logs").mkdir()
    times, outputs = {}, {}
    started = time.time()
    for job, args in jobs(raw):
        submit(job, args, tmp_path / "local-lake", local_args, tmp_path / "local.log")
    times["local"] = time.time() - started
    with standalone_cluster(tmp_path / "cluster") as master:
        started = time.time()
        for job, args in jobs(raw):
            outputs[job] = submit(job, args, tmp_path / "cluster-lake", [*cluster_args, "--conf", f"spark.master={master}"],
                                  tmp_path / "cluster.log")
        times["cluster"] = time.time() - started
    # the jobs really ran on the cluster's executors, with Spark's INFO lines kept quiet
    assert f"--master {master} --deploy-mode client" in outputs["pipeline"]
    assert not any(re.search(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d INFO ", o, re.M) for o in outputs.values())
    # the key reached driver and executors (user_keys equal the local run's) but no command, log or event log
    assert not any(leaked_key_renderings(o, KEY.encode()) for o in outputs.values())
    event_logs = list((tmp_path / "event-logs").iterdir())
    assert len(event_logs) == len(jobs(raw))
    # nor the padded key (key XOR ipad/opad, what pseudonymise puts in a DataFrame) in any form
    leaks = {p.name: leaked_key_renderings(p.read_text(errors="replace"), KEY.encode()) for p in event_logs}
    assert leaks == {p.name: [] for p in event_logs}
    executors = [p for p in (tmp_path / "cluster").glob("worker-*/app-*/*") if p.is_dir()]
    assert len({p.parts[-3] for p in executors}) == 2  # both workers ran executors
    local, cluster = comparable(spark, tmp_path / "local-lake"), comparable(spark, tmp_path / "cluster-lake")
    assert sorted(cluster) == sorted(local)
    for table in local:
        assert len(cluster[table]) == len(local[table]), table
        differing = [(c, l) for c, l in zip(cluster[table], local[table]) if not close(list(c), list(l))]
        assert differing == [], f"{table}: {len(differing)} rows differ, e.g. {differing[:2]}"
    result = {"events": EVENTS, "jobs": [job for job, _ in jobs(raw)], "local_seconds": round(times["local"], 1),
              "cluster_seconds": round(times["cluster"], 1), "tables_compared": len(local),
              "rows_compared": sum(len(v) for v in local.values())}
    print("cluster-test:", json.dumps(result))

"""maintain: compaction, VACUUM, a retention that readers' needs refuse, unused model directories."""
import os
import time
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from ecomlake import lake, maintenance, ops, runs, tables
from ecomlake.jobs import maintain
from ecomlake.maintenance import Need

pytestmark = pytest.mark.e2e

THINGS = tables.Table("silver", "things", "test")  # not in tables.py: maintain finds it by walking


def part_files(path):
    return sorted(f for f in os.listdir(path) if f.startswith("part-") and f.endswith(".parquet"))


def old(path, hours):
    """Set the modification time of a directory tree `hours` back."""
    stamp = time.time() - hours * 3600
    for directory, _, files in os.walk(path):
        for f in files:
            os.utime(os.path.join(directory, f), (stamp, stamp))
        os.utime(directory, (stamp, stamp))


@pytest.fixture(scope="module")
def lake_config(spark, tmp_path_factory):
    from ecomlake import config as cfg
    from tests.conftest import TEST_SPARK_OVERRIDES

    tmp = tmp_path_factory.mktemp("maintain")
    config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=str(tmp / "lake"))
    root = config["lake_root"]
    # A table of many small files, with an overwrite in its history (files only old versions use).
    first = spark.createDataFrame([(i, f"x{i}") for i in range(5)], "n int, s string").coalesce(1)
    lake.append_table(first, root, THINGS)
    lake.overwrite_table(first, root, THINGS)
    for k in range(1, 4):
        rows = spark.createDataFrame([(10 * k + i, f"y{k}{i}") for i in range(5)], "n int, s string").coalesce(1)
        lake.append_table(rows, root, THINGS)
    # Model directories: run1 has a recorded attempt A beside an older, unrecorded attempt B;
    # run2 has no row at all. A row for A makes gold/model_runs exist.
    models = f"{root}/models/recommend"
    for d in ("run1/A/als", "run1/B/als", "run2/A/als"):
        os.makedirs(f"{models}/{d}")
        with open(f"{models}/{d}/part-00000", "w") as f:
            f.write("x")
    runs.record(spark, root, [{"run_id": "run1", "task": "recommend", "model": "als", "is_baseline": False,
                               "as_of": "2019-11-17", "params": {}, "metrics": {}, "input_versions": {},
                               "model_path": f"{models}/run1/A"}])
    for d in ("run1/A", "run1/B", "run2"):
        old(f"{models}/{d}", hours=48)
    return config


def test_retention_violations_only_for_old_versions_that_later_commits_replaced():
    now = 1_000_000.0
    needs = [Need("silver/a", 3, "job x"), Need("silver/a", 9, "job y"), Need("silver/b", 1, "run r"),
             Need("silver/c", 2, "job z")]
    commit_times = {"silver/a": {3: now - 30 * 3600, 9: now - 40 * 3600}, "silver/b": {}, "silver/c": {2: now}}
    latest = {"silver/a": 9, "silver/b": 5, "silver/c": 4}
    found = maintenance.retention_violations(needs, commit_times, latest, 24.0, now)
    # version 9 is the current one (never vacuumed); silver/b's version 1 is no longer in the log
    assert [(v.need.table, v.need.version, v.shortest_hours) for v in found] == [("silver/a", 3, 31)]
    assert maintenance.retention_violations(needs, commit_times, latest, 31.0, now) == []


def test_a_retention_shorter_than_a_reader_needs_is_refused(spark, lake_config, capsys):
    root = lake_config["lake_root"]
    path = THINGS.path(root)
    ops.record_run(spark, root, run_id="r1", job="sessionize", started_at=datetime.now(timezone.utc),
                   status="succeeded", input_versions={THINGS.id: 1})
    before = maintenance.directory_usage(spark, path)
    code = maintain.main(["--lake", root, "--retention-hours", "0", "--tables", THINGS.id])
    err = capsys.readouterr().err
    assert code == 2
    assert "silver/things version 1" in err and "job sessionize" in err
    assert "shortest allowed retention is 1 h" in err
    assert maintenance.directory_usage(spark, path) == before  # nothing changed
    # the default retention (168 h) keeps a version committed seconds ago: allowed
    assert maintain.run(spark, lake_config, table_ids=[THINGS.id], dry_run=True)["retention_hours"] == 168.0


def test_dry_run_reports_and_changes_nothing(spark, lake_config):
    root = lake_config["lake_root"]
    # the reader has caught up: its newest run consumed the latest version
    ops.record_run(spark, root, run_id="r2", job="sessionize", started_at=datetime.now(timezone.utc),
                   status="succeeded", input_versions={THINGS.id: lake.table_version(spark, root, THINGS)})
    files = part_files(THINGS.path(root))
    out = maintain.run(spark, lake_config, retention_hours=0, table_ids=[THINGS.id], dry_run=True)
    assert out["tables"][THINGS.id]["vacuum_would_delete"] == 1  # the file the overwrite replaced
    assert out["tables"][THINGS.id]["files_before"] > len(files)  # _delta_log counts too
    assert part_files(THINGS.path(root)) == files


def test_compaction_and_vacuum_keep_the_rows_and_report_files_and_bytes(spark, lake_config, caplog):
    root = lake_config["lake_root"]
    path = THINGS.path(root)
    rows_before = sorted(lake.read_table(spark, root, THINGS).collect())
    assert len(part_files(path)) == 5
    with caplog.at_level("INFO", logger="ecomlake.jobs.maintain"):
        out = maintain.run(spark, lake_config, retention_hours=0)
    things = out["tables"][THINGS.id]
    assert things["files_compacted"] == 4 and things["files_written"] == 1
    # the report is what the file system holds (the log grew by the OPTIMIZE and VACUUM commits)
    assert (things["files_after"], things["bytes_after"]) == maintenance.directory_usage(spark, path)
    assert things["bytes_before"] > 0
    assert sorted(lake.read_table(spark, root, THINGS).collect()) == rows_before
    # VACUUM removed every data file the table no longer references: one file is left
    assert len(part_files(path)) == 1
    assert f"{THINGS.id}: files {things['files_before']} -> {things['files_after']}, bytes" in caplog.text
    record = (lake.read_table(spark, root, tables.OPS_JOB_RUNS).where(F.col("job") == "maintain")
              .select("counts").head()["counts"])
    assert record[f"files_before:{THINGS.id}"] == things["files_before"]
    assert record[f"bytes_after:{THINGS.id}"] == things["bytes_after"]
    assert record["files_after"] == out["files_after"]
    # unused model directories older than the retention are gone, the recorded attempt stays
    models = f"{root}/models/recommend"
    assert sorted(out["model_dirs"]) == ["models/recommend/run1/B", "models/recommend/run2"]
    assert os.path.exists(f"{models}/run1/A/als/part-00000")
    assert not os.path.exists(f"{models}/run1/B") and not os.path.exists(f"{models}/run2")


def test_recent_unused_model_directories_are_kept(spark, lake_config):
    root = lake_config["lake_root"]
    fresh = f"{root}/models/recommend/run1/C"
    os.makedirs(fresh)
    with open(f"{fresh}/part-00000", "w") as f:
        f.write("x")
    assert maintenance.unreferenced_model_dirs(spark, root, older_than_hours=1) == []
    assert [d.id for d in maintenance.unreferenced_model_dirs(spark, root, older_than_hours=0)] == \
        ["models/recommend/run1/C"]

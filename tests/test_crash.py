"""kill -9 anywhere, re-run, same tables: a daily run's jobs are killed right after each Delta
commit they make, the tables are read (every one must be readable), the job is re-run, and its
tables must equal those of an uninterrupted run. (benchmarks/crash.py does every job.)"""
from __future__ import annotations

import os

import pytest

from ecomlake import lake, leases, tables
from ecomlake.jobs import clean, ingest
from tests import crash
from tests.test_daily import day_lines, write

pytestmark = [pytest.mark.e2e, pytest.mark.subprocess]

STEPS = {
    "ingest": (lambda spark, config, incoming: ingest.run(spark, config, "rees46", incoming),
               lambda incoming: ["--source", "rees46", "--input", incoming]),
    "clean": (lambda spark, config, incoming: clean.run(spark, config), lambda incoming: []),
}


@pytest.fixture(scope="module")
def base_lake(spark, tmp_path_factory):
    """Day 1 already ingested and cleaned; day 2's file (with a dirty row) has arrived."""
    from ecomlake import config as cfg
    from tests.conftest import TEST_SPARK_OVERRIDES

    tmp = tmp_path_factory.mktemp("crash")
    incoming = tmp / "incoming"
    incoming.mkdir()
    config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=str(tmp / "base"))
    write(incoming, 0, day_lines(0))
    ingest.run(spark, config, "rees46", str(incoming))
    clean.run(spark, config)
    write(incoming, 1, day_lines(1) + ["2019-10-02 23:55:00 UTC,view,7,2053,,,-1.00,1,s"])
    return tmp, config, str(incoming)


# In CI: the commit where an incremental clean has replaced the changed dates of silver/events
# but not yet their quarantine rows (commit 1 takes the lease): its re-run must redo both from
# the bronze version its last successful run consumed. `make crash-test` kills every daily job
# (sessionize, features, train, score too) after every one of its commits.
@pytest.mark.parametrize("job,commits", [("clean", 2)])
def test_a_job_killed_after_a_commit_and_rerun_gives_the_same_tables(spark, base_lake, job, commits):
    from ecomlake import config as cfg
    from tests.conftest import TEST_SPARK_OVERRIDES

    tmp, base_config, incoming = base_lake
    order = list(STEPS)
    # the lake just before this job: the earlier steps of the day done without interruption
    before = str(tmp / f"before-{job}")
    if not os.path.exists(before):
        crash.copy_lake(base_config["lake_root"], before + ".tmp")
        before_config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=before + ".tmp")
        for step in order[: order.index(job)]:
            STEPS[step][0](spark, before_config, incoming)
        os.rename(before + ".tmp", before)
    reference = str(tmp / f"reference-{job}")
    if not os.path.exists(reference):
        crash.copy_lake(before, reference)
        STEPS[job][0](spark, cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=reference), incoming)
    expected = crash.contents(spark, reference)
    work = crash.copy_lake(before, str(tmp / f"work-{job}-{commits}"))
    killed = crash.run_killed_after(crash.job_command(job, work, *STEPS[job][1](incoming)), work, commits)
    assert killed, f"{job} made fewer than {commits} commits"
    assert leases.current(spark, work, job) is not None  # killed while holding its lease: half done
    crash.contents(spark, work)  # every table is readable right after the kill
    STEPS[job][0](spark, cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=work), incoming)
    assert crash.contents(spark, work) == expected, f"{job} killed after commit {commits}"


def test_two_ingests_of_the_same_new_file_at_once_neither_duplicate_nor_lose(spark, tmp_path):
    """A scheduler firing twice: two real processes ingest the same new file into an empty lake
    (no table exists yet, the lease table included). One holds the lease and ingests; the other
    exits with a message naming it (or, if it started after the first was done, finds nothing
    new). Either way each line is in the lake once."""
    import subprocess

    from ecomlake import config as cfg
    from tests.conftest import TEST_SPARK_OVERRIDES

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=str(tmp_path / "lake"))
    path = write(incoming, 1, day_lines(1))
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONPATH": str(crash.REPO / "lib")}
    command = crash.job_command("ingest", config["lake_root"], "--source", "rees46", "--input", path)
    runs = [subprocess.Popen(command, cwd=crash.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read().decode()) for p in runs]
    assert sorted(code for code, _ in outcomes) in ([0, 0], [0, 2]), outcomes
    for code, err in outcomes:
        if code == 2:
            assert "ingest" in err and "held" in err and "pid" in err, err
    bronze = lake.read_table(spark, config["lake_root"], tables.BRONZE_EVENTS)
    assert bronze.count() == len(day_lines(1))
    assert bronze.distinct().count() == bronze.count()

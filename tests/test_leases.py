"""Leases in ops/leases: one run per lease name; a dead or expired holder is taken over; and two
real processes racing for the same lease (empty lake; expired lease) never both win.

Run as a module (`python -m tests.test_leases race ...`) it is one racing process."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from delta.exceptions import ConcurrentAppendException, ConcurrentDeleteReadException
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from ecomlake import config as cfg
from ecomlake import lake, leases, tables
from ecomlake.spark import get_spark

ROOT = Path(__file__).resolve().parents[1]
RACE_LEASE = "ingest:rees46"
HELD_EXIT = 3  # a racing process that got LeaseHeld exits with this


def _row(name, *, host, pid, expires_in, holder="another-runs-token"):
    now = datetime.now(timezone.utc)
    return (name, holder, "ingest", f"run-of-{host}-{pid}", host, pid, now - timedelta(hours=1),
            now - timedelta(minutes=5), now + timedelta(seconds=expires_in))


def _plant(spark, lake_root, *rows):
    """Lease rows left by other runs, written as the lease module writes them."""
    lake.append_table(spark.createDataFrame(list(rows), leases.SCHEMA), lake_root, tables.OPS_LEASES,
                      partition_by=["name"])


def test_hold_acquires_and_releases_even_when_the_body_fails(spark, tmp_path):
    root = str(tmp_path / "lake")
    with leases.hold(spark, root, "clean", job="clean", run_id="r1", timeout_seconds=600) as row:
        assert leases.current(spark, root, "clean") == row
        assert (row["job"], row["run_id"]) == ("clean", "r1")
        assert (row["host"], row["pid"]) == (socket.gethostname(), os.getpid())
        assert row["expires_at"] - row["heartbeat_at"] == timedelta(seconds=600)
        assert abs(row["acquired_at"] - datetime.now(timezone.utc)) < timedelta(minutes=2)
    assert leases.current(spark, root, "clean") is None

    with pytest.raises(RuntimeError, match="the job failed"):
        with leases.hold(spark, root, "clean", job="clean", run_id="r2", timeout_seconds=600):
            raise RuntimeError("the job failed")
    assert leases.current(spark, root, "clean") is None


def test_a_live_lease_refuses_a_second_run_and_names_the_holder(spark, tmp_path):
    root = str(tmp_path / "lake")
    with leases.hold(spark, root, "ingest:rees46", job="ingest", run_id="first-run", timeout_seconds=600):
        with pytest.raises(leases.LeaseHeld) as held:
            with leases.hold(spark, root, "ingest:rees46", job="ingest", run_id="second-run", timeout_seconds=600):
                pytest.fail("two runs held the same lease")
        message = str(held.value)
        for part in ("'ingest:rees46'", "run_id first-run", f"pid {os.getpid()}", socket.gethostname(),
                     "expires at", "ops.lease_timeout_seconds", "ops.lease_wait_seconds"):
            assert part in message, (part, message)
        assert leases.current(spark, root, "ingest:rees46")["run_id"] == "first-run"
        with leases.hold(spark, root, "clean", job="clean", run_id="other-lease", timeout_seconds=600):
            pass  # another lease name is independent
    assert leases.current(spark, root, "ingest:rees46") is None


def test_wait_seconds_gets_the_lease_once_the_holder_releases(spark, tmp_path):
    root = str(tmp_path / "lake")
    holding, body_ended, errors = threading.Event(), [], []

    def first_run():
        try:
            with leases.hold(spark, root, "clean", job="clean", run_id="first", timeout_seconds=600):
                holding.set()
                time.sleep(3)
                body_ended.append(datetime.now(timezone.utc))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
            holding.set()

    thread = threading.Thread(target=first_run)
    thread.start()
    assert holding.wait(300) and not errors, errors
    with leases.hold(spark, root, "clean", job="clean", run_id="second", timeout_seconds=600,
                     wait_seconds=300, poll_seconds=0.5) as row:
        assert row["run_id"] == "second"
        assert body_ended and row["acquired_at"] > body_ended[0]
    thread.join()
    assert not errors, errors


def test_an_expired_lease_is_taken_over_but_a_live_one_on_another_host_is_not(spark, tmp_path):
    root = str(tmp_path / "lake")
    _plant(spark, root, _row("clean", host="other-host", pid=os.getpid(), expires_in=3600),
           _row("sessionize", host="other-host", pid=os.getpid(), expires_in=-1))
    with pytest.raises(leases.LeaseHeld, match="run-of-other-host"):
        with leases.hold(spark, root, "clean", job="clean", run_id="mine", timeout_seconds=600):
            pytest.fail("took a live lease of another host")
    with leases.hold(spark, root, "sessionize", job="sessionize", run_id="mine", timeout_seconds=600) as row:
        assert (row["run_id"], row["host"]) == ("mine", socket.gethostname())
    assert leases.current(spark, root, "sessionize") is None
    assert leases.current(spark, root, "clean")["host"] == "other-host"


def test_a_dead_pid_on_this_host_loses_its_lease_at_once(spark, tmp_path):
    root = str(tmp_path / "lake")
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    _plant(spark, root, _row("clean", host=socket.gethostname(), pid=killed.pid, expires_in=3600))
    with leases.hold(spark, root, "clean", job="clean", run_id="mine", timeout_seconds=600) as row:
        assert (row["run_id"], row["pid"]) == ("mine", os.getpid())


def test_heartbeats_extend_the_lease(spark, tmp_path):
    root = str(tmp_path / "lake")
    with leases.hold(spark, root, "clean", job="clean", run_id="r", timeout_seconds=4) as row:  # a beat a second
        deadline = time.monotonic() + 120
        later = row
        while later["heartbeat_at"] == row["heartbeat_at"] and time.monotonic() < deadline:
            time.sleep(0.5)
            later = leases.current(spark, root, "clean")
        assert later["expires_at"] > row["expires_at"]
        assert later["expires_at"] - later["heartbeat_at"] == timedelta(seconds=4)
        assert (later["holder"], later["acquired_at"]) == (row["holder"], row["acquired_at"])


def test_a_run_whose_lease_was_taken_over_does_not_succeed(spark, tmp_path, caplog):
    root = str(tmp_path / "lake")
    with pytest.raises(leases.LeaseLost, match="taken over by job ingest, run_id thief-run"):
        with leases.hold(spark, root, "clean", job="clean", run_id="r", timeout_seconds=4):
            # What a run that presumed us dead leaves: its row in place of ours.
            for _ in range(20):  # our heartbeat commits every second: retry when it wins
                try:
                    DeltaTable.forPath(spark, tables.OPS_LEASES.path(root)).update(
                        F.col("name") == "clean",
                        {"holder": F.lit("thief"), "run_id": F.lit("thief-run"), "job": F.lit("ingest")})
                    break
                except (ConcurrentAppendException, ConcurrentDeleteReadException):
                    time.sleep(0.3)
            deadline = time.monotonic() + 120
            while "was taken over" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "was taken over" in caplog.text  # the heartbeat noticed, before the body ended
    assert leases.current(spark, root, "clean")["holder"] == "thief"  # not released by the loser


# ---- two real processes ----------------------------------------------------------------------


def _race(lake_root: str, barrier: str, label: str, max_hold_seconds: float) -> int:
    """One racing process: its own SparkSession, then (at the barrier) hold RACE_LEASE, append a
    marker row and keep holding until the other process was refused (at most max_hold_seconds);
    exit HELD_EXIT with the LeaseHeld message when the other process has the lease."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"{label} %(name)s: %(message)s")
    from tests.conftest import SHORT_LIVED_JVM, TEST_SPARK_OVERRIDES

    overrides = [o for o in TEST_SPARK_OVERRIDES if not o.startswith("spark.master=")]
    config = cfg.load("local", lake=lake_root, overrides=[
        *overrides, "spark.master=local[1]", f"spark.conf.spark.local.dir={barrier}/{label}-spark",
        SHORT_LIVED_JVM])
    spark = get_spark(config, f"lease-race-{label}")
    spark.sparkContext.setLogLevel("ERROR")
    spark.range(1).count()
    Path(barrier, f"ready-{label}").touch()
    deadline = time.monotonic() + 300
    while len(list(Path(barrier).glob("ready-*"))) < 2:
        if time.monotonic() > deadline:
            sys.stderr.write("the other racing process never got ready\n")
            return 4
        time.sleep(0.01)
    try:
        with leases.hold(spark, lake_root, RACE_LEASE, job="race", run_id=label, timeout_seconds=300):
            start = time.time()
            marker = spark.createDataFrame([(label, os.getpid(), start, time.time())],
                                           "run_id string, pid int, start double, end double")
            marker.write.format("delta").mode("append").save(f"{lake_root}/test/markers")
            deadline = time.monotonic() + max_hold_seconds
            while not list(Path(barrier).glob("refused-*")) and time.monotonic() < deadline:
                time.sleep(0.1)
            end = time.time()
    except leases.LeaseHeld as exc:
        Path(barrier, f"refused-{label}").touch()
        sys.stderr.write(f"LeaseHeld: {exc}\n")
        return HELD_EXIT
    sys.stdout.write(json.dumps({"won": True, "start": start, "end": end}) + "\n")
    return 0  # the JVM exits with this process


def _start_race(lake_root: Path, barrier: Path) -> dict[str, subprocess.Popen]:
    barrier.mkdir()
    return {label: subprocess.Popen(  # `-m` from the repo root: `tests` is importable
        [sys.executable, "-m", "tests.test_leases", "race", str(lake_root), str(barrier), label, "120"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for label in ("run-a", "run-b")}


def _finish_race(spark, lake_root: Path, procs: dict[str, subprocess.Popen]) -> None:
    results = {label: (proc, *proc.communicate(timeout=600)) for label, proc in procs.items()}
    report = "\n".join(f"--- {label} (pid {p.pid}, exit {p.returncode})\n{out}{err}"
                       for label, (p, out, err) in results.items())
    winners = [(label, *r) for label, r in results.items() if r[0].returncode == 0]
    losers = [(label, *r) for label, r in results.items() if r[0].returncode == HELD_EXIT]
    assert len(winners) == 1 and len(losers) == 1, report
    (label, winner, won_out, _), (_, _, _, lost_err) = winners[0], losers[0]
    won = json.loads(won_out.strip().splitlines()[-1])
    # The loser read the winner's row (so: refused while the winner held the lease).
    assert f"lease '{RACE_LEASE}' is held by another run: job race, run_id {label}, " \
           f"host {socket.gethostname()}, pid {winner.pid}, " in lost_err, report
    markers = spark.read.format("delta").load(f"{lake_root}/test/markers").collect()
    assert [(m["run_id"], m["pid"]) for m in markers] == [(label, winner.pid)], report
    assert won["start"] <= markers[0]["start"] <= markers[0]["end"] <= won["end"]
    assert won["end"] - won["start"] < 120, report  # it held the lease until the other was refused
    assert leases.current(spark, str(lake_root), RACE_LEASE) is None, report  # released by the winner
    # Shown with `pytest -rP`: whether the race was decided by a Delta conflict or by a re-read.
    print(f"{lake_root.name}:", *[line for line in report.splitlines() if " ecomlake.leases: " in line], sep="\n  ")


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_processes_racing_for_a_lease_never_both_win(spark, tmp_path):
    # Two take-overs of a lease left expired by a killed run, next to a live lease of another name
    # that neither may touch. (The race on an empty lake, where both runs also create the lease
    # table, is tests/test_crash.py's two concurrent ingests.)
    expired = tmp_path / "expired-lake"
    _plant(spark, str(expired), _row(RACE_LEASE, host="other-host", pid=1, expires_in=-5),
           _row("clean", host="other-host", pid=1, expires_in=3600))
    _finish_race(spark, expired, _start_race(expired, tmp_path / "barrier-expired"))
    assert leases.current(spark, str(expired), "clean")["holder"] == "another-runs-token"


if __name__ == "__main__" and sys.argv[1:2] == ["race"]:
    lake_arg, barrier_arg, label_arg, seconds_arg = sys.argv[2:6]
    sys.exit(_race(lake_arg, barrier_arg, label_arg, float(seconds_arg)))

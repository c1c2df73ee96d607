"""The test that defines correctness for daily runs: tiny daily files ingested, cleaned and
sessionized one day at a time give the same tables, row for row, as one full refresh over the
same files — with late events, duplicates across days, a session crossing midnight between two
files, dirty rows and a re-delivered file."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from ecomlake import lake, ops, tables
from ecomlake.jobs import clean, ingest, sessionize
from ecomlake.rees46 import HEADER

pytestmark = pytest.mark.e2e

START = datetime(2019, 10, 1)
RUN_METADATA = ("_batch_id", "_ingested_at")


def line(t: datetime, event_type: str, product: int, price: float, user: int, session: str = "s") -> str:
    return (f"{t:%Y-%m-%d %H:%M:%S} UTC,{event_type},{product},2053,electronics.smartphone,apple,"
            f"{price:.2f},{user},{session}")


def day_lines(day: int) -> list[str]:
    """Each day: three users with a short session in the morning and one in the evening."""
    base = START + timedelta(days=day)
    out = []
    for user in (1, 2, 3):
        for hour in (9, 20):
            t = base + timedelta(hours=hour, minutes=user * 3)
            out.append(line(t, "view", 100 + user, 10.0 * user, user))
            out.append(line(t + timedelta(minutes=5), "cart", 100 + user, 10.0 * user, user))
            if (day + user) % 3 == 0:
                out.append(line(t + timedelta(minutes=9), "purchase", 100 + user, 10.0 * user, user))
    return out


DAYS = 3


def write_day_files(folder) -> dict[int, list[str]]:
    files = {day: day_lines(day) for day in range(DAYS)}
    # a session of user 4 that crosses midnight between the files of day 0 and day 1
    files[0].append(line(START + timedelta(hours=23, minutes=50), "view", 200, 5.0, 4))
    files[1].append(line(START + timedelta(days=1, minutes=10), "cart", 200, 5.0, 4))
    # late events in the day-2 file: one joins user 1's morning session of day 0, one starts a new
    # session between two of user 2's sessions (the numbers of user 2's later sessions shift)
    files[2].append(line(START + timedelta(hours=9, minutes=20), "view", 300, 7.0, 1))
    files[2].append(line(START + timedelta(hours=14), "view", 300, 7.0, 2))
    # the same event delivered on two days: the first ingested copy stays
    files[2].append(files[0][0])
    # dirty rows: negative price (clean), unparseable price (ingest), missing event time (clean)
    files[2].append(line(START + timedelta(days=2, hours=12), "view", 101, -3.0, 3))
    files[2].append(line(START + timedelta(days=2, hours=12), "view", 101, 1.0, 3).replace(",1.00,", ",one,"))
    files[2].append(",view,101,2053,electronics.smartphone,apple,1.00,3,s")
    return files


def write(folder, day: int, lines: list[str]) -> str:
    path = os.path.join(folder, f"{(START + timedelta(days=day)):%Y-%m-%d}.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join([HEADER, *lines]) + "\n")
    return path


REDELIVERED_DAY = 1


def redelivered(lines: list[str]) -> list[str]:
    """Day 1's file delivered again, corrected: one line removed, one added (a day-0 late event)."""
    return lines[1:] + [line(START + timedelta(hours=20, minutes=20), "view", 102, 20.0, 2)]


def snapshot(spark, root: str) -> dict[str, list[tuple]]:
    out = {}
    for table in (tables.SILVER_EVENTS, tables.QUARANTINE_EVENTS, tables.SILVER_SESSIONS, tables.GOLD_DAILY_FUNNEL,
                  tables.BRONZE_EVENTS):
        df = lake.read_table(spark, root, table).drop(*RUN_METADATA)
        out[table.id] = sorted(tuple("" if v is None else str(v) for v in r)
                               for r in df.select(*sorted(df.columns)).collect())
    return out


@pytest.fixture(scope="module")
def lakes(spark, tmp_path_factory):
    from ecomlake import config as cfg
    from tests.conftest import TEST_SPARK_OVERRIDES

    tmp = tmp_path_factory.mktemp("daily")
    daily_config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=str(tmp / "daily_lake"))
    full_config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=str(tmp / "full_lake"))
    incoming = tmp / "incoming"
    incoming.mkdir()
    files = write_day_files(incoming)
    modes = []
    for day in range(DAYS):
        path = write(incoming, day, files[day])
        if day == DAYS - 1:
            # with the last day's file, day 1's comes again, corrected, after it was processed:
            # the folder is ingested, so both are picked up in one run
            stat = os.stat(incoming / "2019-10-02.csv")
            redone = write(incoming, REDELIVERED_DAY, redelivered(files[REDELIVERED_DAY]))
            os.utime(redone, (stat.st_atime, stat.st_mtime + 5))
            path = str(incoming)
        ingest.run(spark, daily_config, "rees46", path)
        modes.append((clean.run(spark, daily_config)["mode"], sessionize.run(spark, daily_config)["mode"]))
    # the same final files, once, from scratch
    everything = tmp / "everything"
    shutil.copytree(incoming, everything)
    ingest.run(spark, full_config, "rees46", str(everything))
    clean.run(spark, full_config, full_refresh=True)
    sessionize.run(spark, full_config, full_refresh=True)
    return daily_config, full_config, modes


def test_daily_runs_are_incremental(lakes):
    _, _, modes = lakes
    assert modes[0] == ("full", "full")
    assert all(m == ("incremental", "incremental") for m in modes[1:]), modes


def test_daily_runs_equal_a_full_refresh(spark, lakes):
    daily_config, full_config, _ = lakes
    daily = snapshot(spark, daily_config["lake_root"])
    full = snapshot(spark, full_config["lake_root"])
    for table in full:
        # paths differ by folder only; compare file names
        assert [_names(r) for r in daily[table]] == [_names(r) for r in full[table]], table


def _names(row: tuple) -> tuple:
    return tuple(v.rsplit("/", 1)[-1] if isinstance(v, str) and v.startswith("file:") else v for v in row)


def test_the_planted_cases_really_happened(spark, lakes):
    daily_config, _, _ = lakes
    root = daily_config["lake_root"]
    sessions = lake.read_table(spark, root, tables.SILVER_SESSIONS)
    crossing = sessions.where("events = 2 AND to_date(session_start) != to_date(session_end)").count()
    assert crossing == 1  # user 4's session over midnight is one session
    reasons = {r["reason"]: r["count"] for r in lake.read_table(spark, root, tables.QUARANTINE_EVENTS)
               .groupBy("reason").count().collect()}
    assert reasons == {"duplicate": 1, "negative_price": 1, "unparseable_price": 1, "missing_event_time": 1}
    # the re-delivered file replaced its rows
    redone = lake.read_table(spark, root, tables.BRONZE_EVENTS).where(F.col("_source_file").endswith("2019-10-02.csv"))
    assert redone.count() == len(redelivered(write_day_files(None)[REDELIVERED_DAY]))
    # user 2's sessions are numbered 1..n without gaps after the late session was inserted
    numbers = sorted(r[1] for r in sessions.where(F.col("user_key").isNotNull())
                     .groupBy("user_key").agg(F.max("session_number") - F.count(F.lit(1))).collect())
    assert set(numbers) == {0}


def test_runs_are_recorded_with_the_versions_they_consumed(spark, lakes):
    daily_config, _, _ = lakes
    root = daily_config["lake_root"]
    runs = lake.read_table(spark, root, tables.OPS_JOB_RUNS).where("job = 'clean'").orderBy("ended_at").collect()
    assert len(runs) == DAYS
    consumed = [r.input_versions["bronze/events"] for r in runs]
    assert consumed == sorted(consumed) and len(set(consumed)) == DAYS
    assert ops.last_consumed(spark, root, "clean", tables.BRONZE_EVENTS) == \
        lake.table_version(spark, root, tables.BRONZE_EVENTS)


def test_another_key_is_refused_until_a_rekey(spark, lakes, tmp_path, monkeypatch, caplog):
    from ecomlake import config as cfg
    from ecomlake import privacy
    from ecomlake.config import DEVELOPMENT_KEY
    from ecomlake.errors import ConfigError
    from tests.conftest import TEST_SPARK_OVERRIDES

    _, full_config, _ = lakes
    root = str(tmp_path / "lake")
    shutil.copytree(full_config["lake_root"], root)
    config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES, lake=root)
    silver_path = tables.SILVER_EVENTS.path(root)
    properties = lake.table_properties(spark, silver_path)
    assert properties[privacy.FINGERPRINT_PROPERTY] == privacy.key_fingerprint(DEVELOPMENT_KEY)
    assert DEVELOPMENT_KEY.decode() not in str(properties)  # the fingerprint, never the key
    monkeypatch.delenv("ECOMLAKE_PSEUDONYM_KEY", raising=False)
    with caplog.at_level("WARNING", logger="ecomlake"):
        assert clean.run(spark, config)["mode"] == "none"
    assert "using the public local development key" in caplog.text  # on every run with it
    old_keys = {r[0] for r in lake.read_table(spark, root, tables.SILVER_EVENTS).select("user_key").distinct().collect()}

    monkeypatch.setenv("ECOMLAKE_PSEUDONYM_KEY", "another-key-0123456789")
    version = lake.table_version(spark, root, tables.SILVER_EVENTS)
    with pytest.raises(ConfigError, match=r"built with another pseudonymisation key .*clean --full-refresh --rekey"):
        clean.run(spark, config)
    with pytest.raises(ConfigError, match="--rekey .* needs --full-refresh"):
        clean.run(spark, config, rekey=True)
    assert lake.table_version(spark, root, tables.SILVER_EVENTS) == version  # nothing was written
    clean.run(spark, config, full_refresh=True, rekey=True)
    assert lake.table_properties(spark, silver_path)[privacy.FINGERPRINT_PROPERTY] == \
        privacy.key_fingerprint(b"another-key-0123456789")
    new_keys = {r[0] for r in lake.read_table(spark, root, tables.SILVER_EVENTS).select("user_key").distinct().collect()}
    assert len(new_keys) == len(old_keys) and not new_keys & old_keys
    assert clean.run(spark, config)["mode"] == "none"  # the new key is the recorded one now

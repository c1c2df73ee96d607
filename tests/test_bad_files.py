"""Bad files never block good ones: each bad file is set aside whole, with its reason, and the
other files of the batch go through; file names with spaces, %, # and non-ASCII letters are
replaced correctly when they grow."""
from __future__ import annotations

import gzip
import os

import pytest
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.cli import EXIT_QUARANTINED
from ecomlake.jobs import ingest
from ecomlake.rees46 import HEADER

pytestmark = pytest.mark.e2e

GOOD = "2019-10-01 00:00:{s:02d} UTC,view,1003,2053,electronics.smartphone,apple,489.07,{u},sess"


def good_lines(n: int, user: int = 5) -> list[str]:
    return [GOOD.format(s=i % 60, u=user + i) for i in range(n)]


def write_text(path, lines, encoding="utf-8"):
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


@pytest.fixture
def batch(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_text(incoming / "a_good.csv", [HEADER, *good_lines(4)])
    (incoming / "b_empty.csv").write_bytes(b"")
    write_text(incoming / "c_header_only.csv", [HEADER])
    write_text(incoming / "d_wrong_header.csv", ["when,what,who", *good_lines(2)])
    whole = gzip.compress(("\n".join([HEADER, *good_lines(3000)]) + "\n").encode())
    (incoming / "e_truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (incoming / "f_not_gzip.csv.gz").write_bytes(b"this is not gzip data\n" * 10)
    latin1 = good_lines(3, user=50)
    latin1[1] = latin1[1].replace("apple", "caf\u00e9")
    write_text(incoming / "g_latin1.csv", [HEADER, *latin1], encoding="latin-1")
    (incoming / "h_good.csv.gz").write_bytes(gzip.compress(("\n".join([HEADER, *good_lines(2, 90)]) + "\n").encode()))
    return incoming


def test_each_bad_file_is_set_aside_and_the_good_ones_go_through(spark, make_config, batch):
    config = make_config()
    root = config["lake_root"]
    result = ingest.run(spark, config, "rees46", str(batch))
    assert result["quarantined_files"] == 4
    files = {r.source_file.rsplit("/", 1)[1]: r.reason
             for r in lake.read_table(spark, root, tables.QUARANTINE_FILES).collect()}
    assert files == {"b_empty.csv": "empty_file", "d_wrong_header.csv": "wrong_header",
                     "e_truncated.csv.gz": "corrupt_compressed_file", "f_not_gzip.csv.gz": "corrupt_compressed_file"}
    detail = lake.read_table(spark, root, tables.QUARANTINE_FILES).where("reason = 'wrong_header'").head().detail
    assert "d_wrong_header.csv" in detail and "when,what,who" in detail
    bronze = lake.read_table(spark, root, tables.BRONZE_EVENTS)
    per_file = {r[0].rsplit("/", 1)[1]: r[1] for r in bronze.groupBy("_source_file").count().collect()}
    assert per_file == {"a_good.csv": 4, "g_latin1.csv": 2, "h_good.csv.gz": 2}
    # the Latin-1 line is quarantined with its reason and its bytes kept (decoded as ISO-8859-1)
    [bad] = lake.read_table(spark, root, tables.QUARANTINE_EVENTS).collect()
    assert (bad.reason, bad.brand) == ("invalid_utf8", "caf\u00e9")
    assert bronze.where(F.col("brand").contains("\ufffd")).count() == 0
    log = {r.source_file.rsplit("/", 1)[1]: (r.status, r.input_lines)
           for r in lake.read_table(spark, root, tables.BRONZE_INGEST_LOG).collect()}
    assert log["c_header_only.csv"] == ("ingested", 0)
    assert log["e_truncated.csv.gz"] == ("quarantined", 0)
    # a re-run finds nothing new; a fixed file is ingested and leaves quarantine/files
    assert ingest.run(spark, config, "rees46", str(batch))["files"] == 0
    write_text(batch / "d_wrong_header.csv", [HEADER, *good_lines(2, 70)])
    again = ingest.run(spark, config, "rees46", str(batch))
    assert (again["files"], again["bronze_rows"], again["quarantined_files"]) == (1, 2, 0)
    assert lake.read_table(spark, root, tables.QUARANTINE_FILES).count() == 3


def test_the_job_exits_with_the_quarantine_status(make_config, tmp_path, capsys):
    from ecomlake.jobs.ingest import main

    config = make_config()
    incoming = tmp_path / "small-batch"
    incoming.mkdir()
    write_text(incoming / "a_good.csv", [HEADER, *good_lines(2)])
    (incoming / "b_empty.csv").write_bytes(b"")
    code = main(["--source", "rees46", "--input", str(incoming), "--lake", config["lake_root"],
                 "--conf", "spark.master=local[2]"])
    assert code == EXIT_QUARANTINED
    assert "1 input file(s) quarantined whole: see quarantine/files" in capsys.readouterr().err


AWKWARD_NAMES = ("2019 Oct.csv", "100% done#1.csv", "Oktober-\u00e4\u00f6\u00fc.csv")


def test_grown_files_with_awkward_names_replace_their_rows(spark, make_config, tmp_path):
    config = make_config()
    root = config["lake_root"]
    incoming = tmp_path / "in"
    incoming.mkdir()
    paths = [incoming / name for name in AWKWARD_NAMES]
    for i, path in enumerate(paths):  # 20, 21, 22 good lines and a broken one
        write_text(path, [HEADER, *good_lines(20 + i, user=100 * i), "broken,line"])
    ingest.run(spark, config, "rees46", str(incoming))
    for i, path in enumerate(paths):  # each grows by 5 lines
        write_text(path, [HEADER, *good_lines(25 + i, user=100 * i), "broken,line"])
        os.utime(path, (os.stat(path).st_atime, os.stat(path).st_mtime + 10))
    result = ingest.run(spark, config, "rees46", str(incoming))
    assert (result["files"], result["bronze_rows"], result["quarantined_rows"]) == (3, 25 + 26 + 27, 3)
    bronze = lake.read_table(spark, root, tables.BRONZE_EVENTS)
    per_file = {r[0]: r[1] for r in bronze.groupBy("_source_file").count().collect()}
    assert per_file == {f"file:{path}": 25 + i for i, path in enumerate(paths)}
    quarantined = lake.read_table(spark, root, tables.QUARANTINE_EVENTS)
    assert sorted(r[0] for r in quarantined.select("_source_file").collect()) == sorted(f"file:{p}" for p in paths)

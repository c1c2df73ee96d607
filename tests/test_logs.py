"""Logs a platform can route: one line format (time, level, job, step, logger, message) on stderr,
the level from --log-level or logging.level, and one JSON summary line per run on stdout."""
import json
import logging
import math
import re
from datetime import date

import numpy as np
import pytest

from ecomlake import logs
from ecomlake.cli import job_parser, run_job
from ecomlake.jobs import ingest

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) (\S+) \[([^\]]*)\] (\S+): (.*)$")
demo_log = logging.getLogger("ecomlake.jobs.demo")


def demo_body(spark, config, args):
    demo_log.debug("a detail")
    with logs.log_step("count", demo_log):
        demo_log.info("counting %d rows", 3)
        with logs.log_step("write gold/demo", demo_log, announce=False):
            pass
    demo_log.info("outside any step")
    return {"rows": {("silver", "ok"): 3}, "share": float("nan"), "as_of": date(2019, 11, 17),
            "count": np.int64(7), "values": list(range(80))}


def run_demo(tmp_path, capsys, *args):
    code = run_job("demo", job_parser("demo", ""), demo_body,
                   ["--lake", str(tmp_path / "lake"), "--conf", "spark.master=local[2]", *args])
    out, err = capsys.readouterr()
    return code, out, [LINE.match(line) for line in err.splitlines()], err


def summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])["ecomlake_run"]


def test_lines_carry_time_level_job_and_step_and_the_run_ends_with_json(spark, tmp_path, capsys):
    code, out, lines, err = run_demo(tmp_path, capsys)
    assert code == 0 and all(lines), err
    ours = [(m[1], m[2], m[3], m[4], m[5]) for m in lines if m[4].startswith("ecomlake")]
    assert ours == [
        ("INFO", "demo", "count", "ecomlake.jobs.demo", "started"),
        ("INFO", "demo", "count", "ecomlake.jobs.demo", "counting 3 rows"),
        ("INFO", "demo", "count > write gold/demo", "ecomlake.jobs.demo", ours[2][4]),
        ("INFO", "demo", "count", "ecomlake.jobs.demo", ours[3][4]),
        ("INFO", "demo", "-", "ecomlake.jobs.demo", "outside any step"),
        ("INFO", "demo", "-", "ecomlake.cli", ours[5][4]),
    ]
    assert re.fullmatch(r"done in \d+\.\d s", ours[2][4]) and re.fullmatch(r"done in \d+\.\d s", ours[3][4])
    assert re.fullmatch(r"demo: done in \d+\.\d s", ours[5][4])
    run = summary(out)
    assert (run["job"], run["status"], run["exit_code"]) == ("demo", "succeeded", 0)
    assert run["seconds"] >= 0 and run["finished_at"].endswith("+00:00")
    # the result as plain JSON: tuple keys joined, NaN as null, dates as text, numpy as numbers,
    # long lists cut at 50
    assert run["result"] == {"rows": {"silver/ok": 3}, "share": None, "as_of": "2019-11-17", "count": 7,
                             "values": list(range(50))}


def test_the_level_comes_from_the_flag_else_the_config(spark, tmp_path, capsys):
    _, _, lines, _ = run_demo(tmp_path, capsys, "--log-level", "debug")
    assert ("DEBUG", "a detail") in [(m[1], m[5]) for m in lines]
    _, out, lines, _ = run_demo(tmp_path, capsys, "--conf", "logging.level=WARNING")
    assert [m for m in lines if m[4].startswith("ecomlake")] == []
    assert summary(out)["status"] == "succeeded"  # the summary line does not depend on the level
    _, _, lines, _ = run_demo(tmp_path, capsys, "--conf", "logging.level=WARNING", "--log-level", "INFO")
    assert "outside any step" in [m[5] for m in lines]


def test_a_bad_level_names_the_key(spark, tmp_path, capsys):
    code, out, _, err = run_demo(tmp_path, capsys, "--conf", "logging.level=LOUD")
    assert code == 2 and "logging.level" in err and "LOUD" in err
    assert summary(out)["status"] == "failed"
    with pytest.raises(SystemExit):
        run_demo(tmp_path, capsys, "--log-level", "LOUD")


def test_a_failed_run_logs_the_error_and_summarises_it(spark, tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    code = ingest.main(["--source", "rees46", "--input", str(missing), "--lake", str(tmp_path / "lake"),
                        "--conf", "spark.master=local[2]"])
    out, err = capsys.readouterr()
    assert code == 2
    error = [LINE.match(line) for line in err.splitlines() if " ERROR " in line]
    assert len(error) == 1 and error[0][2] == "ingest" and error[0][4] == "ecomlake.cli"
    message = f"input '{missing}' does not exist (no file matches it)"
    assert error[0][5] == f"ingest: error: {message}"
    run = summary(out)
    assert (run["status"], run["exit_code"], run["error"]) == ("failed", 2, message)


def test_jsonable_keeps_json_and_cuts_depth():
    assert logs.jsonable({"a": {"b": {"c": {"d": {"e": 1}}}}}) == {"a": {"b": {"c": {"d": "{'e': 1}"}}}}
    assert logs.jsonable({1: (1.5, math.inf)}) == {"1": [1.5, None]}

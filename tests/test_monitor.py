"""The monitor job on a hand-made lake: quiet days stay quiet; planted changes alert on exactly
their dates and columns; drift and decay of a model; the alert file and exit status."""
import json
import math
from datetime import date, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from ecomlake import lake, tables
from ecomlake.models import classify

START = date(2019, 10, 1)
PRICE_SHOCK, BOT_SURGE, RULE_BREACH = date(2019, 10, 22), date(2019, 10, 23), date(2019, 10, 22)
SILVER = ("event_time timestamp, event_date date, event_type string, product_id long, category_id long, "
          "category_code string, brand string, price double, user_key string, user_session string, "
          "_source_file string, _batch_id string, _ingested_at timestamp")


def day_events(day: date, i: int) -> list[tuple]:
    """20 users, one session of 5 views each (views 0, 2, 4 of a session in x at 10 or 11, the others
    in y at 50), user 0 views i % 3 more and buys one y; the price shock doubles x; the bot surge
    adds 10 users who view 30 times in one session; the rule breach is one y view at 5,000."""
    rows = []
    at = datetime(day.year, day.month, day.day, 12)
    x_price = (10.0 + i % 2) * (2 if day == PRICE_SHOCK else 1)
    sessions = [(f"u{user}", 5 + (i % 3 if user == 0 else 0)) for user in range(20)]
    sessions += [(f"bot{b}", 30) for b in range(10)] if day == BOT_SURGE else []
    for user, views in sessions:
        for view in range(views):
            category, price = ("x", x_price) if view % 5 in (0, 2, 4) else ("y", 50.0)
            rows.append(("view", category, price, user, f"s{user}-{i}"))
    rows.append(("purchase", "y", 50.0, "u0", f"su0-{i}"))
    if day == RULE_BREACH:
        rows.append(("view", "y", 5000.0, "u1", f"su1-{i}"))
    return [(at, day, kind, 1 if category == "x" else 2, 10 if category == "x" else 20, category, "acme", price,
             user, session, "f.csv", "b1", datetime(2019, 11, 1)) for kind, category, price, user, session in rows]


@pytest.fixture
def monitored_lake(spark, make_config):
    config = make_config()
    days = [START + timedelta(days=i) for i in range(24)]                      # 2019-10-01 .. 10-24
    events = spark.createDataFrame([r for i, d in enumerate(days) for r in day_events(d, i)], SILVER)
    lake.overwrite_table(events, config["lake_root"], tables.SILVER_EVENTS, partition_by=["event_date"])
    return config


def alerted(spark, root, as_of: str) -> set:
    rows = lake.read_table(spark, root, tables.GOLD_MONITORING).where(F.col("as_of_date") == as_of).where("alert")
    return {(r.monitored_date, r.check, r.column) for r in rows.collect()}


@pytest.mark.e2e
def test_monitor_flags_the_planted_days_and_columns_only(spark, monitored_lake, capsys):
    from ecomlake.jobs import monitor

    root = monitored_lake["lake_root"]
    base = ["--lake", root, "--conf", "monitor.min_history_days=10"]

    # Quiet: 2019-10-15 .. 10-21 alert on nothing; exit 0 and an alert file that says so.
    assert monitor.main(["--as-of", "2019-10-22", "--days", "7", *base]) == 0
    quiet = json.loads(lake.read_text_file(spark, f"{root}/ops/alerts/monitor_2019-10-22.json"))
    assert (quiet["status"], quiet["alert_count"], quiet["alerts"]) == ("ok", 0, [])
    checked = lake.read_table(spark, root, tables.GOLD_MONITORING).where(F.col("as_of_date") == "2019-10-22")
    metrics = {r.metric for r in checked.where(F.col("monitored_date") == "2019-10-21").collect()}
    assert {"rows", "rows:view", "rows:purchase", "users", "events_per_session", "median_price",
            "price_index", "price_index:x", "price_index:y", "null_share:brand", "late_share",
            "rule:price_positive", "rule:known_event_type"} <= metrics

    # 2019-10-15 .. 10-24 with one more rule: the price shock (price, 10-22), the rule it breaks
    # (10-22), the bot surge (rows, rows per type, events per session, 10-23), and nothing else:
    # 10 more users on top of 20 is within a count's Poisson noise (z = 10 / sqrt(20) = 2.2).
    rule = "monitor.rules.price_below_1000=price < 1000"
    assert monitor.main(["--as-of", "2019-10-25", "--days", "10", *base, "--conf", rule]) == 4
    expected = {(PRICE_SHOCK, "quality", "price"), (RULE_BREACH, "rule", "price_below_1000"),
                (BOT_SURGE, "quality", "*"), (BOT_SURGE, "quality", "event_type"),
                (BOT_SURGE, "quality", "user_session")}
    assert alerted(spark, root, "2019-10-25") == expected
    out = lake.read_table(spark, root, tables.GOLD_MONITORING).where(F.col("as_of_date") == "2019-10-25")
    surge = out.where((F.col("monitored_date") == BOT_SURGE) & (F.col("metric") == "rows")).first()
    assert (surge.value, surge.expected) == (20 * 5 + 1 + 1 + 300, 102.0)   # 10-09 .. 10-22 median (a 10-22 row more)
    # x's price on 10-22, 22, against its median daily price over the days before (10 on 11 days,
    # 11 on 10): an index of 2.2.
    shock = out.where((F.col("monitored_date") == PRICE_SHOCK) & (F.col("metric") == "price_index:x")).first()
    assert shock.value == pytest.approx(2.2) and shock.alert
    alert_file = json.loads(lake.read_text_file(spark, f"{root}/ops/alerts/monitor_2019-10-25.json"))
    assert alert_file["status"] == "alert" and alert_file["alert_count"] == len(out.where("alert").collect())

    # The report's monitoring section shows the newest run, and says where to look first.
    from ecomlake.report import build_report

    page, sections = build_report(spark, root)
    section = {s.key: s for s in sections}["monitoring"]
    assert section.skipped is None and section.images == 1
    assert "Look at 2 day(s) with data alerts first (2019-10-22 .. 2019-10-23: " in page

    # A rule that is not Spark SQL on silver/events is named, without a stack trace.
    assert monitor.main(["--as-of", "2019-10-25", *base, "--conf", "monitor.rules.bad=no_such_column > 1"]) == 2
    err = capsys.readouterr().err
    assert "monitor.rules.bad = 'no_such_column > 1' is not a condition on silver/events" in err
    assert "Traceback" not in err


@pytest.mark.e2e
def test_monitor_finds_a_drifted_feature_and_a_decayed_model(spark, monitored_lake):
    from ecomlake import runs
    from ecomlake.jobs import monitor

    root = monitored_lake["lake_root"]
    inputs = [*classify.LOG_SCALE, *classify.LINEAR]
    # Training snapshot 10-15: every input 1..100; today's snapshot 10-22: the same, but
    # `sessions` moved up by 200 (every value in the reference's top bin).
    schema = "user_key string, as_of_date date, " + ", ".join(f"{c} double" for c in inputs)
    reference = [(f"u{v}", date(2019, 10, 15), *[float(v)] * len(inputs)) for v in range(1, 101)]
    today = [(f"u{v}", date(2019, 10, 22), *[float(v) + (200 if c == "sessions" else 0) for c in inputs])
             for v in range(1, 101)]
    lake.overwrite_table(spark.createDataFrame(reference + today, schema), root, tables.GOLD_USER_FEATURES,
                         partition_by=["as_of_date"])
    run = runs.model_run("propensity", "logistic_regression", "2019-10-15", {}, {}, {"auc": 0.8},
                         model_path="/models/p")
    als = runs.model_run("recommend", "als", "2019-10-05", {"k": 20, "horizon_days": 7}, {}, {"ndcg@10": 0.5},
                         model_path="/models/r")
    runs.record(spark, root, [run, als])
    # Recommendations of 10-05: u0 gets products 1 and 3, u1 gets 3 and 4 (a popularity row for u2
    # is not the model's). From 10-05 to 10-11 each user views products 1 and 2: u0's NDCG@10 is
    # 1 / (1 + 1 / log2 3) = 0.6131 (one of its two hits, at rank 1), u1's 0: mean 0.3066.
    recs = [("u0", 1, 1, "als"), ("u0", 3, 2, "als"), ("u1", 3, 1, "als"), ("u1", 4, 2, "als"),
            ("u2", 1, 1, "popularity")]
    lake.overwrite_table(spark.createDataFrame([(*r[:3], 1.0, r[3], als["run_id"], date(2019, 10, 5)) for r in recs],
                                               "user_key string, product_id long, rank int, score double, "
                                               "source string, run_id string, as_of_date date"),
                         root, tables.GOLD_RECOMMENDATIONS, partition_by=["as_of_date"])
    # Scores on 10-15 (the first scored date) and 10-22, the same spread: no score drift. The
    # labels of 10-15 are in: positives scored 0.1 and 0.3, negatives 0.2 and 0.4, AUC 1/4.
    scores = [(f"u{v}", p, 1, run["run_id"], d) for d in (date(2019, 10, 15), date(2019, 10, 22))
              for v, p in enumerate([0.1, 0.2, 0.3, 0.4])]
    lake.overwrite_table(spark.createDataFrame(scores, "user_key string, probability double, decile int, "
                                               "run_id string, as_of_date date"),
                         root, tables.GOLD_PROPENSITY_SCORES, partition_by=["as_of_date"])
    labels = [(f"u{v}", bought, None, 14, date(2019, 10, 15)) for v, bought in enumerate([True, False, True, False])]
    lake.overwrite_table(spark.createDataFrame(labels, "user_key string, purchased_next boolean, churned boolean, "
                                               "horizon_days int, as_of_date date"),
                         root, tables.GOLD_USER_LABELS, partition_by=["as_of_date"])

    result = monitor.run(spark, monitored_lake, "2019-10-25", days=10)
    result_again = monitor.run(spark, monitored_lake, "2019-10-25", days=10)   # replaced, not added
    assert result_again["rows"] == result["rows"]
    out = lake.read_table(spark, root, tables.GOLD_MONITORING).where(F.col("as_of_date") == "2019-10-25")
    drift = {r.column: r for r in out.where(F.col("check") == "drift").collect()}
    assert set(drift) == {*inputs, "probability"}
    assert [c for c, r in drift.items() if r.alert] == ["sessions"]
    assert drift["sessions"].monitored_date == date(2019, 10, 22) and drift["sessions"].value > 5
    assert drift["probability"].value == 0.0 and drift["probability"].segment == "propensity"
    decay = {r.metric: r for r in out.where(F.col("check") == "decay").collect()}
    auc = decay["auc"]
    assert (auc.monitored_date, auc.value, auc.expected, auc.alert) == (date(2019, 10, 15), 0.25, 0.8, True)
    assert pytest.approx(auc.score) == 0.55
    ndcg = decay["ndcg@10"]
    assert (ndcg.monitored_date, ndcg.segment, ndcg.expected, ndcg.alert) == (date(2019, 10, 5), "recommend", 0.5, True)
    assert ndcg.value == pytest.approx(0.5 / (1 + 1 / math.log2(3)), abs=1e-9)
    assert json.loads(ndcg.detail)["users"] == 2

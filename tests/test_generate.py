import json
from datetime import date, timedelta

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from ecomlake import generate as gen
from ecomlake import rees46


def lines_of(spark, p, user_partitions=None):
    users = gen.users(spark, p)
    if user_partitions:
        users = users.repartition(user_partitions)
    users = gen.scaled_users(users, p, gen.rate_scale(users, p))
    return gen.csv_lines(gen.events(gen.sessions(users, p), p), p)


def test_same_seed_same_lines_whatever_the_partitioning(spark):
    p = gen.GeneratorParams(events=3000, seed=7)
    a = sorted(r.line for r in lines_of(spark, p).collect())
    b = sorted(r.line for r in lines_of(spark, p, user_partitions=5).collect())
    c = sorted(r.line for r in lines_of(spark, gen.GeneratorParams(events=3000, seed=8)).collect())
    assert a == b
    assert a != c
    assert abs(len(a) - 3000) < 0.15 * 3000


def test_lines_have_the_rees46_shape(spark):
    p = gen.GeneratorParams(events=3000, seed=7, dirty_fraction=0.0)
    rows = lines_of(spark, p).collect()
    assert all(r.dirty_kind is None for r in rows)
    fields = [r.line.split(",") for r in rows]
    assert all(len(f) == 9 for f in fields)
    assert {f[1] for f in fields} <= {"view", "cart", "remove_from_cart", "purchase"}
    assert all(f[0].endswith(" UTC") and f[0] >= "2019-10-01" and f[0] < "2019-12-01" for f in fields)
    assert {r.file for r in rows} == {"2019-Oct", "2019-Nov"} == set(p.file_labels())


def test_every_dirty_kind_is_planted(spark):
    p = gen.GeneratorParams(events=5000, seed=3, dirty_fraction=0.05)
    kinds = {r.dirty_kind: r["count"] for r in lines_of(spark, p).groupBy("dirty_kind").count().collect()}
    assert set(kinds) - {None} == set(gen.DIRTY_KINDS)


def test_bots_behave_as_planted(spark):
    p = gen.GeneratorParams(events=20000, seed=11, fraud_user_fraction=0.1)
    users = gen.users(spark, p)
    users = gen.scaled_users(users, p, gen.rate_scale(users, p))
    events = gen.events(gen.sessions(users, p), p)
    order = Window.partitionBy("session_key").orderBy("event_index")
    gaps = (events.withColumn("gap", F.col("epoch_second") - F.lag("epoch_second").over(order))
            .groupBy("kind").agg(F.max("gap").alias("max_gap"), F.min("gap").alias("min_gap"),
                                 F.percentile_approx("gap", 0.5).alias("median_gap"),
                                 F.avg(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).alias("buy_share"))
            .collect())
    by_kind = {r.kind: r for r in gaps}
    # gap g per session, jitter up to g/2 per event: consecutive events are g/2 .. 3g/2 apart
    assert by_kind["scraper"].max_gap <= 3 and by_kind["scraper"].buy_share == 0
    assert by_kind["carder"].max_gap <= 10 and by_kind["carder"].buy_share == pytest.approx(1 / 3)
    assert by_kind["normal"].min_gap >= 3 and by_kind["normal"].median_gap > 30
    # carders are new accounts: they appear only in the last three weeks
    first_carder = events.where("kind = 'carder'").agg(F.min("epoch_second")).head()[0]
    assert first_carder >= p.start_epoch + (p.days - 21) * 86400


def test_hidden_fraud_behaves_as_planted_and_leaves_every_other_user_alone(spark):
    plain = gen.GeneratorParams(events=20000, seed=11)
    hidden = gen.GeneratorParams(events=20000, seed=11, hidden_fraud_fraction=0.3)

    def generated(p):
        users = gen.users(spark, p)
        users = gen.scaled_users(users, p, gen.rate_scale(users, p))
        return users, gen.events(gen.sessions(users, p), p)

    users, events = generated(hidden)
    kinds = {r.kind: r["count"] for r in users.groupBy("kind").count().collect()}
    assert set(kinds) == {"normal", "scraper", "carder", "takeover", "slow_scraper", "bulk_buyer"}
    assert all(80 <= kinds[k] <= 120 for k in ("takeover", "slow_scraper", "bulk_buyer"))  # 10 % of 1,000 each
    # Every user of another kind has exactly the events it has in the lake without hidden fraud.
    others = users.where(~F.col("kind").isin("takeover", "slow_scraper", "bulk_buyer")).select("user_id")
    key = ["user_id", "epoch_second", "event_type", "product_id", "price"]
    with_hidden = events.join(others, "user_id").select(*key)
    without = generated(plain)[1].join(others, "user_id").select(*key)
    assert with_hidden.count() == without.count() > 10000
    assert with_hidden.exceptAll(without).count() == 0

    order = Window.partitionBy("session_key").orderBy("event_index")
    by_user = events.join(users.select("user_id", F.col("kind").alias("user_kind"), "takeover_day"), "user_id")
    by_user = (by_user.withColumn("gap", F.col("epoch_second") - F.lag("epoch_second").over(order))
               .withColumn("day", F.floor((F.col("epoch_second") - hidden.start_epoch) / 86400)))
    stats = {r.user_kind: r for r in by_user.groupBy("user_kind").agg(
        F.min("gap").alias("min_gap"), F.min("day").alias("first_day"),
        F.avg((F.col("event_type") == "purchase").cast("double")).alias("buy_share"),
        F.sum((F.col("event_type") == "cart").cast("int")).alias("carts")).collect()}
    # Slow scrapers only view, at human pace (6-25 s, jittered); bulk buyers are new accounts that
    # buy every third event like card testers, but 20-80 s apart.
    assert stats["slow_scraper"].carts == 0 and stats["slow_scraper"].min_gap >= 3
    assert stats["bulk_buyer"].buy_share == pytest.approx(1 / 3) and stats["bulk_buyer"].min_gap >= 10
    assert stats["bulk_buyer"].first_day >= hidden.days - 21
    # A taken-over account: the owner's sessions all before the takeover day, then 2-5 sessions of
    # the new holder, each buying from the card testers' categories.
    takeover = by_user.where(F.col("user_kind") == "takeover")
    assert takeover.where((F.col("kind") == "normal") & (F.col("day") >= F.col("takeover_day"))).count() == 0
    assert takeover.where((F.col("kind") == "takeover") & (F.col("day") < F.col("takeover_day"))).count() == 0
    holder = (takeover.where(F.col("kind") == "takeover").groupBy("user_id")
              .agg(F.countDistinct("session_key").alias("sessions"),
                   F.sum((F.col("event_type") == "purchase").cast("int")).alias("purchases"),
                   F.collect_set(F.when(F.col("event_type") == "purchase", F.col("category_code"))).alias("bought"))
              .collect())
    assert len(holder) == kinds["takeover"]
    assert all(2 <= r.sessions <= 5 and r.purchases == r.sessions for r in holder)
    carder_codes = {gen.CATEGORIES[i][0] for i in gen.CARDER_CATEGORIES}
    assert set().union(*(r.bought for r in holder)) == carder_codes


def test_weekly_seasonality_is_planted(spark):
    p = gen.GeneratorParams(events=50000, seed=5)
    users = gen.users(spark, p)
    users = gen.scaled_users(users, p, gen.rate_scale(users, p))
    by_dow = {r.dow: r["count"] for r in gen.sessions(users, p)
              .withColumn("dow", F.dayofweek(F.timestamp_seconds(F.col("start_second") + p.start_epoch)))
              .groupBy("dow").count().collect()}
    saturday, tuesday = by_dow[7], by_dow[3]  # Spark: 1 = Sunday
    assert saturday > 1.15 * tuesday  # planted: (1 + 0.14) / (1 - 0.10) = 1.27


def test_params_are_validated():
    with pytest.raises(ValueError, match="events must be at least 1000"):
        gen.GeneratorParams(events=10)
    with pytest.raises(ValueError, match="dirty_fraction"):
        gen.GeneratorParams(dirty_fraction=0.9)
    assert gen.GeneratorParams(start_date="2019-10-01", days=61).file_labels() == ["2019-Oct", "2019-Nov"]
    daily = gen.GeneratorParams(start_date="2019-10-30", days=14).file_labels(daily=True)
    assert len(daily) == 14 and daily[:3] == ["2019-10-30", "2019-10-31", "2019-11-01"] and daily[-1] == "2019-11-12"
    assert date.fromisoformat(gen.GeneratorParams().start_date) == date(2019, 10, 1)


def test_a_converted_session_buys_the_product_whose_price_set_its_odds(spark):
    p = gen.GeneratorParams(events=5000, seed=5)
    users = gen.users(spark, p)
    sessions = gen.sessions(gen.scaled_users(users, p, gen.rate_scale(users, p)), p)
    bought = (gen.events(sessions, p).where("kind = 'normal' AND event_type = 'purchase'")
              .select("session_key", "product_id"))
    planned = sessions.where("kind = 'normal' AND converted").select(
        "session_key", (F.col("last_product") + 1_000_000).alias("planned_product"))
    joined = bought.join(planned, "session_key").collect()
    assert len(joined) > 20
    assert all(r.product_id == r.planned_product for r in joined)


def _csv_names(output):
    return sorted(f.name for f in (output / "events").iterdir() if f.suffix == ".csv" and not f.name.startswith("."))


def _data_lines(folder, names):
    """The lines of these files in this order, each file's header checked and dropped."""
    out = []
    for name in names:
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        assert lines[0] == rees46.HEADER
        out += lines[1:]
    return out


def test_daily_files_hold_the_monthly_lines_one_file_per_day(spark, make_config, tmp_path):
    from ecomlake.jobs import generate as job

    # Two weeks across a month's end; dirty timestamps too, to check where they land.
    settings = ("generate.start_date='2019-10-25'", "generate.days=14", "generate.dirty_fraction=0.05")
    config = make_config(*settings)
    monthly_dir, daily_dir = tmp_path / "monthly", tmp_path / "daily"
    monthly = job.run(spark, config, output=str(monthly_dir), events=2000, seed=3)
    daily = job.run(spark, config, output=str(daily_dir), events=2000, seed=3, daily=True)

    days = [(date(2019, 10, 25) + timedelta(days=d)).isoformat() for d in range(14)]
    assert (monthly["layout"], monthly["files"]) == ("monthly", ["2019-Oct.csv", "2019-Nov.csv"])
    assert (daily["layout"], daily["files"]) == ("daily", [f"{d}.csv" for d in days])
    assert _csv_names(daily_dir) == daily["files"]
    # The same lines, line for line and in the same order: a day's file is its month cut at midnight.
    lines = _data_lines(daily_dir / "events", daily["files"])
    assert lines == _data_lines(monthly_dir / "events", monthly["files"])
    assert len(lines) == daily["data_lines"] == monthly["data_lines"] > 1500
    assert daily["dirty_rows"] == monthly["dirty_rows"] and daily["dirty_rows"]["future_event"] > 0
    for day in days:
        for line in _data_lines(daily_dir / "events", [f"{day}.csv"]):
            event_time = line.split(",")[0]
            # future_event rows carry the year 2099 on their day; bad_timestamp rows a fixed bad text
            assert event_time[:11] in (f"{day} ", f"2099{day[4:]} ", "2019-13-45 "), (day, line)

    # Same parameters and layout (here from config generate.daily): the files are left untouched.
    mtimes = {f.name: f.stat().st_mtime_ns for f in (daily_dir / "events").iterdir()}
    assert job.run(spark, make_config(*settings, "generate.daily=true"), output=str(daily_dir), events=2000,
                   seed=3) == daily
    assert {f.name: f.stat().st_mtime_ns for f in (daily_dir / "events").iterdir()} == mtimes
    # The other layout does not count as up to date: a run with it would replace the files.
    params = job.params_from(config, events=2000, seed=3)
    assert job.existing_truth(spark, str(daily_dir), params, daily=False) is None
    assert job.existing_truth(spark, str(monthly_dir), params, daily=True) is None
    assert job.existing_truth(spark, str(monthly_dir), params, daily=False) == monthly
    # Output written before a parameter existed had that parameter's default: still up to date;
    # asking for another value of it is not.
    truth_file = monthly_dir / "_ground_truth" / "generator.json"
    older = json.loads(truth_file.read_text())
    del older["params"]["hidden_fraud_fraction"]
    truth_file.write_text(json.dumps(older))
    (truth_file.parent / ".generator.json.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old text
    assert job.existing_truth(spark, str(monthly_dir), params, daily=False) == older
    hidden = job.params_from(make_config(*settings, "generate.hidden_fraud_fraction=0.03"), events=2000, seed=3)
    assert job.existing_truth(spark, str(monthly_dir), hidden, daily=False) is None


def test_change_points_are_planted_where_the_truth_says(spark):
    """The bot surge multiplies the scrapers' sessions on its 3 days only; the price shock puts
    the headphones at 1.4 times their price on its 5 days only; other users and categories keep
    every session and price they had without change points."""
    base = gen.GeneratorParams(events=20000, seed=5, days=30, fraud_user_fraction=0.1)
    planted = gen.GeneratorParams(**{**base.__dict__, "change_points": True})
    assert (list(planted.bot_surge_days), list(planted.price_shock_days)) == ([18, 19, 20], [24, 25, 26, 27, 28])

    def events(p):
        users = gen.users(spark, p)
        return gen.events(gen.sessions(gen.scaled_users(users, p, gen.rate_scale(users, p)), p), p).withColumn(
            "day", F.floor((F.col("epoch_second") - p.start_epoch) / 86400).cast("int"))

    before, after = events(base).cache(), events(planted).cache()
    scraper_days = {kind: {r.day: r["count"] for r in e.where(F.col("kind") == "scraper").select(
        "day", "session_key").distinct().groupBy("day").count().collect()} for kind, e in (("before", before),
                                                                                             ("after", after))}
    surge = sum(scraper_days["after"].get(d, 0) for d in planted.bot_surge_days)
    usual = sum(scraper_days["before"].get(d, 0) for d in planted.bot_surge_days)
    assert surge > 5 * usual > 0                                  # x10 planted; many more sessions
    others = lambda e: e.where(F.col("kind") != "scraper").select("session_key", "event_index", "price")  # noqa: E731
    shock = F.col("category_code") == gen.CATEGORIES[gen.PRICE_SHOCK_CATEGORY][0]
    on_shock_days = F.col("day").between(24, 28)
    # Outside the shock nothing differs (non-scraper events are the same rows).
    assert others(before.where(~(shock & on_shock_days))).exceptAll(others(after.where(~(shock & on_shock_days)))).count() == 0
    ratio = (before.where(shock & on_shock_days).select("session_key", "event_index", F.col("price").alias("p0"))
             .join(after.select("session_key", "event_index", F.col("price").alias("p1")), ["session_key", "event_index"])
             .select(F.min(F.col("p1") / F.col("p0")).alias("low"), F.max(F.col("p1") / F.col("p0")).alias("high"),
                     F.count(F.lit(1)).alias("n")).first())
    assert ratio.n > 0 and 1.39 < ratio.low <= ratio.high < 1.41   # rounding to cents aside
    kinds = [c["kind"] for c in gen.change_points_truth(planted)]
    assert kinds == ["card_testers_arrive", "bot_surge", "price_shock"]
    assert gen.change_points_truth(planted)[1]["dates"] == ["2019-10-19", "2019-10-20", "2019-10-21"]
    assert [c["kind"] for c in gen.change_points_truth(base)] == ["card_testers_arrive"]


def test_regions_plant_a_customer_master_and_three_regional_differences(spark):
    """With regions on, users north and central keep every session and purchase they had; south
    buys more in its promotion week only (the same sessions, never fewer purchases); west comes
    more often at weekends; every user has one customer record in its region, near a city of it."""
    base = gen.GeneratorParams(events=20000, seed=5, days=30)
    planted = gen.GeneratorParams(**{**base.__dict__, "regions": True})
    promo = list(planted.region_promo_days)
    assert promo == [15, 16, 17, 18, 19, 20, 21]

    def sessions(p):
        users = gen.users(spark, p)
        return gen.sessions(gen.scaled_users(users, p, gen.rate_scale(users, p)), p)

    users = gen.users(spark, planted).select("user_index", "region").cache()
    before = sessions(base).select("session_key", "user_index", "day", F.col("converted").alias("before"))
    after = sessions(planted).select("session_key", "user_index", "day", F.col("converted").alias("after"))
    joined = before.join(after, ["session_key", "user_index", "day"], "full").join(users, "user_index").cache()
    by_region = {r.region: r for r in joined.groupBy("region").agg(
        F.sum(F.col("before").isNull().cast("int")).alias("new"), F.sum(F.col("after").isNull().cast("int")).alias("gone"),
        F.sum((F.col("before") != F.col("after")).cast("int")).alias("changed"),
        F.sum((F.col("before") & ~F.col("after")).cast("int")).alias("lost"),
        F.sum((F.col("after") & ~F.col("before") & ~F.col("day").isin(promo)).cast("int")).alias("gained_outside"),
        F.sum((F.col("after") & ~F.col("before")).cast("int")).alias("gained")).collect() if r.region}
    for region in ("north", "central"):
        assert (by_region[region].new, by_region[region].gone, by_region[region].changed) == (0, 0, 0), region
    south = by_region["south"]
    assert (south.new, south.gone, south.lost, south.gained_outside) == (0, 0, 0, 0) and south.gained > 0
    assert by_region["east"].changed > 0 and by_region["east"].new == 0     # its buyers answer prices harder
    weekend = set(planted.weekend_days())
    west = (sessions(planted).join(users.where(F.col("region") == "west"), "user_index")
            .select(F.avg(F.col("day").isin(*weekend).cast("double"))).first()[0])
    west_before = (sessions(base).join(users.where(F.col("region") == "west"), "user_index")
                   .select(F.avg(F.col("day").isin(*weekend).cast("double"))).first()[0])
    assert west > west_before + 0.04

    master = gen.customers(gen.users(spark, planted), planted).cache()
    assert master.count() == planted.users == master.select("user_id").distinct().count()
    shares = {r.region: r["count"] / planted.users for r in master.groupBy("region").count().collect()}
    assert shares == pytest.approx({name: share for name, share, _ in gen.REGIONS}, abs=0.05)
    towns = {name: towns for name, _, towns in gen.REGIONS}
    for r in master.collect():
        lat, lon = next((la, lo) for c, la, lo in towns[r.region] if c == r.city)
        assert abs(r.latitude - lat) <= gen.CITY_JITTER_DEGREES + 1e-9 and abs(r.longitude - lon) <= 0.05 + 1e-9
        assert r.signup_date <= date(2019, 10, 30)


def test_the_generate_job_writes_the_customer_master_with_its_dirty_rows(spark, make_config):
    from ecomlake import lake
    from ecomlake.jobs import generate as job

    config = make_config("generate.regions=true", "generate.dirty_fraction=0.05")
    truth = job.run(spark, config, events=3000, seed=4)
    regions = truth["regions"]
    lines = lake.read_text_file(spark, f"{config['generate']['output']}/customers/customers.csv").splitlines()
    assert lines[0] == "user_id,signup_date,region,city,latitude,longitude"
    assert len(lines) - 1 == regions["lines"] == 3000 // 20 + regions["dirty_rows"]["duplicate_customer"]
    assert regions["expected_quarantine"] == {gen.CUSTOMER_DIRTY_KINDS[k]: n for k, n in regions["dirty_rows"].items()}
    assert sum(regions["dirty_rows"].values()) > 0
    assert sum(1 for line in lines[1:] if line.split(",")[2] == "") == regions["dirty_rows"]["missing_region"]
    assert regions["promotion_week"]["region"] == "south" and len(regions["promotion_week"]["dates"]) == 7

"""Differentially private releases: bounding, noise of the promised scale, the budget ledger."""
import json
import statistics
from datetime import date

import pytest
from pyspark.sql import functions as F

from ecomlake import dp, lake, tables

CELLS = "user_key string, event_date string, category string, step string"
# Two days, two categories. u1 views and buys electronics on day 1; u2 views electronics on day 1
# and carts it on day 2; u3 views apparel on both days; the heavy user h reaches 6 cells.
EVENTS = [("u1", "2019-11-01", "view", "electronics.phone"), ("u1", "2019-11-01", "view", "electronics.phone"),
          ("u1", "2019-11-01", "purchase", "electronics.phone"),
          ("u2", "2019-11-01", "view", "electronics.audio"), ("u2", "2019-11-02", "cart", "electronics.audio"),
          ("u3", "2019-11-01", "view", "apparel.shoes"), ("u3", "2019-11-02", "view", "apparel.shoes"),
          ("u3", "2019-11-02", "remove_from_cart", "apparel.shoes"),
          ("h", "2019-11-01", "view", "electronics.phone"), ("h", "2019-11-01", "cart", "electronics.phone"),
          ("h", "2019-11-01", "purchase", "electronics.phone"), ("h", "2019-11-02", "view", "apparel.shoes"),
          ("h", "2019-11-02", "cart", "apparel.shoes"), ("h", "2019-11-02", "purchase", "apparel.shoes"),
          ("u1", "2019-11-03", "view", "electronics.phone")]   # on as_of: outside the window


def events_frame(spark):
    rows = [(user, date.fromisoformat(day), kind, code) for user, day, kind, code in EVENTS]
    return spark.createDataFrame(rows, "user_key string, event_date date, event_type string, category_code string")


def test_cells_are_counted_once_per_user_and_bounded(spark):
    cells = dp.funnel_cells(events_frame(spark), "2019-11-01", "2019-11-03")
    assert cells.count() == 12      # u1: 2, u2: 2, u3: 2 (a removal is no funnel step), h: 6; none on as_of
    exact = {(str(r.event_date), r.category): (r.viewers, r.carters, r.buyers, r.cart_rate, r.purchase_rate)
             for r in dp.exact_funnel_table(cells).collect()}
    assert exact == {("2019-11-01", "electronics"): (3, 1, 2, 0.3333, 0.6667),
                     ("2019-11-01", "apparel"): (1, None, None, None, None),
                     ("2019-11-02", "electronics"): (None, 1, None, None, None),
                     ("2019-11-02", "apparel"): (2, 1, 1, 0.5, 0.5)}
    bound = dp.users_over_bound(cells, 2).first()
    assert (bound.users, bound.over_bound, bound.cells, bound.cells_kept) == (4, 1, 12, 2 + 2 + 2 + 2)

    # With a huge epsilon the noise is far below 0.5: the rounded counts are the bounded counts.
    keys = dp.public_cells(dp.window_days("2019-11-03", 2), ["apparel", "electronics", "unknown"])
    assert len(keys) == 2 * 3 * 3
    counts = dp.noisy_cell_counts(cells, keys, epsilon=1e6, max_cells=2)
    got = {(r.event_date, r.category, r.step): round(r.users) for r in counts.collect()}
    assert set(got) == set(keys)                     # every public cell, reached or not
    assert got[("2019-11-01", "unknown", "view")] == 0
    assert sum(got.values()) == 8                    # u1 2 + u2 2 + u3 2 + h bounded to 2 (of 6)
    assert got[("2019-11-02", "electronics", "cart")] == 1                # u2's: under the bound, kept
    h_cells = {("2019-11-01", "electronics", step) for step in dp.FUNNEL_STEPS} | {
        ("2019-11-02", "apparel", step) for step in dp.FUNNEL_STEPS}
    others = {("2019-11-01", "electronics", "view"): 2, ("2019-11-01", "electronics", "purchase"): 1,
              ("2019-11-01", "apparel", "view"): 1, ("2019-11-02", "apparel", "view"): 1}
    assert sum(got[key] - others.get(key, 0) for key in h_cells) == 2    # h kept 2 of their 6 cells


def test_the_noise_has_the_scale_epsilon_promises(spark):
    """Laplace noise of scale b = max_cells / epsilon has mean |noise| = b. 900 empty public cells
    at epsilon 1 and max_cells 3: b = 3, and the mean of 900 |noise| values has a standard error
    of b / 30 = 0.1, so it lies within 2.6 .. 3.4 unless something is off by more than 4 errors
    (at epsilon 2 it would be 1.5, at max_cells 1 it would be 1)."""
    cells = spark.createDataFrame([("u1", "2000-01-01", "x", "view")], CELLS)
    keys = [(f"2000-01-{d:02d}", f"c{c}", step) for d in range(2, 32) for c in range(10) for step in dp.FUNNEL_STEPS]
    assert len(keys) == 900
    noise = [abs(r.users) for r in dp.noisy_cell_counts(cells, keys, epsilon=1.0, max_cells=3).collect()]
    assert len(noise) == 900
    assert dp.laplace_scale(1.0, 3) == 3.0
    assert 2.6 < statistics.fmean(noise) < 3.4


def small_lake(spark, make_config, *overrides):
    config = make_config(*overrides)
    root = config["lake_root"]
    lake.append_table(events_frame(spark), root, tables.SILVER_EVENTS)
    products = spark.createDataFrame([(1, "electronics.phone"), (2, "apparel.shoes"), (3, "kids.toys")],
                                     "product_id long, category_code string")
    lake.append_table(products, root, tables.BRONZE_PRODUCTS)
    return config


@pytest.mark.e2e
def test_release_job_spends_the_budget_once_and_refuses_past_it(spark, make_config, capsys):
    from ecomlake.jobs import release

    config = small_lake(spark, make_config, "release.total_epsilon=300000", "release.max_cells_per_user=6")
    root = config["lake_root"]
    first = release.run(spark, config, "daily_funnel", "2019-11-03", days=2, epsilon=200000.0)
    assert (first["new"], first["epsilon_spent"], first["epsilon_left"]) == (True, 200000.0, 100000.0)
    table = lake.read_table(spark, root, tables.GOLD_DP_DAILY_FUNNEL)
    # The catalogue's categories (kids included, though nobody visited it) and 'unknown', per day.
    assert first["rows"] == table.count() == 2 * 4
    rows = {(str(r.event_date), r.category): (r.viewers, r.carters, r.buyers, r.purchase_rate)
            for r in table.collect()}
    assert rows[("2019-11-01", "electronics")] == (3, 1, 2, 0.6667)       # bound 6: nobody is cut
    assert rows[("2019-11-02", "kids")] == (0, 0, 0, None)
    assert table.select(F.max("noise_scale")).first()[0] == 6 / 200000.0

    again = release.run(spark, config, "daily_funnel", "2019-11-03", days=2, epsilon=200000.0)
    assert (again["new"], again["epsilon_spent"]) == (False, 200000.0)    # stored numbers, nothing spent
    ledger = lake.read_table(spark, root, tables.OPS_PRIVACY_LEDGER)
    assert ledger.count() == 1

    # Past the budget: a message and exit status 2 (no stack trace), and nothing written.
    args = ["daily_funnel", "--as-of", "2019-11-03", "--days", "1", "--epsilon", "150000",
            "--lake", root, "--conf", "release.total_epsilon=300000", "--conf", "release.max_cells_per_user=6"]
    assert release.main(args) == 2
    err = capsys.readouterr().err
    assert ("release refused: it costs epsilon 150000, and 200000 of the budget release.total_epsilon = 300000 "
            "on silver/events is spent (1 release(s) in ops/privacy_ledger); 100000 is left") in err
    assert "Traceback" not in err
    assert ledger.count() == 1 and table.count() == 8

    # A run that died after its ledger row: the next run writes the numbers and spends nothing more.
    params = {"days": 1, "epsilon": 100000.0, "max_cells_per_user": 6}
    orphan_id = release.runs.make_run_id("release", "daily_funnel", "2019-11-03", params)
    lake.append_table(spark.createDataFrame(
        [(orphan_id, "daily_funnel", "silver/events", date(2019, 11, 2), date(2019, 11, 3), 100000.0, 0.0, 6, "r",
          None)], release.LEDGER_SCHEMA), root, tables.OPS_PRIVACY_LEDGER)
    completed = release.run(spark, config, "daily_funnel", "2019-11-03", days=1, epsilon=100000.0)
    assert (completed["new"], completed["epsilon_spent"], completed["rows"]) == (True, 300000.0, 4)
    assert ledger.count() == 2


def test_regional_noise_splits_epsilon_between_units_and_revenue(spark):
    """Units and revenue each get epsilon / 2: at epsilon 2, 3 cells per user, 1 unit per cell and
    prices clamped to 10, the Laplace scales are 3 x 1 / 1 = 3 units and 3 x 1 x 10 / 1 = 30 of
    revenue. Over 900 empty cells the mean |noise| has a standard error of b / 30, so it lies
    within 0.87 b .. 1.13 b unless something is off by 4 errors (the whole epsilon on one metric
    would halve that metric's scale)."""
    purchases = spark.createDataFrame([("u1", "2000-01-01", "north", "x", 5.0)],
                                      "user_key string, event_date string, region string, category string, "
                                      "price double")
    keys = [(f"2000-01-{d:02d}", f"r{r}", f"c{c}") for d in range(2, 32) for r in range(3) for c in range(10)]
    assert len(keys) == 900
    assert dp.regional_scales(2.0, 3, 1, 10.0) == {"units": 3.0, "revenue": 30.0}
    rows = dp.noisy_regional_demand(purchases, keys, epsilon=2.0, max_cells=3, max_units=1, max_price=10.0).collect()
    assert len(rows) == 900
    assert 2.6 < statistics.fmean(abs(r.units) for r in rows) < 3.4
    assert 26 < statistics.fmean(abs(r.revenue) for r in rows) < 34


@pytest.mark.e2e
def test_regional_demand_release_bounds_each_user_and_shares_the_budget(spark, make_config, capsys):
    """Window 11-01..11-02, as of 11-03; bounds 2 cells a user, 2 units a cell, prices up to
    1,000; epsilon 1e8, so the noise (scales 8e-8 units, 8e-5 of
    revenue) vanishes in the rounding and the table is the bounded demand:
    - u1 (north) buys 3 phones at 100 on 11-01: 2 units a cell at most -> 2 units, 200;
    - u2 (south) buys apparel at 2,000 on 11-02: the price is clamped to 1,000;
    - h (region 'mars', not public -> 'other') buys in 3 cells, 10 each: 2 cells kept at random;
    - u3 (no customer record -> 'other') buys a toy at 5 on 11-01; u1's purchase on 11-03 is out."""
    from ecomlake.jobs import release

    rows = [("u1", "2019-11-01", "purchase", "electronics.phone", 100.0)] * 3 + [
        ("u1", "2019-11-01", "view", "electronics.phone", 100.0),
        ("u2", "2019-11-02", "purchase", "apparel.shoes", 2000.0),
        ("h", "2019-11-01", "purchase", "electronics.phone", 10.0),
        ("h", "2019-11-02", "purchase", "electronics.phone", 10.0),
        ("h", "2019-11-02", "purchase", "apparel.shoes", 10.0),
        ("u3", "2019-11-01", "purchase", "kids.toys", 5.0),
        ("u1", "2019-11-03", "purchase", "electronics.phone", 100.0)]
    bounds = ["release.regional_max_cells_per_user=2", "release.max_units_per_cell=2", "release.max_price=1000",
              "release.regional_grain=day"]
    config = make_config("release.total_epsilon=150000000", *bounds)
    root = config["lake_root"]
    events = spark.createDataFrame([(u, date.fromisoformat(d), k, c, p) for u, d, k, c, p in rows],
                                   "user_key string, event_date date, event_type string, category_code string, "
                                   "price double")
    lake.append_table(events, root, tables.SILVER_EVENTS)
    products = spark.createDataFrame([(1, "electronics.phone"), (2, "apparel.shoes"), (3, "kids.toys")],
                                     "product_id long, category_code string")
    lake.append_table(products, root, tables.BRONZE_PRODUCTS)
    args = ["regional_demand", "--as-of", "2019-11-03", "--days", "2", "--epsilon", "100000000", "--lake", root,
            "--conf", "release.total_epsilon=150000000", *(x for b in bounds for x in ("--conf", b))]
    assert release.main(args) == 2       # no customer master yet: a message, nothing spent
    assert "release regional_demand needs silver/customers" in capsys.readouterr().err
    assert not lake.table_exists(spark, tables.OPS_PRIVACY_LEDGER.path(root))

    customers = spark.createDataFrame([("u1", "north"), ("u2", "south"), ("h", "mars")],
                                      "user_key string, region string")
    lake.append_table(customers, root, tables.SILVER_CUSTOMERS)
    out = release.run(spark, config, "regional_demand", "2019-11-03", days=2, epsilon=1e8)
    table = lake.read_table(spark, root, tables.GOLD_DP_REGIONAL_DEMAND)
    # 2 days x (5 public regions + other) x (3 catalogue categories + unknown)
    assert out["rows"] == table.count() == 2 * 6 * 4
    got = {(str(r.event_date), r.region, r.category): (r.units, r.revenue) for r in table.collect()}
    assert got[("2019-11-01", "north", "electronics")] == (2, 200.0)
    assert got[("2019-11-02", "south", "apparel")] == (1, 1000.0)
    assert got[("2019-11-01", "other", "kids")] == (1, 5.0)
    others = {k: v for k, v in got.items() if k[1] == "other" and k[2] != "kids"}
    assert sum(u for u, _ in others.values()) == 2 and sum(r for _, r in others.values()) == 20.0
    assert sum(u for u, _ in got.values()) == 2 + 1 + 1 + 2
    assert table.select(F.max("units_noise_scale"), F.max("revenue_noise_scale")).first() == (8e-8, 2 * 2 * 1000 / 5e7)
    run = lake.read_table(spark, root, tables.OPS_JOB_RUNS).where(F.col("job") == "release").orderBy(
        F.col("ended_at").desc()).first()
    details = json.loads(run.details)
    assert (details["users"], details["users_over_bound"], details["units"], details["units_kept_at_most"]) == (4, 2, 8, 7)

    # The whole window as one cell per region and category (epsilon 4e7: noise scales 2e-7 and 2e-4):
    # h's 3 purchases fall in 2 cells now, under the bound: 2 phones (10 each) and the shoes.
    window = {**config, "release": {**config["release"], "regional_grain": "window"}}
    out = release.run(spark, window, "regional_demand", "2019-11-03", days=2, epsilon=4e7)
    assert out["rows"] == 6 * 4
    got = {(str(r.event_date), r.region, r.category): (r.units, r.revenue)
           for r in lake.read_table(spark, root, tables.GOLD_DP_REGIONAL_DEMAND)
           .where(F.col("release_id") == out["release_id"]).collect()}
    assert {k: v for k, v in got.items() if v != (0, 0.0)} == {
        ("2019-11-01", "north", "electronics"): (2, 200.0), ("2019-11-01", "south", "apparel"): (1, 1000.0),
        ("2019-11-01", "other", "electronics"): (2, 20.0), ("2019-11-01", "other", "apparel"): (1, 10.0),
        ("2019-11-01", "other", "kids"): (1, 5.0)}

    # One budget for both releases: 1.4e8 spent, 1e7 left, so a funnel release of 6e7 is refused.
    funnel = ["daily_funnel", "--as-of", "2019-11-03", "--days", "2", "--epsilon", "60000000", "--lake", root,
              "--conf", "release.total_epsilon=150000000"]
    assert release.main(funnel) == 2
    assert "1.4e+08 of the budget release.total_epsilon = 1.5e+08 on silver/events is spent" in capsys.readouterr().err

"""Differentially private releases: bounding, noise of the promised scale, the budget ledger."""
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

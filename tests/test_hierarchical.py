"""Hierarchical reconciliation by hand: the MinT structural-weights projection on a small grouped
hierarchy, whose least-squares solution is worked out in the docstring."""
import numpy as np
import pandas as pd

from ecomlake.models import hierarchical


def test_mint_structural_weights_by_hand():
    """Regions a and b, one category c. Nodes and their weights (bottom series under them): total 2,
    region a 1, region b 1, category c 2, bottom a|c 1, b|c 1. Base forecasts: 10, 3, 5, 10, 4, 4.
    MinT-WLS_s minimises (10 - x1 - x2)^2 / 2 twice (total and c) + (3 - x1)^2 + (4 - x1)^2 +
    (5 - x2)^2 + (4 - x2)^2. Setting the derivatives to 0: 3 x1 + x2 = 17 and x1 + 3 x2 = 19, so
    x1 = 4 and x2 = 5: the total becomes 9 (bottom-up would say 8, the total's own forecast 10)."""
    nodes = pd.DataFrame({"level": ["total", "region", "region", "category", "region_category", "region_category"],
                          "region": ["*", "a", "b", "*", "a", "b"],
                          "top_category": ["*", "*", "*", "c", "c", "c"],
                          "base": [10.0, 3.0, 5.0, 10.0, 4.0, 4.0]})
    bottom = nodes[nodes["level"] == "region_category"].reset_index(drop=True)
    summing, projection = hierarchical.structural_projection(nodes, bottom)
    assert summing.tolist() == [[1, 1], [1, 0], [0, 1], [1, 1], [1, 0], [0, 1]]
    assert np.allclose(projection @ nodes["base"].to_numpy(), [4.0, 5.0])
    # Forecasts that already add up are left as they are.
    coherent = summing @ np.array([2.0, 7.0])
    assert np.allclose(projection @ coherent, [2.0, 7.0])

    # The grouped function gives the bottom rows, never below 0.
    frame = nodes.assign(origin_date=pd.Timestamp("2019-11-01").date(), event_date=pd.Timestamp("2019-11-02").date())
    out = hierarchical._mint_group(frame)
    assert list(zip(out["region"], out["mint_wls"].round(9))) == [("a", 4.0), ("b", 5.0)]
    negative = frame.assign(base=[0.0, -6.0, 1.0, 0.0, -6.0, 1.0])
    assert hierarchical._mint_group(negative)["mint_wls"].min() == 0.0


def test_mint_through_spark_gives_the_hand_solved_bottom_forecasts(spark):
    """The same hierarchy as above, as rows of two origin days (the second with every base
    forecast doubled, so its answer doubles: 8 and 10), through the grouped Spark path."""
    from datetime import date

    nodes = [("total", "*", "*", 10.0), ("region", "a", "*", 3.0), ("region", "b", "*", 5.0),
             ("category", "*", "c", 10.0), ("region_category", "a", "c", 4.0), ("region_category", "b", "c", 4.0)]
    rows = [(date(2019, 11, 1), date(2019, 11, day), level, region, category, base * factor)
            for day, factor in ((2, 1.0), (3, 2.0)) for level, region, category, base in nodes]
    base = spark.createDataFrame(rows, "origin_date date, event_date date, level string, region string, "
                                       "top_category string, base double")
    got = {(r.event_date.day, r.region): round(r.mint_wls, 9) for r in hierarchical.mint_wls(base).collect()}
    assert got == {(2, "a"): 4.0, (2, "b"): 5.0, (3, "a"): 8.0, (3, "b"): 10.0}

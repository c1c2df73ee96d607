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

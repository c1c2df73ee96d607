"""Product images: the classical baseline next to the CNN, and the rows of gold/item_image_embeddings.

The baseline is Spark ML's multinomial logistic regression on the raw pixels (scaled to 0..1), the
first row of Fashion-MNIST's own benchmark table (scikit-learn's, 0.84); the CNN
(ecomlake.deep.image_cnn) must beat it on the same test images.
"""
from __future__ import annotations

import pandas as pd  # module level: Spark resolves the pandas UDF's type hints in this namespace
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType

from ecomlake.datasets import png_pixels
from ecomlake.errors import require_columns

PIXEL_LR_MAX_ITER = 100


def pixel_features(images: DataFrame, column: str = "image_png") -> DataFrame:
    """images with PNG bytes -> the same rows plus `features`: the grey pixels / 255, row-major."""
    @F.pandas_udf(ArrayType(FloatType()))
    def pixels(png: pd.Series) -> pd.Series:
        return png.map(lambda data: png_pixels(data).reshape(-1).astype("float32") / 255.0)

    return images.withColumn("features", array_to_vector(pixels(column)))


def pixel_logistic_regression(reg_param: float = 0.0) -> LogisticRegression:
    """Multinomial LR on the pixels (Spark ML, LBFGS: no seed; the label column is `label`)."""
    return LogisticRegression(family="multinomial", maxIter=PIXEL_LR_MAX_ITER, regParam=reg_param,
                              labelCol="label", featuresCol="features", predictionCol="predicted_label")


def per_class_accuracy(scored: DataFrame, names: dict[int, str], label: str = "label",
                       predicted: str = "predicted_label") -> dict[str, float]:
    """Share of each class's images predicted as that class (the recall of every class)."""
    rows = (scored.groupBy(label).agg(F.avg((F.col(label) == F.col(predicted)).cast("double")).alias("accuracy"))
            .collect())  # one row per class
    return {names.get(r[label], str(r[label])): round(float(r["accuracy"]), 4) for r in sorted(rows)}


def embedding_rows(scored: DataFrame, model: str, run_id: str) -> DataFrame:
    """Scored images (image_id, split, label, label_name, predicted_label, embedding) -> the rows of
    gold/item_image_embeddings for one model run."""
    require_columns(scored, ["image_id", "split", "label", "label_name", "predicted_label", "embedding"],
                    "scored product images")
    return scored.select("image_id", "split", "label", "label_name",
                         F.col("predicted_label").cast("int").alias("predicted_label"),
                         F.col("embedding"), F.lit(model).alias("model"), F.lit(run_id).alias("run_id"))

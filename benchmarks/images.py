"""Image input benchmark: the two ways Petastorm can feed product images to TensorFlow.

  .venv/bin/python benchmarks/images.py [--images 60000] [--workers 1,2]

From the installed Fashion-MNIST training split (PNG-encoded as `ingest --source fashion_mnist`
does), Spark writes the same images twice:
  a. plain Parquet with the PNG bytes in a binary column (what `train_deep image_cnn` writes), read
     with `make_batch_reader` -> `make_petastorm_dataset`, the PNGs decoded in tf.data
     (`tf.io.decode_png`, as the image_cnn architecture does);
  b. a Petastorm dataset (Unischema, `CompressedImageCodec("png")`, `materialize_dataset`), read with
     `make_reader`, which decodes every row in Python reader threads; rows are batched in tf.data.
Prints decoded images/s for each reader pool size in --workers and writes results-images.json.
Not a test: numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

LIB = str(Path(__file__).resolve().parents[1] / "lib")
sys.path.insert(0, LIB)
# Spark's Python workers (the PNG-encoding pandas UDF) import ecomlake too: they inherit this.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (LIB, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

log = logging.getLogger("bench-images")
BATCH = 256


def write_both(images: int, workdir: Path) -> tuple[str, str]:
    import numpy as np
    from petastorm.codecs import CompressedImageCodec, ScalarCodec
    from petastorm.etl.dataset_metadata import materialize_dataset
    from petastorm.unischema import Unischema, UnischemaField, dict_to_spark_row
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, LongType

    from ecomlake import datasets

    side = datasets.IMAGE_SIDE
    spark = (SparkSession.builder.master("local[2]").appName("bench-images")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    raw = datasets.read_fashion_mnist(spark, datasets.FASHION_MNIST.locate()).where(F.col("split") == "train")
    png = (datasets.fashion_mnist_images(raw.limit(images))
           .select(F.col("image_id").alias("row_id"), "label", "image_png").repartition(4).cache())
    batch_url = f"file://{workdir}/batch"
    png.write.mode("overwrite").parquet(batch_url)

    schema = Unischema("ProductImage", [
        UnischemaField("row_id", np.int64, (), ScalarCodec(LongType()), False),
        UnischemaField("label", np.int32, (), ScalarCodec(IntegerType()), False),
        UnischemaField("image", np.uint8, (side, side), CompressedImageCodec("png"), False)])
    codec_url = f"file://{workdir}/codec"

    def to_row(row):
        import io

        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(row.image_png)), dtype=np.uint8)
        return dict_to_spark_row(schema, {"row_id": row.row_id, "label": row.label, "image": image})

    with materialize_dataset(spark, codec_url, schema, row_group_size_mb=8):
        (spark.createDataFrame(png.rdd.map(to_row), schema.as_spark_schema())
         .coalesce(4).write.mode("overwrite").parquet(codec_url))
    spark.stop()
    return batch_url, codec_url


def batch_reader_images_per_second(url: str, workers: int) -> tuple[float, int]:
    import tensorflow as tf
    from petastorm import make_batch_reader
    from petastorm.tf_utils import make_petastorm_dataset

    from ecomlake.datasets import IMAGE_SIDE
    from ecomlake.deep.image_cnn import decode_png_batch

    started, n = time.perf_counter(), 0
    with make_batch_reader(url, num_epochs=1, workers_count=workers, schema_fields=["label", "image_png"]) as reader:
        dataset = (make_petastorm_dataset(reader).map(lambda b: decode_png_batch(b.image_png, IMAGE_SIDE))
                   .rebatch(BATCH).prefetch(2))
        for images in dataset:
            n += int(images.shape[0])
    return n / (time.perf_counter() - started), n


def codec_reader_images_per_second(url: str, workers: int) -> tuple[float, int]:
    from petastorm import make_reader
    from petastorm.tf_utils import make_petastorm_dataset

    started, n = time.perf_counter(), 0
    with make_reader(url, num_epochs=1, workers_count=workers, schema_fields=["label", "image"]) as reader:
        for batch in make_petastorm_dataset(reader).batch(BATCH).prefetch(2):
            n += int(batch.image.shape[0])
    return n / (time.perf_counter() - started), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--workers", default="1,2", help="Petastorm reader pool sizes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    workdir = Path(tempfile.mkdtemp(prefix="bench-images-"))
    try:
        batch_url, codec_url = write_both(args.images, workdir)
        results: dict = {"images": args.images, "cores": os.cpu_count(), "batch": BATCH, "images_per_second": {}}
        for workers in [int(w) for w in args.workers.split(",")]:
            for name, measure, url in (("batch_reader_png_in_tf", batch_reader_images_per_second, batch_url),
                                       ("unischema_png_codec", codec_reader_images_per_second, codec_url)):
                rate, n = measure(url, workers)
                if n != args.images:
                    raise SystemExit(f"{name} read {n} images, not {args.images}")
                results["images_per_second"][f"{name}_workers_{workers}"] = round(rate, 1)
                log.info(f"  {name:<26} reader pool {workers}: {rate:9,.0f} images/s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(__file__).with_name("results-images.json")
    out.write_text(json.dumps(results, indent=2))
    log.info(f"raw numbers: {out}")


if __name__ == "__main__":
    main()

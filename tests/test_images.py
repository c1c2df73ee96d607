"""Product images: the Fashion-MNIST adapter (IDX files -> bronze/product_images as PNG), the
image CNN through Petastorm and Horovod, and its embeddings."""
import gzip
import io

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import functions as F

from ecomlake import datasets, lake, tables
from ecomlake.errors import InputError
from ecomlake.jobs import ingest

SIDE = datasets.IMAGE_SIDE


def write_idx(path, array: np.ndarray) -> None:
    magic = datasets.IDX_IMAGES_MAGIC if array.ndim == 3 else datasets.IDX_LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def bar_images(labels, seed: int) -> np.ndarray:
    """Class k is a bright horizontal bar on rows 2k+2..2k+3 over faint noise: easy to learn,
    unchanged by the horizontal flips of the training augmentation."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), SIDE, SIDE))
    for i, k in enumerate(labels):
        images[i, 2 * k + 2:2 * k + 4, 3:25] = 220 + rng.integers(0, 30)
    return images.astype(np.uint8)


def write_dataset(folder, train_labels, test_labels, seed: int = 5) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, labels in (("train", train_labels), ("test", test_labels)):
        labels = np.asarray(labels)
        images = bar_images(np.clip(labels, 0, 9), seed + len(arrays))
        images_file, labels_file = datasets.FASHION_MNIST_FILES[split]
        write_idx(folder / images_file, images)
        write_idx(folder / labels_file, labels)
        arrays[split] = images
    return arrays


def test_idx_files_that_are_not_what_they_claim_are_named(tmp_path):
    write_idx(tmp_path / "labels.gz", np.array([1, 2, 3]))
    assert datasets.read_idx(tmp_path / "labels.gz", datasets.IDX_LABELS_MAGIC).tolist() == [1, 2, 3]
    with pytest.raises(InputError, match=r"labels.gz: not an IDX image file"):
        datasets.read_idx(tmp_path / "labels.gz", datasets.IDX_IMAGES_MAGIC)
    with gzip.open(tmp_path / "short.gz", "wb") as f:   # announces 5 labels, holds 2
        f.write(datasets.IDX_LABELS_MAGIC.to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(InputError, match=r"short.gz: the header announces \(5,\) \(5 bytes\) but the file holds 2"):
        datasets.read_idx(tmp_path / "short.gz", datasets.IDX_LABELS_MAGIC)
    (tmp_path / "plain.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match=r"plain.gz: not a readable gzip file"):
        datasets.read_idx(tmp_path / "plain.gz", datasets.IDX_LABELS_MAGIC)


def test_the_installed_fashion_mnist_test_labels_are_the_published_ones():
    folder = datasets.FASHION_MNIST.locate()
    labels = datasets.read_idx(folder / "t10k-labels-idx1-ubyte.gz", datasets.IDX_LABELS_MAGIC)
    # The official test split: 10,000 images, exactly 1,000 per class; the first is an ankle boot.
    assert np.bincount(labels).tolist() == [1000] * 10
    assert datasets.FASHION_MNIST_CLASSES[labels[0]] == "Ankle boot"


def test_png_encoding_is_lossless():
    pixels = np.arange(SIDE * SIDE, dtype=np.uint8).tobytes()
    decoded = np.asarray(Image.open(io.BytesIO(datasets.png_bytes(pixels))))
    assert decoded.shape == (SIDE, SIDE) and decoded.tobytes() == pixels


def test_fashion_mnist_ingest_quarantines_bad_images_and_reconciles(spark, tmp_path, make_config):
    folder = tmp_path / "fashion-mnist"
    train_labels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 3]   # 12 is no class
    arrays = write_dataset(folder, train_labels, [9, 8, 7])
    images_file = folder / datasets.FASHION_MNIST_FILES["train"][0]
    blank = arrays["train"].copy()
    blank[11] = 0                                           # image 11 is all black
    write_idx(images_file, blank)
    config = make_config()
    out = ingest.run(spark, config, "fashion_mnist", str(folder))
    assert (out["input_lines"], out["bronze_rows"], out["quarantined_rows"]) == (15, 13, 2)
    root = config["lake_root"]
    bad = lake.read_table(spark, root, tables.QUARANTINE_PRODUCT_IMAGES)
    assert sorted((r.image_id, r.reason) for r in bad.collect()) == [(10, "label_out_of_range"), (11, "blank_image")]
    bronze = lake.read_table(spark, root, tables.BRONZE_PRODUCT_IMAGES)
    rows = {r.image_id: r for r in bronze.collect()}
    assert sorted(rows) == [*range(10), 12, 13, 14]          # test images follow the 12 training ones
    assert (rows[12].split, rows[12].label, rows[12].label_name) == ("test", 9, "Ankle boot")
    assert (rows[3].split, rows[3].label_name, rows[3].width, rows[3].height) == ("train", "Dress", SIDE, SIDE)
    assert np.asarray(Image.open(io.BytesIO(rows[3].image_png))).tobytes() == arrays["train"][3].tobytes()
    again = ingest.run(spark, config, "fashion_mnist", str(folder))
    assert again["files"] == 0 and bronze.count() == 13       # the same files: nothing new


def test_the_image_architecture_decodes_the_same_pixels_for_training_and_scoring():
    import collections

    import pandas as pd
    import tensorflow as tf

    from ecomlake.deep import architecture

    spec = {"model": "image_cnn", "image_side": SIDE, "classes": 10, "seed": 1}
    arch = architecture.for_model(spec)
    images = bar_images([0, 4, 9], seed=2)
    pdf = pd.DataFrame({"label": [0, 4, 9], "image_png": [datasets.png_bytes(i.tobytes()) for i in images]})
    Batch = collections.namedtuple("Batch", arch.columns(spec))
    x, y = arch.to_xy(Batch(*[tf.constant(pdf[c].to_numpy()) for c in arch.columns(spec)]), spec)
    arrays = arch.numpy_inputs(pdf, spec)
    np.testing.assert_array_equal(x["image"].numpy(), arrays["image"])
    np.testing.assert_array_equal(arrays["image"][:, :, :, 0], images.astype(np.float32))
    assert y.numpy().tolist() == [0, 4, 9]
    built = arch.build(spec)
    assert built.get_layer(arch.embedding_layer).output.shape[-1] == 128
    assert arch.output_values(built.predict_on_batch(arrays), pdf, spec).shape == (3,)


@pytest.mark.horovod
def test_the_image_cnn_learns_planted_classes_and_writes_embeddings(spark, tmp_path, make_config):
    from ecomlake.jobs import train_deep

    rng = np.random.default_rng(11)
    folder = tmp_path / "fashion-mnist"
    write_dataset(folder, rng.integers(0, 10, size=256), rng.integers(0, 10, size=64))
    config = make_config()
    ingest.run(spark, config, "fashion_mnist", str(folder))
    out = train_deep.run(spark, config, "image_cnn", None, num_proc=2, launcher="horovodrun", epochs=4,
                         batch_size=16, learning_rate=0.002)
    record, baseline = out["records"]
    assert record["task"] == "product_image_class" and baseline["model"] == "logistic_regression_pixels"
    assert record["details"]["weights_identical_on_all_ranks"]   # batch-norm statistics averaged too
    # 2 workers scale the rate to 0.004; the last third of the 4 epochs (epoch 4) runs at a tenth.
    assert record["details"]["history"]["lr"][1:] == pytest.approx([0.004, 0.004, 0.0004], rel=1e-4)
    assert record["metrics"]["accuracy"] >= 0.9 and record["metrics"]["n"] == 64
    assert baseline["metrics"]["accuracy"] >= 0.9             # the bars are linearly separable too
    assert record["details"]["train_images"] == 256 and record["details"]["train_images_per_second"] > 0
    assert set(record["details"]["per_class_accuracy"]) <= set(datasets.FASHION_MNIST_CLASSES)
    embeddings = lake.read_table(spark, config["lake_root"], tables.GOLD_ITEM_IMAGE_EMBEDDINGS)
    assert embeddings.count() == 320
    assert embeddings.select(F.size("embedding").alias("n")).distinct().collect()[0].n == 128
    agreement = embeddings.where("split = 'test'").select(F.avg((F.col("label") == F.col("predicted_label"))
                                                                .cast("double"))).first()[0]
    assert agreement == pytest.approx(record["metrics"]["accuracy"])

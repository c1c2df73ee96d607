"""Product images for the deep path: PNG bytes in Parquet, decoded in tf.data, and a small CNN.

Training shards keep each image as its PNG bytes (column `image_png`, as in bronze/product_images);
`make_batch_reader` hands a row group's bytes to tf.data, which decodes them (`tf.io.decode_png`).
The other way Petastorm offers, a Unischema with a PNG codec read by `make_reader`, decodes row by
row in Python; `benchmarks/images.py` measures both (README: the batch reader is the faster).

The model: two convolution blocks (batch norm, max pooling, dropout), then a dense layer whose 128
outputs are the image embedding (layer `embedding`, written to gold/item_image_embeddings), then a
softmax over the classes. The learning rate drops to a tenth for the last third of the epochs.
Pixels enter as 0..255 and are scaled inside. (Horizontal flips as augmentation were tried: after
12 epochs the training accuracy was still below the test accuracy, 0.922; without them 14 epochs
reached 0.926 and 20 epochs 0.931, README "Product images".)
"""
from __future__ import annotations

from pyspark.sql.types import IntegerType, StructField

from ecomlake.deep import architecture as base

IMAGE_COLUMN = "image_png"
EMBEDDING_LAYER = "embedding"
EMBEDDING_SIZE = 128


def build(side: int, classes: int, seed: int = 7, filters: tuple[int, int] = (32, 64), dropout: float = 0.25):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    image = tf.keras.Input(shape=(side, side, 1), name="image", dtype="float32")
    x = layers.Rescaling(1.0 / 255)(image)
    for n in filters:
        x = layers.Conv2D(n, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(n, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(dropout, seed=seed)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(EMBEDDING_SIZE, activation="relu", name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(2 * dropout, seed=seed)(x)
    out = layers.Dense(classes, activation="softmax", name="label")(x)
    return tf.keras.Model(inputs=image, outputs=out)


def decode_png_batch(png_bytes, side: int):
    """A batch of PNG byte strings (tf.string, shape [n]) -> float32 [n, side, side, 1], 0..255."""
    import tensorflow as tf

    images = tf.map_fn(lambda b: tf.io.decode_png(b, channels=1), png_bytes,
                       fn_output_signature=tf.TensorSpec((None, None, 1), tf.uint8))
    return tf.cast(tf.ensure_shape(images, (None, side, side, 1)), tf.float32)


def decode_png_numpy(png_bytes, side: int):
    """The same decoding for a pandas/numpy batch (Spark scoring), with Pillow."""
    import numpy as np

    from ecomlake.datasets import png_pixels

    out = np.empty((len(png_bytes), side, side, 1), dtype=np.float32)
    for i, data in enumerate(png_bytes):
        out[i, :, :, 0] = png_pixels(data)
    return out


class Architecture(base.Architecture):
    """A product image (PNG bytes) in; the class with the highest probability out."""
    loss = "sparse_categorical_crossentropy"
    output_field = StructField("predicted_label", IntegerType())
    embedding_layer = EMBEDDING_LAYER

    def build(self, spec: dict):
        return build(spec["image_side"], spec["classes"], seed=spec["seed"])

    def metrics(self) -> list:
        import tensorflow as tf

        return [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def inputs(self, spec: dict) -> list[base.ModelInput]:
        return [base.ModelInput("image", (IMAGE_COLUMN,), "string")]

    def learning_rate_steps(self, epochs: int) -> list[tuple[int, float]]:
        """A tenth of the rate for the last third of the epochs: the usual step decay that takes
        a CNN's accuracy the last point (runs of fewer than 3 epochs keep the rate)."""
        return [(epochs - epochs // 3, 0.1)] if epochs >= 3 else []

    def target(self, spec: dict) -> base.ModelInput:
        return base.ModelInput("label", ("label",), "int32")

    def to_xy(self, batch, spec: dict):
        import tensorflow as tf

        return ({"image": decode_png_batch(getattr(batch, IMAGE_COLUMN), spec["image_side"])},
                tf.cast(batch.label, tf.int32))

    def numpy_inputs(self, pdf, spec: dict) -> dict:
        return {"image": decode_png_numpy(pdf[IMAGE_COLUMN].tolist(), spec["image_side"])}

    def output_values(self, predictions, pdf, spec: dict):
        return predictions.argmax(axis=1).astype("int32")

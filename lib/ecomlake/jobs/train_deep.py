"""train_deep: deep models through Petastorm and Horovod, compared with the Spark ML baselines.

  ./spark-submit.sh train_deep wide_deep --as-of 2019-11-17 [--num-proc 2] [--launcher spark|horovodrun]
                    [--epochs 8] [--batch-size 256] [--learning-rate 0.002] [--resume] [--model-seed S]

wide_deep: Wide & Deep purchase propensity on gold/user_features + gold/user_labels (the same
features, label and 20 % user hold-out as `train propensity`). Spark encodes the rows (numeric
columns standardised with training-set statistics, top category through a vocabulary; the spec
is saved as spec.json beside the model) and writes Parquet; each Horovod worker reads its own
shard with Petastorm; rank 0 writes checkpoints and the model. The hold-out users are scored back
in Spark (mapInPandas) and the run is recorded in gold/model_runs (task propensity, model
wide_deep) next to the logistic regression, the recency baseline and the oracle AUC.
--launcher spark (default) runs the workers as Spark tasks (horovod.spark.run); horovodrun starts
local processes. --resume continues from the run's last checkpoint (weights and optimizer state)
instead of starting over; with --epochs N above the epochs it holds, it trains on up to N (the
epoch count is not part of a deep run's run_id, so the extended run replaces the run's row).
--model-seed S seeds the initial weights and the shuffling (default train.seed) but not the
hold-out split: runs with several seeds are separate rows, scored on the same users, and their
spread is the run-to-run noise a model must beat its baseline by.

Every training writes into a new directory, <lake_root>/models/<task>/<run_id>/<attempt>
(checkpoints, data, spec.json, model.h5), and records the run pointing at it once the model is
written: a re-train never writes over the model an existing gold/model_runs row points to.
--resume continues in the newest attempt holding a checkpoint when no row points to it (an
interrupted run), else in a new attempt that starts from a copy of that checkpoint.

session_gru: next item in a session (GRU4Rec-style) over the 5,000 most viewed products, trained
on sessions before --as-of and evaluated on sessions in the label horizon after it: Recall@20 and
MRR@20 against most-popular, item transitions (co-occurrence with the last item) and the user's
ALS top-20 (the latest `train recommend` run). Recorded as task next_item.

session_attention: the same task and test sessions, read by self-attention over the session and the
user's last 50 items from earlier sessions (2 pre-norm transformer blocks, tied item embeddings,
a learned weight on items already in the session or history); also scored with the history
frozen at --as-of (what ALS knows). Recorded as task next_item; `score --task next_item` uses the
newest next_item run.

movielens_attention: the same model over each MovieLens-100k user's last 50 ratings (`ingest
--source movielens100k`; no --as-of), on the split of `train movielens_sequential` (the last
rating held out, every unrated movie ranked): HR@10, nDCG@10, coverage@10, recorded as task
next_item_movielens beside that job's baselines.

lstm_forecaster: a global LSTM over 28-day (--history-days) windows of every product and category series of
gold/daily_sales (scaled by each series' mean), predicting the next train.forecast_holdout_days
days at once; WAPE/RMSE/sMAPE on the same held-out days as `train forecast`, next to seasonal
naive on the same rows. Recorded as task forecast; `score` uses it when it is the newest run.

review_text: P(the reviewer recommends the item) from the review's words (embedding -> masked
mean -> dense) on bronze/clothing_reviews, with the same hash split as the `sentiment` job (no
--as-of needed); the vocabulary (sentiment.vocabulary_size words) is saved beside the model.
Recorded as task review_recommended next to tfidf_lr; every review is scored into
gold/review_sentiment (model review_text).

image_cnn: product images (bronze/product_images: `ingest --source fashion_mnist`; no --as-of): a
CNN on the official training split, read as PNG bytes with Petastorm's make_batch_reader and
decoded in tf.data; accuracy on the official test split next to a logistic regression on the
pixels, recorded as task product_image_class; every image's class and 128-number embedding go to
gold/item_image_embeddings. The learning rate drops to a tenth for the last third of the epochs.
"""
from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from ecomlake.cli import exit_with, job_parser, parse_as_of, run_job
from ecomlake.deep import runner
from ecomlake.deep.tasks import FORECAST_HISTORY_DAYS, MODELS, deep_task
from ecomlake.errors import ConfigError


def run(spark: SparkSession, config: dict, model_name: str, as_of: str | None, num_proc: int | None = None,
        launcher: str = "spark", epochs: int = 8, batch_size: int = 256, learning_rate: float = 0.002,
        resume: bool = False, audit_shards: bool = False, history_days: int = FORECAST_HISTORY_DAYS,
        model_seed: int | None = None) -> dict:
    task = deep_task(model_name, history_days)
    if task.needs_as_of and not as_of:
        raise ConfigError(f"train_deep {model_name} needs --as-of (the cutoff of the features to train on)")
    options = runner.TrainingOptions(num_proc or os.cpu_count() or 1, launcher, epochs, batch_size, learning_rate,
                                     resume, audit_shards, model_seed)
    return runner.train(spark, config, task, parse_as_of(as_of) if task.needs_as_of else None, options)


def main(argv=None) -> int:
    parser = job_parser("train_deep", __doc__)
    parser.add_argument("model", choices=MODELS, help="which deep model to train")
    parser.add_argument("--as-of", help="cutoff date of the features to train on "
                                             "(not for review_text, image_cnn, movielens_attention)")
    parser.add_argument("--num-proc", type=int, help="Horovod workers (default: the machine's cores)")
    parser.add_argument("--launcher", choices=("spark", "horovodrun"), default="spark")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256, help="per worker")
    parser.add_argument("--learning-rate", type=float, default=0.002, help="per worker (scaled by workers)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run from its last checkpoint up to --epochs (more than it holds)")
    parser.add_argument("--history-days", type=int, default=FORECAST_HISTORY_DAYS,
                        help="lstm_forecaster: days of history per window (default 28)")
    parser.add_argument("--model-seed", type=int,
                        help="seed of the initial weights and the shuffling (default: train.seed); the hold-out "
                             "split stays train.seed's, so runs with several seeds measure the run-to-run spread")
    return run_job("train_deep", parser, lambda spark, config, a: run(
        spark, config, a.model, a.as_of, a.num_proc, a.launcher, a.epochs, a.batch_size, a.learning_rate,
        a.resume, history_days=a.history_days, model_seed=a.model_seed), argv)


if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

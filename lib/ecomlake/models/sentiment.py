"""Review sentiment: does a reviewer recommend the item, and which star rating did they give?

Three models share one fixed split (a hash of review_id) and one text (title + ". " + review):
- TF-IDF logistic regression (Spark ML): words and bigrams, stop words removed except negations
  ("not", "no", ...: "not flattering" must stay negative), IDF weighting, L2-regularised LR;
  a binary model for the recommended flag and a multinomial one for the 5-star rating;
- all-MiniLM-L6-v2 sentence embeddings (ecomlake.sentence_embeddings, in a pandas function) as
  the features of a logistic regression;
- both stacked into one logistic regression: TF-IDF (binary term presence, every word kept, rows
  L2-normalised) next to the embedding (scaled to unit variance, then by STACK_EMBEDDING_WEIGHT);
- a text model trained through the deep path (ecomlake.deep.text; train_deep review_text).
"""
from __future__ import annotations

import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ecomlake import evaluation
from ecomlake.models.classify import holdout, positive_probability

NEGATIONS = {"no", "not", "nor", "don't", "doesn't", "didn't", "isn't", "wasn't", "aren't", "weren't",
             "won't", "wouldn't", "couldn't", "shouldn't", "can't", "cannot", "against", "too", "very"}
TOKEN_PATTERN = r"[^a-z']+"   # split on anything that is not a letter or an apostrophe


def review_text(reviews: DataFrame) -> Column:
    return F.concat_ws(". ", F.col("title"), F.col("review_text"))


def prepare(reviews: DataFrame, seed: int, test_fraction: float) -> DataFrame:
    """review_id, item_id, department, class_name, text, recommended, rating, rating_index, is_test."""
    from ecomlake.errors import require_columns

    require_columns(reviews, ["review_id", "item_id", "title", "review_text", "rating", "recommended"], "reviews")
    return reviews.select(
        "review_id", "item_id", F.coalesce("department", F.lit("unknown")).alias("department"),
        F.coalesce("class_name", F.lit("unknown")).alias("class_name"),
        review_text(reviews).alias("text"), F.col("recommended").cast("double").alias("recommended"),
        "rating", (F.col("rating") - 1).cast("double").alias("rating_index"),
        holdout(F.col("review_id"), seed, test_fraction).alias("is_test"))


def stop_words() -> list[str]:
    from pyspark.ml.feature import StopWordsRemover

    return [w for w in StopWordsRemover.loadDefaultStopWords("english") if w not in NEGATIONS]


def term_count_stages(vocabulary_size: int, drop_stop_words: bool, binary: bool = False) -> list:
    """text -> `counts`: words (with drop_stop_words, less the stop words other than negations) plus
    bigrams, counted over the vocabulary_size most frequent terms in >= 3 reviews."""
    from pyspark.ml.feature import CountVectorizer, NGram, RegexTokenizer, SQLTransformer, StopWordsRemover

    tokens = "tokens" if drop_stop_words else "words"
    stages = [RegexTokenizer(inputCol="text", outputCol=tokens, pattern=TOKEN_PATTERN, toLowercase=True,
                             minTokenLength=2)]
    if drop_stop_words:
        stages.append(StopWordsRemover(inputCol="tokens", outputCol="words", stopWords=stop_words()))
    return [*stages,
            NGram(n=2, inputCol="words", outputCol="bigrams"),
            SQLTransformer(statement="SELECT *, concat(words, bigrams) AS terms FROM __THIS__"),
            CountVectorizer(inputCol="terms", outputCol="counts", vocabSize=vocabulary_size, minDF=3.0, binary=binary)]


def tfidf_pipeline(label: str, vocabulary_size: int, multiclass: bool = False, reg_param: float = 0.02) -> Pipeline:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import IDF

    return Pipeline(stages=[
        *term_count_stages(vocabulary_size, drop_stop_words=True),
        IDF(inputCol="counts", outputCol="features"),
        LogisticRegression(featuresCol="features", labelCol=label, regParam=reg_param, elasticNetParam=0.0,
                           maxIter=100, family="multinomial" if multiclass else "binomial"),
    ])


# The stacked model's settings, chosen on an inner split of the training reviews (benchmarks/
# review_stack.py: embedding weights 1 to 0.003, penalties 1e-5 to 1e-4): a light penalty suits
# 20,000 L2-normalised TF-IDF columns, and the embedding's 384 unit-variance columns, scaled down,
# pay more penalty per unit of effect, so they only correct what the terms miss.
STACK_EMBEDDING_WEIGHT, STACK_REG_PARAM = 0.01, 3e-5
EMBEDDING_DIMENSION = 384


def stacked_pipeline(label: str, vocabulary_size: int) -> Pipeline:
    """`text` as TF-IDF terms + `embedding_vector` (MiniLM) -> one logistic regression.
    Spark's LR is given unstandardised features: standardising every TF-IDF column would weigh a
    rare term like a common one (and on the raw embeddings alone its line search fails)."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import IDF, ElementwiseProduct, Normalizer, StandardScaler, VectorAssembler
    from pyspark.ml.linalg import Vectors

    return Pipeline(stages=[
        *term_count_stages(vocabulary_size, drop_stop_words=False, binary=True),
        IDF(inputCol="counts", outputCol="idf"),
        Normalizer(inputCol="idf", outputCol="tfidf", p=2.0),
        StandardScaler(inputCol="embedding_vector", outputCol="embedding_scaled", withMean=False, withStd=True),
        ElementwiseProduct(inputCol="embedding_scaled", outputCol="embedding_weighted",
                           scalingVec=Vectors.dense([STACK_EMBEDDING_WEIGHT] * EMBEDDING_DIMENSION)),
        VectorAssembler(inputCols=["tfidf", "embedding_weighted"], outputCol="stacked_features"),
        LogisticRegression(featuresCol="stacked_features", labelCol=label, regParam=STACK_REG_PARAM, standardization=False,
                           maxIter=200),
    ])


def top_terms(model: PipelineModel, n: int = 15, min_review_share: float = 0.005) -> dict[str, list[tuple[str, float]]]:
    """The n terms that push hardest towards recommending and against (binary model), among terms
    in at least min_review_share of the training reviews: rare terms get extreme weights that
    explain little. Reads at most vocabulary_size coefficients."""
    vocabulary = model.stages[4].vocabulary
    idf = model.stages[5]
    weights = model.stages[-1].coefficients.toArray()
    common = max(3, int(min_review_share * idf.numDocs))
    ranked = sorted(((t, w) for t, w, df in zip(vocabulary, weights, idf.docFreq) if df >= common),
                    key=lambda t: t[1])
    return {"for": [(t, round(float(w), 3)) for t, w in reversed(ranked[-n:])],
            "against": [(t, round(float(w), 3)) for t, w in ranked[:n]]}


def expected_rating(prediction: Column) -> Column:
    """Rating predicted by the multinomial model: its most probable class index 0..4 -> 1..5."""
    return (prediction + 1).cast("int")


def embed(df: DataFrame, text_column: str = "text") -> DataFrame:
    """Adds `embedding` (array<float>, 384, L2-normalised) computed by MiniLM in a pandas UDF
    (Arrow batches of texts; the model is loaded once per Python worker)."""
    from pyspark.sql.types import ArrayType, FloatType

    @F.pandas_udf(ArrayType(FloatType()))
    def minilm(texts: pd.Series) -> pd.Series:
        from threadpoolctl import threadpool_limits

        from ecomlake import sentence_embeddings

        # One BLAS thread per Python worker: Spark already runs one worker per core.
        with threadpool_limits(limits=1, user_api="blas"):
            return pd.Series(list(sentence_embeddings.embed_texts(texts.fillna("").tolist())))

    return df.withColumn("embedding", minilm(F.col(text_column)))


def embedding_features(embedded: DataFrame) -> DataFrame:
    """`features` and `embedding_vector`: the embedding as an ML vector (the MiniLM LR's and the
    stacked model's input)."""
    from pyspark.ml.functions import array_to_vector

    vector = array_to_vector("embedding")
    return embedded.withColumn("features", vector).withColumn("embedding_vector", vector)


def embedding_classifier(label: str, reg_param: float = 0.01):
    from pyspark.ml.classification import LogisticRegression

    return LogisticRegression(featuresCol="features", labelCol=label, regParam=reg_param, maxIter=200)


def department_summary(scored: DataFrame) -> DataFrame:
    """Per department: reviews, share not recommended (actual) and the mean predicted probability."""
    return (scored.groupBy("department")
            .agg(F.count("*").alias("reviews"),
                 (1 - F.avg("recommended")).alias("not_recommended_share"),
                 F.avg("probability_recommended").alias("mean_probability_recommended"))
            .orderBy(F.desc("not_recommended_share")))


def output_rows(scored: DataFrame, model: str, run_id: str) -> DataFrame:
    """scored has review columns, is_test, probability_recommended and maybe predicted_rating."""
    if "predicted_rating" not in scored.columns:
        scored = scored.withColumn("predicted_rating", F.lit(None).cast("int"))
    return scored.select(
        "review_id", "item_id", "department", "class_name",
        F.when(F.col("is_test"), "test").otherwise("train").alias("split"),
        F.col("recommended").cast("int").alias("recommended"), "rating",
        F.col("probability_recommended").cast("double").alias("probability_recommended"),
        (F.col("probability_recommended") >= 0.5).cast("int").alias("predicted_recommended"),
        F.col("predicted_rating").cast("int").alias("predicted_rating"),
        F.lit(model).alias("model"), F.lit(run_id).alias("run_id"))


def recommended_scores(model, rows: DataFrame, columns: list[str]) -> DataFrame:
    """A fitted recommended-flag model applied to rows: `columns` + probability_recommended."""
    return (model.transform(rows).withColumn("probability_recommended", positive_probability(F.col("probability")))
            .select(*columns, "probability_recommended"))


def recommended_metrics(test_rows: DataFrame) -> dict:
    metrics = evaluation.binary_metrics(test_rows, "recommended", "probability_recommended")
    metrics.update(evaluation.classification_metrics(
        test_rows.withColumn("predicted", (F.col("probability_recommended") >= 0.5).cast("double")),
        "recommended", "predicted"))
    return metrics

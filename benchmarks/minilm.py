"""MiniLM sentence embeddings: reviews per second on one core, numpy pass against TensorFlow/XLA.

  .venv/bin/python benchmarks/minilm.py [--reviews 400]

Embeds the first N clothing reviews (the packaged dataset) with `embed_texts` on each engine,
one thread each (as in a Spark Python worker), twice for TensorFlow (the first pass includes the
XLA compilations, one per batch shape), and prints reviews/s and the largest difference between
the two engines' embeddings. Not a test: numbers, written to benchmarks/results-minilm.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

log = logging.getLogger("bench-minilm")


def main() -> None:
    import numpy as np
    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits

    from ecomlake import datasets, sentence_embeddings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    frame = pq.read_table(str(datasets.CLOTHING_REVIEWS.locate())).to_pandas()
    texts = [t for t in frame["Review Text"].tolist() if isinstance(t, str) and t][:args.reviews]
    tokens = [len(ids) for ids in sentence_embeddings.load().token_ids(texts)]
    sentence_embeddings.load_tensorflow()   # sets TensorFlow's threads to 1 before it starts
    results = {"reviews": len(texts), "mean_tokens": float(np.mean(tokens)), "reviews_per_second": {}}

    def timed(name, engine):
        started = time.time()
        with threadpool_limits(limits=1, user_api="blas"):
            embeddings = sentence_embeddings.embed_texts(texts, engine=engine)
        results["reviews_per_second"][name] = len(texts) / (time.time() - started)
        return embeddings

    reference = timed("numpy", "numpy")
    timed("tensorflow_first_pass_with_compilation", "tensorflow")
    got = timed("tensorflow", "tensorflow")
    results["max_abs_difference"] = float(np.abs(got - reference).max())
    results["speedup"] = results["reviews_per_second"]["tensorflow"] / results["reviews_per_second"]["numpy"]
    log.info(f"\n== MiniLM, {len(texts)} clothing reviews ({results['mean_tokens']:.0f} tokens on average), one core ==")
    for name, value in results["reviews_per_second"].items():
        log.info(f"  {name:<40} {value:6.1f} reviews/s")
    log.info(f"  TensorFlow / numpy: {results['speedup']:.1f}x; largest difference {results['max_abs_difference']:.1e}")
    out = Path(__file__).with_name("results-minilm.json")
    out.write_text(json.dumps(results, indent=2))
    log.info(f"\nraw numbers: {out}")


if __name__ == "__main__":
    main()

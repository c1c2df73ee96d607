"""Models: Spark ML baselines and the pure transforms that prepare their data."""

"""One SparkSession for the whole test run (local[2], few partitions, Delta enabled)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

TEST_SPARK_OVERRIDES = [
    "spark.master=local[2]",
    "spark.conf.spark.sql.shuffle.partitions=2",
    "spark.conf.spark.default.parallelism=2",
    "spark.conf.spark.ui.enabled=false",
    "spark.conf.spark.ui.showConsoleProgress=false",
    "spark.conf.spark.databricks.delta.snapshotPartitions=1",
    "spark.conf.spark.sql.adaptive.coalescePartitions.enabled=true",
    "spark.conf.spark.driver.memory=2g",
]


TIERS = ("e2e", "horovod", "notebook", "subprocess")


def pytest_collection_modifyitems(items):
    """A test that no slower tier claims is a unit test (pytest.ini registers the markers)."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from ecomlake import config as cfg
    from ecomlake.spark import get_spark

    local_dir = tmp_path_factory.mktemp("spark-local")
    config = cfg.load("local", overrides=TEST_SPARK_OVERRIDES + [f"spark.conf.spark.local.dir={local_dir}"])
    session = get_spark(config, "tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def make_config(tmp_path):
    """A local config whose lake and generator output live in this test's tmp folder."""
    from ecomlake import config as cfg

    def build(*overrides):
        return cfg.load("local", overrides=[
            *TEST_SPARK_OVERRIDES, f"generate.output={tmp_path}/raw", *overrides], lake=str(tmp_path / "lake"))

    return build

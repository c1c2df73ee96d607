#!/usr/bin/env bash
# Airflow in its own cached virtualenv (never in the pinned stack: Airflow brings its own pins).
# `make airflow-env` calls it; prints the venv's python. Idempotent: a finished venv is reused.
set -euo pipefail
version=${AIRFLOW_VERSION:-3.3.2}
venv=${ECOMLAKE_DATA_CACHE:-$HOME/.cache/ecomlake}/airflow-$version
if [ ! -f "$venv/.ready" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q -U pip >&2
    "$venv/bin/python" -m pip install -q "apache-airflow==$version" >&2
    touch "$venv/.ready"
fi
echo "$venv/bin/python"

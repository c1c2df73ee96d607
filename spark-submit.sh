#!/usr/bin/env bash
# Run an ecomlake job with spark-submit, locally or on a cluster; prints the command it runs.
#   ./spark-submit.sh --help                  list jobs
#   ./spark-submit.sh pipeline                the main job on the embedded default (local)
#   ./spark-submit.sh ingest --env cluster --source rees46 --input 'hdfs:///raw/*.csv'
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${ECOMLAKE_PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$here/.venv/bin/python" ]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$here/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m ecomlake.submit "$@"

"""Entry point of the `monitor` job: see ecomlake.jobs.monitor (./spark-submit.sh monitor --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.monitor import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

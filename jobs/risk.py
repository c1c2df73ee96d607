"""Entry point of the `risk` job: see ecomlake.jobs.risk (./spark-submit.sh risk --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.risk import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

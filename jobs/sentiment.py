"""Entry point of the `sentiment` job: see ecomlake.jobs.sentiment (./spark-submit.sh sentiment --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.sentiment import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

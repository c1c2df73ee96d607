"""Entry point of the `score` job: see ecomlake.jobs.score (./spark-submit.sh score --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.score import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

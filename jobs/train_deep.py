"""Entry point of the `train_deep` job: see ecomlake.jobs.train_deep (./spark-submit.sh train_deep --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.train_deep import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

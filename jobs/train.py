"""Entry point of the `train` job: see ecomlake.jobs.train (./spark-submit.sh train --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.train import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

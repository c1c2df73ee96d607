"""Entry point of the `features` job: see ecomlake.jobs.features (./spark-submit.sh features --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.features import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

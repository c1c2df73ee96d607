"""Entry point of the `release` job: see ecomlake.jobs.release (./spark-submit.sh release --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.release import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

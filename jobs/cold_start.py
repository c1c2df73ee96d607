"""Entry point of the `cold_start` job: see ecomlake.jobs.cold_start (./spark-submit.sh cold_start --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.cold_start import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

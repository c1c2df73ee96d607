"""Entry point of the `pricing` job: see ecomlake.jobs.pricing (./spark-submit.sh pricing --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.pricing import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

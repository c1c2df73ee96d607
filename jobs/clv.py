"""Entry point of the `clv` job: see ecomlake.jobs.clv (./spark-submit.sh clv --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.clv import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

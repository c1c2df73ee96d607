"""Entry point of the `clean` job: see ecomlake.jobs.clean (./spark-submit.sh clean --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.clean import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

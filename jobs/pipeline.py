"""Entry point of the `pipeline` job: see ecomlake.jobs.pipeline (./spark-submit.sh pipeline --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.pipeline import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""Entry point of the `forget` job: see ecomlake.jobs.forget (./spark-submit.sh forget --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.forget import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

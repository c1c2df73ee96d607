"""Entry point of the `graph` job: see ecomlake.jobs.graph (./spark-submit.sh graph --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.graph import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""Entry point of the `sessionize` job: see ecomlake.jobs.sessionize (./spark-submit.sh sessionize --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.sessionize import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

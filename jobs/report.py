"""Entry point of the `report` job: see ecomlake.jobs.report (./spark-submit.sh report --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.report import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""Entry point of the `maintain` job: see ecomlake.jobs.maintain (./spark-submit.sh maintain --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.maintain import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

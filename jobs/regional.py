"""Entry point of the `regional` job: see ecomlake.jobs.regional (./spark-submit.sh regional --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.regional import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

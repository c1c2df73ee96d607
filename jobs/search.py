"""Entry point of the `search` job: see ecomlake.jobs.search (./spark-submit.sh search --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.search import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

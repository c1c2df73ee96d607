"""Entry point of the `ingest` job: see ecomlake.jobs.ingest (./spark-submit.sh ingest --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.ingest import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""Entry point of the `generate` job: see ecomlake.jobs.generate (./spark-submit.sh generate --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.generate import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

"""Entry point of the `intents` job: see ecomlake.jobs.intents (./spark-submit.sh intents --help)."""
import sys

from ecomlake.cli import exit_with
from ecomlake.jobs.intents import main

if __name__ == "__main__":
    exit_with(main(sys.argv[1:]))

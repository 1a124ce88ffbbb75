"""Flex Template entry point: the launcher passes template parameters as ``--name=value``."""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))

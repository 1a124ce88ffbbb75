"""Flex Template entry point: the launcher passes template parameters as ``--name=value``."""

import sys

from pipeline.cli import launch_flex_template

if __name__ == "__main__":
    sys.exit(launch_flex_template(sys.argv[1:]))

"""``python -m pipeline`` is the ``fimflow`` command."""

from pipeline.cli import console_main

console_main()

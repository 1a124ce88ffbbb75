"""``python -m pipeline`` is the ``fimflow`` command."""

import sys

from pipeline.cli import main

sys.exit(main())

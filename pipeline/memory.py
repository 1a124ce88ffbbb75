"""glibc malloc settings for a local run's processes, so that memory freed goes back to the system.

With glibc's defaults, the processes of a local multi-processing run kept
about 3 bytes of memory per byte of text (``bench/throughput.py``, 2 cores,
60 -> 180 MB of distinct code: +351 MB of peak summed RSS), though Python
itself held little (``tracemalloc``: 108 MB at the runner's peak). Blocks
freed by one thread stayed in that thread's arena, and glibc's dynamic mmap
threshold, raised by every large block freed, moved large allocations into
heaps that fragment. Two arenas and a fixed 128 KiB mmap threshold gave
1.05 bytes per byte on the same corpora, at no measured cost in time.

Set for the launcher (which runs the local runner) through ``mallopt``, and
for every process it starts (SDK workers, tokenizer helpers) through the
environment, which glibc reads when a process starts. A user's own
``MALLOC_*`` settings win. Elsewhere than glibc, nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

SETTINGS = {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 128 << 10}
# mallopt parameters (glibc's malloc.h) that the variables above set at start-up.
_MALLOPT = {"MALLOC_ARENA_MAX": -8, "MALLOC_MMAP_THRESHOLD_": -3}


def configure_malloc() -> None:
    """Applies ``SETTINGS`` to this process and to the processes it starts from now on."""
    for name, value in SETTINGS.items():
        os.environ.setdefault(name, str(value))
    path = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(path).mallopt
    except (OSError, AttributeError, TypeError):  # Not glibc, or no C library found.
        logger.debug("no mallopt in %s: malloc left as it is", path)
        return
    for name, parameter in _MALLOPT.items():
        try:
            value = int(os.environ[name])
        except ValueError:
            continue
        if not mallopt(parameter, value):
            logger.debug("mallopt(%s=%d) refused", name, value)

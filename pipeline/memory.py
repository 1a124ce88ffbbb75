"""glibc malloc settings for a local run's processes, so that memory freed goes back to the system.

With glibc's defaults, the processes of a local multi-processing run kept
about 3 bytes of memory per byte of text (``bench/throughput.py``, 2 cores,
60 -> 180 MB of distinct code: +351 MB of peak summed RSS), though Python
itself held little (``tracemalloc``: 108 MB at the runner's peak). Blocks
freed by one thread stayed in that thread's arena, and glibc's dynamic mmap
threshold, raised by every large block freed, moved large allocations into
heaps that fragment. Two arenas and a fixed 128 KiB mmap threshold gave
1.05 bytes per byte on the same corpora.

That threshold cost time once the word cache worked on numpy arrays
(``transforms.core.array_word_cache``): each multi-MB temporary became an
mmap and a munmap, its pages faulted in zeroed on every call, and any fixed
threshold also fixes glibc's trim threshold at 128 KiB, so the heap's free
top went back to the system after each call and faulted in again on the next.
A 4 MiB mmap threshold with a 64 MiB trim threshold keeps a call's
temporaries in the heap. On 94.6 MB of distinct code, 2 cores, a default run
with the array path took 21.4 CPU-s under the 128 KiB threshold (6.8 of them
in the kernel, 3.4 M minor page faults) and 15.0-15.7 under these (1.2,
0.19-0.21 M); the dicts alone under the old ones took 19.7 (2.3, 0.9 M).
Marginal memory went from 1.1 to 1.4-1.6 bytes per byte (a 32 MiB mmap
threshold: 1.8-2.25).

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

SETTINGS = {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 4 << 20, "MALLOC_TRIM_THRESHOLD_": 64 << 20}
# mallopt parameters (glibc's malloc.h) that the variables above set at start-up.
_MALLOPT = {"MALLOC_ARENA_MAX": -8, "MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1}


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

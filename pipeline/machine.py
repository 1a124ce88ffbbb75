"""The machine a local run has, and how a local run sizes itself to it.

``Machine(cores, available_memory)`` is a value: ``Machine.this()`` reads
this process's CPU affinity and Linux's ``MemAvailable``; tests and the
benchmark pass the machine they mean. Nothing here reads or changes pipeline
options: ``pipeline.plan`` asks these functions and records their answers in
the ``RunPlan``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

# A local run that names no running mode runs in one process (the in-process runner, its tokenizing
# and shard making spread over helper processes, transforms.core.tokenizer_pool) on a machine of up
# to LOCAL_ONE_PROCESS_MAX_CORES cores, whatever its size, and elsewhere below
# LOCAL_WORKERS_MIN_TEXT_BYTES of text; from there up, with one SDK worker process per core. On
# 2 cores (python -m bench.throughput --crossover 8,47,94.6,189, each run a process of its own), one
# process took 0.60x the time of 2 worker processes at 8 MB of distinct code, 0.80x at 47 MB, 0.85x
# at 94.8 MB and 0.96x at 189 MB, with about half their peak memory (590 MB against 1111 MB at
# 189 MB). In one process the runner's own work and the transfers to and from the helpers hold one
# core (about a fifth of the work at 94.6 MB on 2 cores), so more cores than that cannot all be used:
# on more cores the crossover measured before the helpers made shards (2 cores, 47 MB) stands until
# measured there.
LOCAL_ONE_PROCESS_MAX_CORES = 2
LOCAL_WORKERS_MIN_TEXT_BYTES = 48 << 20
# Peak RSS summed over a local run's processes, rounded up from bench/throughput.py --scaling (with
# pipeline.memory's malloc settings): a fixed part, a part per SDK worker process or tokenizer helper
# (each holds a model, word caches and one shard's data), and a part per byte of text (the shuffle's
# compressed ids, held by the runner; 1.1-1.6 bytes per byte measured).
LOCAL_BASE_MEMORY_BYTES = 300 << 20
LOCAL_WORKER_MEMORY_BYTES = 300 << 20
LOCAL_MEMORY_PER_TEXT_BYTE = 2


@dataclasses.dataclass(frozen=True)
class Machine:
    """Cores this process may run on, and memory it can have without swapping (None: unknown or not
    to be checked)."""

    cores: int
    available_memory: Optional[int] = None

    @classmethod
    def this(cls) -> "Machine":
        return cls(available_cores(), available_memory())

    def unchecked(self) -> "Machine":
        """The same cores, memory not counted (``--memory_check=false``, remote runners)."""
        return dataclasses.replace(self, available_memory=None)

    def processes_that_fit(self, text_bytes: int, wanted: int) -> int:
        """At most ``wanted`` processes, each holding a model and caches, beside a run of ``text_bytes``;
        all of them where the memory is unknown."""
        if self.available_memory is None:
            return wanted
        return int(min(wanted, (self.available_memory - local_memory_need(text_bytes, 0))
                       // LOCAL_WORKER_MEMORY_BYTES))

    def local_workers(self, text_bytes: int) -> int:
        """SDK worker processes for a local run that names no running mode: one per core, as many as the
        memory holds, from ``LOCAL_WORKERS_MIN_TEXT_BYTES`` of text up on more than
        ``LOCAL_ONE_PROCESS_MAX_CORES`` cores; 0 (one process) otherwise or where fewer than two would fit."""
        many_cores = self.cores > LOCAL_ONE_PROCESS_MAX_CORES
        wanted = self.cores if many_cores and text_bytes >= LOCAL_WORKERS_MIN_TEXT_BYTES else 0
        workers = self.processes_that_fit(text_bytes, wanted)
        return workers if workers >= 2 else 0


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the system has one (``taskset`` and
    container limits narrow it), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not Linux.
        return os.cpu_count() or 1


def available_memory() -> Optional[int]:
    """Memory this machine can give a new run without swapping (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def local_memory_need(text_bytes: int, workers: int) -> int:
    """Peak memory of a local run of ``text_bytes`` of text with ``workers`` worker or helper processes."""
    return LOCAL_BASE_MEMORY_BYTES + workers * LOCAL_WORKER_MEMORY_BYTES + LOCAL_MEMORY_PER_TEXT_BYTE * text_bytes

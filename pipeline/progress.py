"""Progress of a local run on stderr: a live line on a terminal, a log line now and then otherwise.

The DoFns append their counts so far to files in a folder this module makes
(``transforms.stats``, ``FIMFLOW_PROGRESS_DIR``); a thread here adds them up.
Reading them costs the run nothing it waits for, and nothing in the dataset
depends on them. The whole run's share done is estimated from the stages'
usual shares of the work: reading 5%, tokenizing 75%, the rest 20%.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Optional, TextIO

from transforms.schema import SPLIT_PREFIX
from transforms.stats import PROGRESS_DIR_ENV

logger = logging.getLogger(__name__)
STAGE_WEIGHTS = {"read": 0.05, "tokenize": 0.75, "rest": 0.20}


def share_done(totals: Counter, input_bytes: int, context_length: int) -> float:
    """The run's estimated share done, 0 to 1, from the counts so far."""
    read = min(1.0, totals["bytes_read"] / input_bytes) if input_bytes else 0.0
    tokenized = min(1.0, totals["text_chars_tokenized"] / totals["text_chars_read"]) if read >= 1.0 else 0.0
    expected_examples = totals["document_tokens"] / context_length if tokenized >= 1.0 else 0.0
    # Held-out splits count their examples under their own names (and may write two copies).
    examples = sum(v for k, v in totals.items() if k == "examples" or k.startswith(SPLIT_PREFIX) and k.endswith(
        "/examples"))
    rest = min(1.0, examples / expected_examples) if expected_examples else 0.0
    return STAGE_WEIGHTS["read"] * read + STAGE_WEIGHTS["tokenize"] * tokenized + STAGE_WEIGHTS["rest"] * rest


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """While entered, shows the run's progress on ``stream`` (silent when ``quiet``)."""

    def __init__(self, input_bytes: int, context_length: int, quiet: bool = False,
                 stream: Optional[TextIO] = None, interactive: Optional[bool] = None,
                 log_every_seconds: float = 10.0, refresh_seconds: float = 0.5):
        self._input_bytes = input_bytes
        self._context_length = context_length
        self._quiet = quiet
        self._stream = stream or sys.stderr
        self._interactive = self._stream.isatty() if interactive is None else interactive
        self._every = refresh_seconds if self._interactive else log_every_seconds
        self._offsets: dict = {}
        self._latest: dict = {}
        self._stage = "starting"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._saved_env: Optional[str] = None
        self.directory = ""
        self._start = 0.0

    def __enter__(self) -> "Progress":
        if self._quiet:
            return self
        self.directory = tempfile.mkdtemp(prefix="fimflow-progress-")
        self._saved_env = os.environ.get(PROGRESS_DIR_ENV)
        os.environ[PROGRESS_DIR_ENV] = self.directory
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="fimflow-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._quiet:
            return
        self._stop.set()
        self._thread.join()
        if self._interactive:
            self._stream.write("\r\033[K")
            self._stream.flush()
        if self._saved_env is None:
            os.environ.pop(PROGRESS_DIR_ENV, None)
        else:
            os.environ[PROGRESS_DIR_ENV] = self._saved_env
        shutil.rmtree(self.directory, ignore_errors=True)

    def totals(self) -> Counter:
        """The counts so far: each bundle's latest report, added up over bundles and processes."""
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            with open(path, "rb") as f:
                f.seek(self._offsets.get(name, 0))
                data = f.read()
            complete = data[:data.rfind(b"\n") + 1]
            self._offsets[name] = self._offsets.get(name, 0) + len(complete)
            for line in complete.splitlines():
                report = json.loads(line)
                self._latest[report["bundle"]] = report["stats"]
                self._stage = report["stage"]
        totals: Counter = Counter()
        for stats in self._latest.values():
            totals.update(stats)
        return totals

    def line(self) -> str:
        totals = self.totals()
        elapsed = time.monotonic() - self._start
        done = share_done(totals, self._input_bytes, self._context_length)
        eta = f"ETA {_duration(elapsed * (1 - done) / done)}" if 0.02 <= done < 1 else "ETA -"
        mb = self._input_bytes / 1e6
        return (f"fimflow: {self._stage:<8} {done:4.0%} of {mb:,.1f} MB | {totals['documents']:,} documents, "
                f"{totals['document_tokens']:,} tokens, {totals['examples']:,} examples | "
                f"{mb * done / elapsed if elapsed else 0:.2f} MB/s | {eta}")

    def _loop(self):
        while not self._stop.wait(self._every):
            try:
                line = self.line()
            except (OSError, ValueError):  # A file half-written or removed meanwhile: next time.
                continue
            if self._interactive:
                self._stream.write("\r\033[K" + line)
                self._stream.flush()
            else:
                logger.info("%s", line)

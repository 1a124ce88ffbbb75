"""Encoding documents in several processes, for a pipeline that runs in one.

The in-process DirectRunner runs every DoFn in one Python thread, and the word
cache's work is Python holding the GIL: one core, however many the machine
has. A ``TokenizerPool`` splits each batch of documents between the calling
process and ``processes - 1`` helper processes, each with its own copy of the
tokenizer and its own word cache. Encoding is exact in every process, so the
ids do not depend on how a batch was split or which process encoded what.

A helper is a Python process running ``_serve`` of this module, talking
pickles over its stdin and stdout. Not ``multiprocessing``: its ``fork`` can deadlock a child of
a process running Beam's threads, and its ``spawn`` re-imports the caller's
main script in the child, which for a script without a ``__main__`` guard
means running the pipeline again. A helper imports this module and
``transforms.core.tokenizer``, which do not import Beam, so it starts in a
fraction of a second; it exits when its stdin closes, also when the calling
process dies. Runners with a worker process per core (Dataflow, the
multi-processing DirectRunner) need no pool: ``processes=1`` encodes in the
calling process only.

In: texts. Out: one array of ids per text, as ``Tokenizer.encode_documents_fast``.
"""

from __future__ import annotations

import bisect
import itertools
import os
import pickle
import signal
import subprocess
import sys
from typing import Optional

import numpy as np

from transforms.core.tokenizer import Tokenizer


def split_by_size(texts: list[str], parts: int) -> list[list[str]]:
    """``texts`` cut into ``parts`` consecutive runs of about equal total length (some may be empty)."""
    ends = list(itertools.accumulate(map(len, texts)))
    total = ends[-1] if ends else 0
    # Each run ends with the text that reaches its share of the total.
    cuts = [0] + [min(bisect.bisect_left(ends, total * k / parts) + 1, len(texts)) for k in range(1, parts)]
    cuts.append(len(texts))
    return [texts[a:b] for a, b in zip(cuts, cuts[1:])]


# A helper's program: the import path comes as its arguments.
_HELPER_MAIN = ("import sys; sys.path[:0] = sys.argv[1:]; del sys.argv[1:]; "
                f"from {__name__} import _serve; _serve()")


class HelperExited(RuntimeError):
    """A helper process is gone; the pool that owns it encodes no more."""


class _Helper:
    """One helper process; requests and replies are pickles, one at a time."""

    def __init__(self, tokenizer: Tokenizer):
        # This process's import path goes first, so the helper runs this very
        # module, also from a source checkout; with ``-m`` the working
        # directory would come first, and any ``transforms`` package there.
        paths = [p or os.getcwd() for p in sys.path]
        self._process = subprocess.Popen([sys.executable, "-c", _HELPER_MAIN, *paths],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send(tokenizer)

    def _send(self, message) -> None:
        try:
            pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._process.stdin.flush()
        except BrokenPipeError:
            raise self._exited() from None

    def _exited(self) -> HelperExited:
        return HelperExited(f"tokenizer helper process exited with code {self._process.wait()}; "
                            "its error is on stderr")

    def submit(self, texts: list[str], num_threads: int) -> None:
        self._send((texts, num_threads))

    def reply(self) -> tuple[bool, object]:
        """``(True, ids)``, or ``(False, exception)`` for an error in encoding."""
        try:
            return pickle.load(self._process.stdout)
        except EOFError:
            raise self._exited() from None

    def close(self) -> None:
        try:
            self._process.stdin.close()
        except BrokenPipeError:  # It has exited already.
            pass
        self._process.wait()


class TokenizerPool:
    """A tokenizer whose ``encode_documents_fast`` runs in ``processes`` processes."""

    def __init__(self, tokenizer: Tokenizer, processes: int):
        self.tokenizer = tokenizer
        self._helpers = [_Helper(tokenizer) for _ in range(processes - 1)]
        self._failure: Optional[HelperExited] = None

    def encode_documents_fast(self, texts: list[str], num_threads: int = 1) -> list[np.ndarray]:
        if self._failure is not None:
            # A helper may hold a request it never answered: nothing it sends can be trusted.
            raise HelperExited(f"an earlier batch lost a helper: {self._failure}")
        own, *shares = split_by_size(texts, len(self._helpers) + 1)
        busy = [(helper, share) for helper, share in zip(self._helpers, shares) if share]
        try:
            for helper, share in busy:
                helper.submit(share, num_threads)
            try:
                ids = self.tokenizer.encode_documents_fast(own, num_threads)
            finally:
                # Every reply is read, also after an error: one left in a pipe
                # would be taken for the next batch's.
                replies = [helper.reply() for helper, _ in busy]
        except HelperExited as e:
            self._failure = e
            raise
        for ok, value in replies:
            if not ok:
                raise value
            ids += value
        return ids

    def close(self) -> None:
        for helper in self._helpers:
            helper.close()
        self._helpers = []


def _serve() -> None:
    # Ctrl-C reaches the whole process group; the calling process decides,
    # and its exit closes this helper's stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    # Replies get fd 1 to themselves; anything else that writes there goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    tokenizer = pickle.load(requests)
    while True:
        try:
            texts, num_threads = pickle.load(requests)
        except EOFError:
            return
        try:
            reply = (True, tokenizer.encode_documents_fast(texts, num_threads))
        except Exception as e:  # Raised again in the calling process, as if it had encoded.
            reply = (False, e)
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

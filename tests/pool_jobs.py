"""Jobs the tokenizer pool's tests hand to helper processes: module-level, Beam-free, so a helper imports them."""

from __future__ import annotations

import os
import time


def encoded_where(tokenizer, texts: list[str]) -> tuple[list[list[int]], int]:
    """The ids of ``texts`` and the process that encoded them."""
    return [ids.tolist() for ids in tokenizer.encode_documents_fast(texts)], os.getpid()


def slow_pid(tokenizer, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def exit_now(tokenizer, code: int) -> None:
    """A helper that dies in the middle of a job, as a killed one does (never run in the test's process)."""
    os._exit(code)

"""Infilling problems cut out of held-out documents (the FIM paper's evaluation tasks).

Each function takes a document's text and a seeded generator and returns
``(prefix, middle, suffix)`` with ``prefix + middle + suffix == text``, or
``None`` when the document has no such span:

* ``single_line``: one whole non-blank line (without its line break);
* ``multi_line``: an indented block, the lines below a line that opens one
  (a function or class body, a loop's body, a brace block's lines), up to the
  last line indented deeper than the opener;
* ``random_span``: a span between two character positions drawn uniformly.
"""

from __future__ import annotations

from typing import Callable, Optional

Task = Optional[tuple[str, str, str]]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _joined(lines: list[str], start: int, end: int) -> tuple[str, str, str]:
    """``lines[start:end]`` as the middle, without the last line's break (the suffix keeps it)."""
    body = "".join(lines[start:end])
    stripped = body.rstrip("\r\n")
    return "".join(lines[:start]), stripped, body[len(stripped):] + "".join(lines[end:])


def single_line(text: str, rng) -> Task:
    lines = text.splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    if not candidates:
        return None
    i = rng.choice(candidates)
    return _joined(lines, i, i + 1)


def indented_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """``(start, end)`` of each block of two or more non-blank lines indented deeper than the line above."""
    blocks = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        end = i + 1
        last = None
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > _indent(line)):
            if lines[end].strip():
                last = end
            end += 1
        if last is not None and sum(1 for k in range(i + 1, last + 1) if lines[k].strip()) >= 2:
            blocks.append((i + 1, last + 1))
    return blocks


def multi_line(text: str, rng) -> Task:
    lines = text.splitlines(keepends=True)
    blocks = indented_blocks(lines)
    if not blocks:
        return None
    return _joined(lines, *rng.choice(blocks))


def random_span(text: str, rng) -> Task:
    if len(text) < 2:
        return None
    i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
    if i == j:
        j = min(i + 1, len(text))
        i = j - 1
    return text[:i], text[i:j], text[j:]


TASKS: dict[str, Callable[[str, object], Task]] = {
    "single_line": single_line, "multi_line": multi_line, "random_span": random_span}

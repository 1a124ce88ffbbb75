"""Benchmark n-grams, and whether a document shares one (decontamination).

A benchmark file is JSONL (each string field of each record is one text)
or a plain file (one text). Texts are split on whitespace into words; an
n-gram is ``n`` consecutive words. A document is contaminated by a file when
one of its n-grams is one of the file's. A document shorter than ``n`` words
holds no n-gram and is never dropped: short sequences match by chance.
"""

from __future__ import annotations

import json
from typing import Iterator

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


class BenchmarkError(ValueError):
    """A benchmark file fimflow cannot read as what its name says."""


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def benchmark_texts(path: str, data: bytes) -> list[str]:
    """The texts of one benchmark file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BenchmarkError(f"{path}: not UTF-8 ({e})") from e
    if not path.endswith(JSONL_SUFFIXES):
        return [text]
    texts = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                texts += _strings(json.loads(line))
            except ValueError as e:
                raise BenchmarkError(f"{path}: line {number} is not JSON ({e}); name plain files without "
                                     f"a {'/'.join(JSONL_SUFFIXES)} suffix") from e
    return texts


class BenchmarkIndex:
    """The n-grams of several benchmark files, and which files hold each."""

    def __init__(self, files: list[tuple[str, list[str]]], n: int):
        self.n = n
        self.names = [name for name, _ in files]
        self._files_of: dict[str, tuple] = {}
        for index, (_, texts) in enumerate(files):
            for text in texts:
                words = text.split()
                for i in range(len(words) - n + 1):
                    gram = " ".join(words[i:i + n])
                    held = self._files_of.get(gram, ())
                    if index not in held:
                        self._files_of[gram] = held + (index,)
        # Only positions that start some benchmark n-gram are looked up.
        self._first_words = {gram.split(" ", 1)[0] for gram in self._files_of}

    def ngram_counts(self) -> dict:
        counts = dict.fromkeys(self.names, 0)
        for held in self._files_of.values():
            for index in held:
                counts[self.names[index]] += 1
        return counts

    def matches(self, text: str) -> dict:
        """``{file name: the first shared n-gram}`` for each benchmark file ``text`` shares one with."""
        words = text.split()
        n, found = self.n, {}
        first_words = self._first_words
        for i in range(len(words) - n + 1):
            if words[i] in first_words:
                gram = " ".join(words[i:i + n])
                for index in self._files_of.get(gram, ()):
                    found.setdefault(self.names[index], gram)
        return found

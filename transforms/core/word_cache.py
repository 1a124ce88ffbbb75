"""Encoding documents through caches of word encodings.

With a tokenizer whose pieces never cross certain cuts in the text (see
``Tokenizer``: a BPE model checked against its vocabulary), a document's ids
are the concatenation of the ids of its parts between those cuts. Code
repeats its words heavily (``self.assertEqual(``, ``    return``), so most
parts were seen before and only new ones go to SentencePiece. Two levels:
documents are split into words (``WORD``), and a word not seen before into
runs of letters and runs of other characters (``ATOM``). On the
Python standard library (31.5 MB) 12 MB are in distinct words but only
1.9 MB in distinct atoms, so SentencePiece encodes about 6% of the text.

In: texts. Out: one array of ids per text, equal to what the tokenizer's
encoder gives for it (tests check this on arbitrary Unicode and on real
corpora). FIM re-encodes the text it cuts out through the same cache.
"""

from __future__ import annotations

import itertools
import re
import threading
from typing import NamedTuple

import numpy as np

# Texts of one call are joined with this and split by one regex call: Python
# pays per call and per match, not per character. A lone surrogate, so no
# text can hold it (SentencePiece cannot encode one; reading rejects them).
_SEPARATOR = "\udfff"


class Split(NamedTuple):
    """One way of cutting text, as a regex whose matches are the parts.

    ``ascii`` is the same split written for ASCII text only, where it is
    faster. Both match ``_SEPARATOR`` alone.
    """

    unicode: re.Pattern
    ascii: re.Pattern


def _split(unicode: str, ascii: str) -> Split:
    return Split(re.compile(f"{unicode}|{_SEPARATOR}"), re.compile(f"{ascii}|{_SEPARATOR}"))


# A word: a run of spaces, then non-spaces; or trailing spaces. Cuts exactly
# where a space follows a non-space. U+2581 counts as a space: SentencePiece
# writes spaces as it, so text holding it encodes as if it held a space.
_WORD = f"[ \u2581]*[^ \u2581{_SEPARATOR}]+|[ \u2581]+"
WORD = _split(_WORD, _WORD)
# Also cuts between letters and other characters. Digits and "_" count as
# punctuation: models join them with it, as in "__(" and "[0]".
ATOM = _split(f"[ \u2581]*(?:[^\\W\\d_]+|(?:[^\\w \u2581{_SEPARATOR}]|[\\d_])+)|[ \u2581]+",
              f" *(?:[A-Za-z]+|[^A-Za-z {_SEPARATOR}]+)| +")
# Words of byte-level BPEs, for the pre-tokenizer regexes that
# ``transforms.core.huggingface_tokenizer`` names. GPT-2's regex never puts a
# non-whitespace character and a whitespace one after it in one match
# (whitespace only leads a match or is all of it), so each such pair is a cut;
# the whitespace side is taken from the six ASCII characters every regex
# engine's ``\s`` has, and Python's ``\s`` holds all of any engine's, so its
# ``\S`` side is never whitespace there. Llama 3's and Qwen2's regexes glue
# newlines to punctuation before them (``):\n``), so they cut before a space
# or tab after a non-whitespace character, and before a newline only after an
# ASCII letter or digit.
_GPT2_WORD = f"\\s*(?:[^\\s{_SEPARATOR}]+|[^\\S \\t\\n\\r\\x0b\\x0c]\\s*)+|\\s+"
GPT2_WORD = _split(_GPT2_WORD, _GPT2_WORD)
_LLAMA3_WORD = (f"\\s*(?:[A-Za-z0-9]+|[^\\sA-Za-z0-9{_SEPARATOR}]+(?:[\\r\\n]\\s*)?|[^\\S \\t\\r\\n]\\s*)+"
                "|\\s+")
LLAMA3_WORD = _split(_LLAMA3_WORD, _LLAMA3_WORD)


class WordCache:
    """Caches from word text to the bytes of its ids, one per split level.

    Each cache is bounded: when it holds more than ``max_words`` entries it
    starts over, so a worker's memory stays flat however large the corpus.
    Parts longer than ``max_word_chars`` (minified code, base64) are encoded
    but never kept. Thread-safe: Beam runs several DoFn threads per worker
    process sharing one tokenizer; SentencePiece holds the GIL while encoding,
    so the lock costs no parallelism.
    """

    def __init__(self, encoder, splits: tuple, dtype, max_words: int = 1 << 17, max_word_chars: int = 256):
        self._encoder = encoder
        self._dtype = np.dtype(dtype)
        # Stands for the separator among ids: -1, which no id is. Every
        # byte-aligned window of its width holds the top byte of some id,
        # which is below 0x80 for ids >= 0, so it only occurs where it was put.
        self._marker = np.array([-1], dtype=self._dtype).tobytes()
        self._levels = [(split, {_SEPARATOR: self._marker}) for split in splits]
        self._max_words = max_words
        self._max_word_chars = max_word_chars
        self._lock = threading.Lock()

    def cached(self) -> list[int]:
        """How many parts each level holds."""
        return [len(table) - 1 for _, table in self._levels]

    def encode(self, texts: list[str], num_threads: int = 1) -> list[np.ndarray]:
        """Ids of ``texts`` as ``encoder`` gives them; a dummy prefix is the caller's business."""
        with self._lock:
            encoded = self._encode(texts, 0, num_threads)
        return [np.frombuffer(ids, dtype=self._dtype) for ids in encoded]

    def _encode(self, texts: list[str], level: int, num_threads: int) -> list[bytes]:
        if level == len(self._levels):
            return self._encode_uncached(texts, num_threads)
        is_ascii = [text.isascii() for text in texts]
        split = self._levels[level][0]
        ascii_ids = iter(self._encode_joined([t for t, a in zip(texts, is_ascii) if a], level, split.ascii,
                                             num_threads))
        other_ids = iter(self._encode_joined([t for t, a in zip(texts, is_ascii) if not a], level,
                                             split.unicode, num_threads))
        return [next(ascii_ids) if a else next(other_ids) for a in is_ascii]

    def _encode_joined(self, texts: list[str], level: int, pattern: re.Pattern, num_threads: int) -> list[bytes]:
        if not texts:
            return []
        joined = _SEPARATOR.join(texts)
        if joined.count(_SEPARATOR) != len(texts) - 1:
            raise ValueError("text holds a lone surrogate, which no tokenizer can encode")
        parts = pattern.findall(joined)
        table = self._levels[level][1]
        new = list(set(parts).difference(table))
        if new:
            table.update(zip(new, self._encode(new, level + 1, num_threads)))
        encoded = b"".join(map(table.__getitem__, parts)).split(self._marker)
        for part in new:
            if len(part) > self._max_word_chars:
                del table[part]
        if len(table) > self._max_words:
            table.clear()
            table[_SEPARATOR] = self._marker
        return encoded

    def _encode_uncached(self, texts: list[str], num_threads: int) -> list[bytes]:
        ids = self._encoder.encode(texts, num_threads=num_threads)
        lengths = list(map(len, ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=self._dtype, count=sum(lengths)).tobytes()
        ends = (np.cumsum(lengths, dtype=np.int64) * self._dtype.itemsize).tolist()
        return [flat[start:end] for start, end in zip([0] + ends, ends)]

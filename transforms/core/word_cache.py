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
The ASCII texts of a large enough call take the same levels on numpy arrays
(``transforms.core.array_word_cache``), where Python's cost per word is gone.

In: texts. Out: one array of ids per text, equal to what the tokenizer's
encoder gives for it (tests check this on arbitrary Unicode and on real
corpora). FIM re-encodes the text it cuts out through the same cache.
"""

from __future__ import annotations

import re
import threading
from typing import Callable, NamedTuple, Optional

import numpy as np

from transforms.core.array_word_cache import ArrayWordCache, flat_ids

# Texts of one call are joined with this and split by one regex call: Python
# pays per call and per match, not per character. A lone surrogate, so no
# text can hold it (SentencePiece cannot encode one; reading rejects them).
_SEPARATOR = "\udfff"


class Split(NamedTuple):
    """One way of cutting text, as a regex whose matches are the parts.

    ``ascii`` is the same split written for ASCII text only, where it is
    faster. Both match ``_SEPARATOR`` alone. ``ascii_cuts``, where given, is
    it again as a function of an ASCII text's bytes (a uint8 array) to where
    parts start after the first (a bool array as long): the word cache's
    array path (``transforms.core.array_word_cache``).
    """

    unicode: re.Pattern
    ascii: re.Pattern
    ascii_cuts: Optional[Callable[[np.ndarray], np.ndarray]] = None


def _split(unicode: str, ascii: str, ascii_cuts=None) -> Split:
    return Split(re.compile(f"{unicode}|{_SEPARATOR}"), re.compile(f"{ascii}|{_SEPARATOR}"), ascii_cuts)


_SPACE = ord(" ")
# 0 a space, 1 an ASCII letter, 2 anything else.
_ATOM_CLASS = np.full(256, 2, dtype=np.int8)
_ATOM_CLASS[_SPACE] = 0
_ATOM_CLASS[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)] = 1


def _word_cuts(data: np.ndarray) -> np.ndarray:
    """WORD on ASCII: a part starts at a space after a non-space."""
    cuts = np.zeros(len(data), dtype=bool)
    space = data == _SPACE
    cuts[1:] = space[1:] & ~space[:-1]
    return cuts


def _atom_cuts(data: np.ndarray) -> np.ndarray:
    """ATOM on ASCII: also where letters meet other non-spaces; spaces stay with what follows them."""
    cuts = np.zeros(len(data), dtype=bool)
    kind = _ATOM_CLASS[data]
    after, before = kind[1:], kind[:-1]
    cuts[1:] = (before != 0) & ((after == 0) | (after != before))
    return cuts


# A word: a run of spaces, then non-spaces; or trailing spaces. Cuts exactly
# where a space follows a non-space. U+2581 counts as a space: SentencePiece
# writes spaces as it, so text holding it encodes as if it held a space.
_WORD = f"[ \u2581]*[^ \u2581{_SEPARATOR}]+|[ \u2581]+"
WORD = _split(_WORD, _WORD, _word_cuts)
# Also cuts between letters and other characters. Digits and "_" count as
# punctuation: models join them with it, as in "__(" and "[0]".
ATOM = _split(f"[ \u2581]*(?:[^\\W\\d_]+|(?:[^\\w \u2581{_SEPARATOR}]|[\\d_])+)|[ \u2581]+",
              f" *(?:[A-Za-z]+|[^A-Za-z {_SEPARATOR}]+)| +", _atom_cuts)
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


# Calls with less ASCII text than this take the dicts: the array path costs
# about 0.3 ms a call whatever its size (FIM re-encodes a few words a call).
ARRAY_MIN_CHARS = 1 << 14


class WordCache:
    """Caches from word text to the bytes of its ids, one per split level.

    Each level is bounded: when it holds more than ``max_words`` entries it
    starts over, so a worker's memory stays flat however large the corpus.
    Parts longer than ``max_word_chars`` (minified code, base64) are encoded
    but never kept. Where every split has ``ascii_cuts``, ASCII texts take
    the array path (``ArrayWordCache``, its own entries, counted in the same
    bound) and other texts the dicts here; calls with less ASCII text than
    ``array_min_chars`` take the dicts too. ``key_bits`` narrows the array
    path's hashes, for tests of its collisions. Thread-safe: Beam runs several
    DoFn threads per worker process sharing one tokenizer; SentencePiece holds
    the GIL while encoding, so the lock costs no parallelism.
    """

    def __init__(self, encoder, splits: tuple, dtype, max_words: int = 1 << 17, max_word_chars: int = 256,
                 array_min_chars: int = ARRAY_MIN_CHARS, key_bits: int = 64):
        self._encoder = encoder
        self._dtype = np.dtype(dtype)
        # Stands for the separator among ids: -1, which no id is. Every
        # byte-aligned window of its width holds the top byte of some id,
        # which is below 0x80 for ids >= 0, so it only occurs where it was put.
        self._marker = np.array([-1], dtype=self._dtype).tobytes()
        self._levels = [(split, {_SEPARATOR: self._marker}) for split in splits]
        self._arrays = (ArrayWordCache(tuple(split.ascii_cuts for split in splits), self._encode_flat, self._dtype,
                                       max_word_chars, key_bits)
                        if all(split.ascii_cuts for split in splits) else None)
        self._array_min_chars = array_min_chars
        self._max_words = max_words
        self._max_word_chars = max_word_chars
        self._lock = threading.Lock()

    def cached(self) -> list[int]:
        """How many parts each level holds."""
        arrays = self._arrays.cached() if self._arrays else [0] * len(self._levels)
        return [len(table) - 1 + n for (_, table), n in zip(self._levels, arrays)]

    def encode(self, texts: list[str], num_threads: int = 1) -> list[np.ndarray]:
        """Ids of ``texts`` as ``encoder`` gives them; a dummy prefix is the caller's business."""
        with self._lock:
            is_ascii = [text.isascii() for text in texts]
            ascii_texts = [t for t, a in zip(texts, is_ascii) if a]
            if self._arrays is None or sum(map(len, ascii_texts)) < self._array_min_chars:
                encoded = [np.frombuffer(ids, dtype=self._dtype) for ids in self._encode(texts, 0, num_threads)]
            else:
                ascii_ids = iter(self._arrays.encode(ascii_texts, num_threads))
                other_ids = iter(self._encode([t for t, a in zip(texts, is_ascii) if not a], 0, num_threads))
                encoded = [next(ascii_ids) if a else np.frombuffer(next(other_ids), dtype=self._dtype)
                           for a in is_ascii]
            for level, count in enumerate(self.cached()):
                if count > self._max_words:
                    self._levels[level][1].clear()
                    self._levels[level][1][_SEPARATOR] = self._marker
                    if self._arrays:
                        self._arrays.clear(level)
        return encoded

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
        return encoded

    def _encode_flat(self, texts: list[str], num_threads: int) -> tuple[np.ndarray, np.ndarray]:
        return flat_ids(self._encoder.encode(texts, num_threads=num_threads), self._dtype)

    def _encode_uncached(self, texts: list[str], num_threads: int) -> list[bytes]:
        flat, lengths = self._encode_flat(texts, num_threads)
        flat = flat.tobytes()
        ends = (np.cumsum(lengths) * self._dtype.itemsize).tolist()
        return [flat[start:end] for start, end in zip([0] + ends, ends)]

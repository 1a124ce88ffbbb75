"""MinHash signatures and LSH bands for near-duplicate detection (no Beam).

A document's *shingles* are its word ``n``-grams (whitespace-separated words,
default 5, as BigCode's near-deduplication of The Stack used); its signature
is, for each of ``num_perm`` hash functions, the least hash of any shingle,
so two signatures agree at a position with probability equal to the Jaccard
similarity of the two shingle sets. Signatures are cut into ``bands`` bands
of ``rows`` values; documents that share a whole band are *candidates*, and a
candidate pair is a near-duplicate when the share of agreeing signature values
(the estimated Jaccard) reaches the threshold.

Everything here is seeded by ``MINHASH_SEED``, a constant, never by
``--seed``: which documents are near-duplicates, and so what is removed and
which split a document's cluster lands in, must not move with the shuffle seed.
The hash functions are multiply-shift, ``(a*x + b) mod 2^64 >> 32`` for odd 64-bit
``a`` over 32-bit shingle hashes (BLAKE2b): a 2-universal family, which numpy evaluates without a
modulo, twice as fast as ``datasketch``'s ``(a*x + b) mod (2^61 - 1)``.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

import numpy as np

MINHASH_SEED = 0x5EED_F1F0
DEFAULT_NGRAM = 5
DEFAULT_NUM_PERM = 256
DEFAULT_THRESHOLD = 0.7
_SHIFT = np.uint64(32)
# Shingles hashed per step: bounds the (shingles x permutations) matrix to 8 MiB per 256 permutations.
_SHINGLES_PER_STEP = 4096


class LshParams(NamedTuple):
    num_perm: int
    bands: int
    rows: int
    threshold: float


def _false_positive(threshold: float, bands: int, rows: int) -> float:
    s = np.linspace(0.0, threshold, 201)
    return float(np.trapezoid(1 - (1 - s ** rows) ** bands, s))


def _false_negative(threshold: float, bands: int, rows: int) -> float:
    s = np.linspace(threshold, 1.0, 201)
    return float(np.trapezoid(1 - (1 - (1 - s ** rows) ** bands), s))


@functools.lru_cache(maxsize=None)
def lsh_params(threshold: float = DEFAULT_THRESHOLD, num_perm: int = DEFAULT_NUM_PERM) -> LshParams:
    """The bands and rows (``bands * rows <= num_perm``) that minimize the probability mass of false
    positives below ``threshold`` plus false negatives above it, equally weighted: the rule ``datasketch``'s
    ``MinHashLSH`` uses, which BigCode's deduplication ran with. 256 permutations at 0.7 give 25 bands of 10."""
    best = min(((_false_positive(threshold, b, r) + _false_negative(threshold, b, r), b, r)
                for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)))
    return LshParams(num_perm, best[1], best[2], threshold)


@functools.lru_cache(maxsize=None)
def _permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(MINHASH_SEED)
    a = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64, endpoint=False) | np.uint64(1)
    b = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64, endpoint=False)
    return a, b


def shingles(text: str, ngram: int = DEFAULT_NGRAM) -> set[bytes]:
    """The word ``ngram``-grams of ``text`` (all its words as one shingle when it has fewer)."""
    words = text.split()
    if len(words) < ngram:
        return {" ".join(words).encode("utf-8", "surrogatepass")}
    return {" ".join(words[i:i + ngram]).encode("utf-8", "surrogatepass") for i in range(len(words) - ngram + 1)}


def signature(text: str, ngram: int = DEFAULT_NGRAM, num_perm: int = DEFAULT_NUM_PERM) -> np.ndarray:
    """The MinHash signature of ``text``: ``num_perm`` uint32 values."""
    hashes = np.fromiter((int.from_bytes(hashlib.blake2b(s, digest_size=4).digest(), "little")
                          for s in shingles(text, ngram)), dtype=np.uint64)
    a, b = _permutations(num_perm)
    result = np.full(num_perm, 0xFFFFFFFF, dtype=np.uint64)
    for start in range(0, len(hashes), _SHINGLES_PER_STEP):
        x = hashes[start:start + _SHINGLES_PER_STEP, None]
        np.minimum(result, ((x * a + b) >> _SHIFT).min(axis=0), out=result)
    return result.astype(np.uint32)


def band_keys(sig: np.ndarray, params: LshParams) -> list[bytes]:
    """One key per band: the band's index and a digest of its rows."""
    rows = params.rows
    return [i.to_bytes(2, "little") + hashlib.blake2b(sig[i * rows:(i + 1) * rows].tobytes(), digest_size=8).digest()
            for i in range(params.bands)]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


def jaccard(a: str, b: str, ngram: int = DEFAULT_NGRAM) -> float:
    """The exact Jaccard similarity of two texts' shingle sets (what the estimate estimates)."""
    x, y = shingles(a, ngram), shingles(b, ngram)
    return len(x & y) / len(x | y) if x | y else 1.0

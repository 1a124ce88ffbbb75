"""The word cache's path for ASCII text: its levels as numpy arrays.

``transforms.core.word_cache`` splits text with regexes and looks parts up
in dicts, paying Python's cost per part (about 1 µs; code has a word per 11
bytes). For ASCII text the same cuts are a function of neighbouring bytes
(``Split.ascii_cuts``), so here a whole call is one byte array: a level finds
its parts' starts with array operations, hashes every part at once from one
prefix sum, looks the hashes up in a sorted array, and gathers the ids of
all parts in one indexing step. Only parts new at the last level become
strings, for the tokenizer. On one process's batches of a 94.6 MB run of
distinct code this took 3.8 CPU-s against the dicts' 5.1-5.5
(``docs/throughput.md``).

A hash only finds a candidate: every part found is compared byte for byte
with the entry's stored text (length, then bytes), and a part that differs
(a hash collision) is encoded as new and not kept. Two different parts never
share ids, whatever the hash does: tests truncate it to 1 and 2 bits. Text
made to collide (the hash is a polynomial modulo 2**64) is only slower.

In: ASCII texts. Out: one array of ids per text, equal to what the word
cache's other path gives.
"""

from __future__ import annotations

import itertools
from typing import Callable, NamedTuple

import numpy as np

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_INVERSE = np.uint64(pow(int(_BASE), -1, 1 << 64))
_LENGTH_MIX = np.uint64(0xD6E8FEB86659FD93)

# Texts are taken this many characters at a time: the arrays of one group
# need about 60 bytes per character.
GROUP_CHARS = 1 << 20


def flat_ids(ids: list, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Lists of ids as one array of ``dtype`` and each list's length."""
    counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(counts.sum()))
    return flat, counts


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The positions ``start .. start + count - 1`` of every pair, concatenated."""
    ends = np.cumsum(counts)
    within = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(ends - counts, counts)
    return np.repeat(starts.astype(np.int64, copy=False), counts) + within


class _Buffer:
    """An array that grows at its end."""

    def __init__(self, dtype):
        self.data = np.zeros(1 << 12, dtype=dtype)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            grown = np.zeros(max(end, 2 * len(self.data)), dtype=self.data.dtype)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:end] = values
        self.size = end


class _Level:
    """One level's cache: part hashes, sorted, and where each entry's text and ids are."""

    def __init__(self, dtype):
        self.keys = np.zeros(0, dtype=np.uint64)
        self.text_starts = np.zeros(0, dtype=np.int64)
        self.text_lengths = np.zeros(0, dtype=np.int64)
        self.id_starts = np.zeros(0, dtype=np.int64)
        self.id_counts = np.zeros(0, dtype=np.int64)
        self.texts = _Buffer(np.uint8)
        self.ids = _Buffer(dtype)


class _Call(NamedTuple):
    """What every level of one call reads: the text's bytes and their prefix hashes."""

    text: str
    data: np.ndarray
    prefix: np.ndarray


class ArrayWordCache:
    """The word cache's levels for ASCII text (see the module docstring).

    ``cuts``: one function per level, from the bytes of a text to where its
    parts start (``Split.ascii_cuts``). ``encode_flat(texts, num_threads)``:
    the tokenizer on parts new at the last level, as ``flat_ids``. Not
    thread-safe: ``WordCache`` holds its lock around every call.
    """

    def __init__(self, cuts: tuple[Callable[[np.ndarray], np.ndarray], ...], encode_flat, dtype,
                 max_word_chars: int, key_bits: int = 64):
        self._cuts = cuts
        self._encode_flat = encode_flat
        self._dtype = np.dtype(dtype)
        self._max_word_chars = max_word_chars
        self._key_shift = np.uint64(64 - key_bits)
        self._levels = [_Level(self._dtype) for _ in cuts]
        self._powers = np.ones(1, dtype=np.uint64)
        self._inverse_powers = np.ones(1, dtype=np.uint64)

    def cached(self) -> list[int]:
        return [len(level.keys) for level in self._levels]

    def clear(self, level: int) -> None:
        self._levels[level] = _Level(self._dtype)

    def encode(self, texts: list[str], num_threads: int) -> list[np.ndarray]:
        encoded: list[np.ndarray] = []
        group: list[str] = []
        chars = 0
        for text in texts:
            if group and chars + len(text) > GROUP_CHARS:
                encoded += self._encode_group(group, num_threads)
                group, chars = [], 0
            group.append(text)
            chars += len(text)
        return encoded + self._encode_group(group, num_threads)

    def _encode_group(self, texts: list[str], num_threads: int) -> list[np.ndarray]:
        if not texts:
            return []
        text = "".join(texts)
        data = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        powers, _ = self._powers_for(len(data))
        prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum(data * powers[:len(data)], out=prefix[1:])
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        ends = np.cumsum(lengths)
        nonempty = lengths > 0
        flat, counts = self._encode_spans(_Call(text, data, prefix), 0, (ends - lengths)[nonempty], ends[nonempty],
                                          num_threads)
        per_text = np.zeros(len(texts), dtype=np.int64)
        per_text[nonempty] = counts
        return np.split(flat, np.cumsum(per_text)[:-1])

    def _powers_for(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``BASE**i`` and its inverse for ``i < n``, modulo 2**64 (numpy's unsigned arithmetic wraps)."""
        if len(self._powers) < n:
            size = max(n, 2 * len(self._powers))
            self._powers = np.cumprod(np.concatenate([[np.uint64(1)], np.full(size - 1, _BASE)]))
            self._inverse_powers = np.cumprod(np.concatenate([[np.uint64(1)], np.full(size - 1, _INVERSE)]))
        return self._powers, self._inverse_powers

    def _keys(self, call: _Call, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        _, inverse = self._powers_for(len(call.data))
        hashes = (call.prefix[ends] - call.prefix[starts]) * inverse[starts]
        return (hashes ^ (ends - starts).astype(np.uint64) * _LENGTH_MIX) >> self._key_shift

    def _encode_spans(self, call: _Call, level: int, starts: np.ndarray, ends: np.ndarray,
                      num_threads: int) -> tuple[np.ndarray, np.ndarray]:
        """The ids of the text of every span (disjoint, in order), concatenated, and how many each has."""
        if level == len(self._levels):
            return self._encode_flat([call.text[s:e] for s, e in zip(starts.tolist(), ends.tolist())], num_threads)
        data, cache = call.data, self._levels[level]
        if not len(starts):
            return np.zeros(0, dtype=self._dtype), np.zeros(0, dtype=np.int64)
        part_start = self._cuts[level](data)
        if level:
            # Only the spans are split here: the rest of the text was found at a level above.
            inside = np.zeros(len(data) + 1, dtype=np.int8)
            inside[starts] = 1
            inside[ends] -= 1
            part_start &= np.cumsum(inside[:-1], dtype=np.int8).view(bool)
        part_start[starts] = True
        part_starts = np.flatnonzero(part_start)
        span_start = np.zeros(len(data), dtype=bool)
        span_start[starts] = True
        opens_span = span_start[part_starts]
        part_ends = np.empty_like(part_starts)
        part_ends[:-1] = part_starts[1:]
        part_ends[-1] = len(data)
        np.minimum(part_ends, ends[np.cumsum(opens_span) - 1], out=part_ends)
        part_lengths = part_ends - part_starts
        keys = self._keys(call, part_starts, part_ends)

        # Sorted lookups: numpy's binary search starts from the previous answer.
        order = np.argsort(keys)
        entry = np.empty(len(keys), dtype=np.int64)
        entry[order] = np.searchsorted(cache.keys, keys[order])
        found = np.zeros(len(keys), dtype=bool)
        if len(cache.keys):
            np.minimum(entry, len(cache.keys) - 1, out=entry)
            found = cache.keys[entry] == keys
            hits = np.flatnonzero(found)
            found[hits[self._differ(data, part_starts[hits], part_lengths[hits], cache.texts.data,
                                    cache.text_starts[entry[hits]], cache.text_lengths[entry[hits]])]] = False
        hits, misses = np.flatnonzero(found), np.flatnonzero(~found)
        id_starts = np.empty(len(keys), dtype=np.int64)
        id_counts = np.empty(len(keys), dtype=np.int64)
        id_starts[hits] = cache.id_starts[entry[hits]]
        id_counts[hits] = cache.id_counts[entry[hits]]
        ids = cache.ids.data[:cache.ids.size]
        if len(misses):
            new_ids, new_starts, new_counts = self._encode_misses(call, level, cache, keys, misses, part_starts,
                                                                  part_lengths, num_threads)
            id_starts[misses] = new_starts
            id_counts[misses] = new_counts
            ids = np.concatenate([ids, new_ids])
        return ids[ranges(id_starts, id_counts)], np.add.reduceat(id_counts, np.flatnonzero(opens_span))

    def _encode_misses(self, call: _Call, level: int, cache: _Level, keys: np.ndarray, misses: np.ndarray,
                       part_starts: np.ndarray, part_lengths: np.ndarray, num_threads: int):
        """Encodes the parts ``misses`` not found, each distinct text once, and caches those it may: their
        ids and, per miss, where its ids start among the cache's ids as they were followed by these."""
        data = call.data
        unique_keys, first, which = np.unique(keys[misses], return_index=True, return_inverse=True)
        representatives = misses[first]
        which = which.reshape(-1)
        # A miss whose text differs from its key's first one is a collision: encoded on its own.
        first_of_key = representatives[which]
        collided = self._differ(data, part_starts[misses], part_lengths[misses], data, part_starts[first_of_key],
                                part_lengths[first_of_key])
        which[collided] = len(representatives) + np.arange(len(collided))
        encoded = np.concatenate([representatives, misses[collided]])
        # The level below takes its spans in text order.
        in_order = np.argsort(part_starts[encoded])
        new_ids, counts_in_order = self._encode_spans(call, level + 1, part_starts[encoded[in_order]],
                                                     part_starts[encoded[in_order]] + part_lengths[encoded[in_order]],
                                                     num_threads)
        counts = np.empty_like(counts_in_order)
        counts[in_order] = counts_in_order
        offsets = np.empty_like(counts_in_order)
        offsets[in_order] = np.cumsum(counts_in_order) - counts_in_order

        # Cached: representatives short enough whose key no entry holds (a collision with an entry keeps it out).
        keep = np.flatnonzero(part_lengths[representatives] <= self._max_word_chars)
        if len(cache.keys):
            at = np.minimum(np.searchsorted(cache.keys, unique_keys[keep]), len(cache.keys) - 1)
            keep = keep[cache.keys[at] != unique_keys[keep]]
        at = np.searchsorted(cache.keys, unique_keys[keep])
        kept = representatives[keep]
        before = cache.ids.size
        cache.keys = np.insert(cache.keys, at, unique_keys[keep])
        cache.text_starts = np.insert(cache.text_starts, at,
                                      cache.texts.size + np.cumsum(part_lengths[kept]) - part_lengths[kept])
        cache.text_lengths = np.insert(cache.text_lengths, at, part_lengths[kept])
        cache.id_starts = np.insert(cache.id_starts, at, before + np.cumsum(counts[keep]) - counts[keep])
        cache.id_counts = np.insert(cache.id_counts, at, counts[keep])
        cache.texts.append(data[ranges(part_starts[kept], part_lengths[kept])])
        cache.ids.append(new_ids[ranges(offsets[keep], counts[keep])])
        # Where each miss's ids are among the cache's ids as they were, followed by ``new_ids``.
        return new_ids, before + offsets[which], counts[which]

    @staticmethod
    def _differ(a: np.ndarray, a_starts: np.ndarray, a_lengths: np.ndarray, b: np.ndarray, b_starts: np.ndarray,
                b_lengths: np.ndarray) -> np.ndarray:
        """Which pairs of byte runs, one of ``a`` and one of ``b``, differ in length or bytes (sorted indices)."""
        differ = a_lengths != b_lengths
        same = np.flatnonzero(~differ)
        lengths = a_lengths[same]
        unequal = a[ranges(a_starts[same], lengths)] != b[ranges(b_starts[same], lengths)]
        if unequal.any():  # seldom: only a hash collision gets here
            differ[np.repeat(same, lengths)[unequal]] = True
        return np.flatnonzero(differ)

"""Seeded global shuffle of tokenized documents.

In: ``TokenizedDocument``. Out: ``(bucket, documents)`` with the documents of
each bucket in their shuffled order.

Each document's position in the shuffled corpus is a keyed hash of the seed
and its content (and, for the second and later copies of identical
documents, its copy number) (``transforms.core.hashing.shuffle_key``), so the order
depends only on the data and the seed, not on the runner, the worker count or
retries. The hash also assigns the document to one of ``num_buckets``
buckets; the concatenation of buckets in bucket order is one random
permutation of the corpus, and each bucket is small enough to sort in one
worker's memory.
"""

from __future__ import annotations

from typing import Iterable

import apache_beam as beam

from transforms.core.hashing import shuffle_key
from transforms.schema import TokenizedDocument


def keyed_by_bucket(doc, seed, num_buckets):
    """``(bucket, (shuffle key, doc))``: which bucket a ``TokenizedDocument`` goes to, and its place there.

    Not annotated: Beam reads annotations as type hints, and would code the
    64-bit unsigned key as a signed varint.
    """
    key = shuffle_key(seed, doc.content_hash)
    return key % num_buckets, (key, doc)


def sorted_bucket(keyed: Iterable[tuple[int, TokenizedDocument]], seed: int) -> list[TokenizedDocument]:
    """A bucket's documents in shuffled order, identical documents apart.

    Identical documents (licence headers, vendored files) share a content
    hash, so a key, so a bucket; left alone they would sit side by side and
    be packed into the same contexts. Every copy after the first gets a key
    of its own, from its content and its copy number, so the copies scatter
    over the bucket. Copies are identical, so which is which changes no byte.
    """
    ordered = sorted(keyed, key=lambda kd: (kd[0], kd[1].content_hash))
    rekeyed, previous, copy = [], None, 0
    for key, doc in ordered:
        copy = copy + 1 if (key, doc.content_hash) == previous else 0
        previous = (key, doc.content_hash)
        if copy:
            key = shuffle_key(seed, doc.content_hash + copy.to_bytes(8, "little"))
        rekeyed.append((key, doc))
    return [doc for _, doc in sorted(rekeyed, key=lambda kd: (kd[0], kd[1].content_hash))]


class ShuffleDocuments(beam.PTransform):
    """``PCollection[TokenizedDocument]`` -> ``PCollection[tuple[int, list[TokenizedDocument]]]``."""

    def __init__(self, seed: int, num_buckets: int):
        super().__init__()
        self._seed = seed
        self._num_buckets = num_buckets

    def expand(self, documents):
        return (documents
                | "KeyByHash" >> beam.Map(keyed_by_bucket, self._seed, self._num_buckets)
                | "GroupBuckets" >> beam.GroupByKey()
                | "SortBucket" >> beam.MapTuple(lambda bucket, keyed, seed=self._seed:
                                                (bucket, sorted_bucket(keyed, seed))))

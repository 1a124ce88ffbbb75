"""Seeded global shuffle of tokenized documents, and exact de-duplication where copies meet.

In: ``TokenizedDocument``. Out: ``{'buckets': (bucket, documents) for every
bucket, empty or not, with its documents in their shuffled order, 'stats':
...}``; statistics: duplicates_removed, duplicate_text_bytes_removed,
duplicate_tokens_removed.

Each document's position in the shuffled corpus is a keyed hash of the seed
and its content (``transforms.core.hashing.shuffle_key``), so the order
depends only on the data and the seed, not on the runner, the worker count or
retries. The hash also assigns the document to one of ``num_buckets``
buckets; the concatenation of buckets in bucket order is one random
permutation of the corpus, and each bucket is small enough to sort in one
worker's memory.

A document crosses the shuffle with its ids compressed
(``transforms.core.compressed_ids``).

Identical documents share a content hash, so a key, so a bucket: exact
de-duplication (``dedup=True``) costs no shuffle of its own. A near-duplicate
stage (MinHash/LSH) would be a transform of its own on the same
``PCollection[TokenizedDocument]`` before this one, picking one document per
cluster; nothing here would change.
"""

from __future__ import annotations

from typing import Iterable

import apache_beam as beam

from transforms.core.compressed_ids import compressed, decompressed
from transforms.core.hashing import shuffle_key
from transforms.schema import Stats, TokenizedDocument
from transforms.stats import StepWithStats


def keyed_by_bucket(doc, seed, num_buckets):
    """``(bucket, (shuffle key, doc))``: which bucket a ``TokenizedDocument`` goes to, and its place there;
    its ids compressed (``decompressed`` restores them).

    Not annotated: Beam reads annotations as type hints, and would code the
    64-bit unsigned key as a signed varint.
    """
    key = shuffle_key(seed, doc.content_hash)
    return key % num_buckets, (key, compressed(doc))


def sorted_bucket(keyed: Iterable[tuple[int, TokenizedDocument]], seed: int, dedup: bool = False,
                  stats: Stats = None) -> list[TokenizedDocument]:
    """A bucket's documents (from ``keyed_by_bucket``) in shuffled order, ids decompressed; with ``dedup``
    one of each set of identical ones.

    Identical documents (licence headers, vendored files) sit side by side
    once sorted. With ``dedup`` every copy after the first is dropped (copies
    are identical, so which survives changes no byte) and counted in
    ``stats``. Without it, every copy after the first gets a key of its own,
    from its content and its copy number, so the copies scatter over the
    bucket instead of being packed into the same contexts.
    """
    # None marks the bucket as one to emit (ShuffleDocuments), documents or not.
    ordered = sorted((kd for kd in keyed if kd is not None), key=lambda kd: (kd[0], kd[1].content_hash))
    rekeyed, previous, copy = [], None, 0
    for key, doc in ordered:
        copy = copy + 1 if (key, doc.content_hash) == previous else 0
        previous = (key, doc.content_hash)
        if copy and dedup:
            stats["duplicates_removed"] += 1
            stats["duplicate_text_bytes_removed"] += doc.text_bytes
            stats["duplicate_tokens_removed"] += doc.ids.count
            continue
        if copy:
            key = shuffle_key(seed, doc.content_hash + copy.to_bytes(8, "little"))
        rekeyed.append((key, doc))
    return [decompressed(doc) for _, doc in sorted(rekeyed, key=lambda kd: (kd[0], kd[1].content_hash))]


class SortBucketStep:
    def __init__(self, seed: int, dedup: bool):
        self._seed = seed
        self._dedup = dedup

    def __call__(self, bucket_and_keyed, stats: Stats):
        bucket, keyed = bucket_and_keyed
        yield bucket, sorted_bucket(keyed, self._seed, self._dedup, stats)


class ShuffleDocuments(beam.PTransform):
    """``PCollection[TokenizedDocument]`` -> ``{'buckets': PCollection[tuple[int, list[TokenizedDocument]]],
    'stats': PCollection[Stats]}``; ``dedup``: keep one of each set of identical documents."""

    def __init__(self, seed: int, num_buckets: int, dedup: bool = False):
        super().__init__()
        self._seed = seed
        self._num_buckets = num_buckets
        self._step = SortBucketStep(seed, dedup)

    def expand(self, documents):
        every_bucket = (documents.pipeline
                        | "EveryBucket" >> beam.Create([(b, None) for b in range(self._num_buckets)]))
        return ((documents | "KeyByHash" >> beam.Map(keyed_by_bucket, self._seed, self._num_buckets),
                 every_bucket)
                | "WithEveryBucket" >> beam.Flatten()
                | "GroupBuckets" >> beam.GroupByKey()
                | "SortBucket" >> StepWithStats("shuffle", self._step, "buckets"))

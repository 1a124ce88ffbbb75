"""Packing shuffled buckets into fixed-length chunks (``transforms.core.packing``).

In: ``(bucket, documents)`` in shuffled order. Out: ``Chunk``s of exactly
``context_length`` ids (a bucket's last chunk may be shorter; the FIM stage
pads it), and statistics: chunks.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.core.packing import pack_bucket
from transforms.schema import Chunk, Stats
from transforms.stats import StepWithStats


class PackStep:
    def __init__(self, context_length: int, eot: int, keep_whole_reserve: int = 0):
        self._context_length = context_length
        self._eot = eot
        self._keep_whole_reserve = keep_whole_reserve

    def __call__(self, bucket_and_documents, stats: Stats):
        bucket, documents = bucket_and_documents
        for chunk in pack_bucket(bucket, documents, self._context_length, self._eot, self._keep_whole_reserve):
            stats["chunks"] += 1
            yield chunk


class PackChunks(beam.PTransform):
    """``PCollection[(bucket, documents)]`` -> ``{'chunks': PCollection[Chunk], 'stats': PCollection[Stats]}``.

    ``keep_whole_reserve``: no document that fits in a context with that many ids to spare is cut
    (repository parts; ``transforms.core.packing``).
    """

    def __init__(self, context_length: int, eot: int, keep_whole_reserve: int = 0):
        super().__init__()
        self._step = PackStep(context_length, eot, keep_whole_reserve)

    def expand(self, buckets):
        return buckets | "PackBucket" >> StepWithStats("pack", self._step, "chunks", output_type=Chunk)

"""What one bucket's shards hold: its documents packed into chunks, put in shard order, FIM'd and serialized.

In: a bucket's ``TokenizedDocument``s. Out: its chunks in the order a shard
holds them (a keyed hash of (seed, bucket, index),
``transforms.core.hashing.shard_key``, so a document cut across two chunks
does not land in consecutive records), and for each copy's FIM settings each
chunk's ``Example`` with its FIM counts, or all of a copy's serialized
records at once (``ShardContent.__call__``: a job for a helper process,
``transforms.core.tokenizer_pool``). Each chunk's FIM is seeded by the same
identity, so no byte depends on which process made it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Iterable, Iterator

from transforms.core.fim import fim_chunk
from transforms.core.hashing import shard_key
from transforms.core.packing import pack_bucket
from transforms.core.records import example_record
from transforms.core.tokenizer import Tokenizer
from transforms.schema import Chunk, Example, FimConfig, Stats, TokenizedDocument


@dataclasses.dataclass(frozen=True)
class ShardContent:
    """How a split's buckets become shards: ``fims`` holds each copy's FIM settings (they share the context
    length); ``keep_whole_reserve``: see ``transforms.core.packing``."""

    seed: int
    fims: tuple[FimConfig, ...]
    eot: int
    keep_whole_reserve: int = 0

    def chunks(self, bucket: int, documents: Iterable[TokenizedDocument]) -> list[Chunk]:
        """The bucket's chunks, in shard order."""
        chunks = list(pack_bucket(bucket, documents, self.fims[0].context_length, self.eot,
                                  self.keep_whole_reserve))
        return [chunks[index] for index in sorted(range(len(chunks)),
                                                  key=lambda index: shard_key(self.seed, bucket, index))]

    def examples(self, tokenizer: Tokenizer, chunks: list[Chunk], fim: FimConfig,
                 counts: Stats) -> Iterator[Example]:
        """Each chunk's example under ``fim``, one at a time; their FIM counts are added to ``counts``."""
        for chunk in chunks:
            example, example_counts = fim_chunk(chunk, self.seed, fim, tokenizer)
            counts.update(example_counts)
            yield example

    def __call__(self, tokenizer: Tokenizer, bucket: int,
                 documents: list[TokenizedDocument]) -> tuple[int, list[tuple[list[bytes], Stats]]]:
        """The bucket's chunk count, and for each copy its serialized records in shard order with its FIM
        counts: all in memory, for buckets small enough to hand over whole."""
        chunks = self.chunks(bucket, documents)
        copies = []
        for fim in self.fims:
            counts: Stats = Counter()
            copies.append(([example_record(e) for e in self.examples(tokenizer, chunks, fim, counts)], counts))
        return len(chunks), copies

"""A split's shards from its shuffled buckets: pack, FIM, serialize and write, one bucket per shard.

In: ``(bucket, documents)`` in shuffled order (``ShuffleDocuments``). Out:
``ShardInfo`` of each shard written, ``PREFIX-BBBBB-of-NNNNN.SUFFIX`` for
each bucket ``BBBBB``, each ``ShardCopy`` (the training split has one; a
held-out split one per held-out FIM rate, cut from the same chunks) and each
output format (``transforms.sinks``: every format gets the same examples in
the same order, made once), and statistics: chunks, then each copy's FIM
counts (``transforms.core.fim``), under the copy's ``stats_prefix``.

Why one step per bucket: examples are written where they are made. None is
held beside the others or moved through a second shuffle, which a local
runner would keep in memory whole (serialized examples are about 1.4 bytes
per byte of input text, and Beam's in-memory grouping holds them twice).
Only the bucket in hand is in memory: its documents, its chunks and the
record being written. So the bucket is the unit of parallel work after the
shuffle, and the number of buckets is the number of shards
(``pipeline.plan.default_num_shards``).

Inside a shard, the chunks come in the order of a keyed hash of (seed,
bucket, index) (``transforms.core.hashing.shard_key``), so a document cut
across two chunks does not land in consecutive records. Each chunk's FIM is
seeded by the same identity, so no byte depends on the runner, on the worker
that wrote the shard or on a retry; a retried bundle writes its files again
under new temporary names and renames them over the same final ones.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.core.fim import fim_chunk
from transforms.core.hashing import shard_key
from transforms.core.packing import pack_bucket
from transforms.core.records import example_record
from transforms.core.tokenizer import TokenizerHandle
from transforms.files import AtomicFiles, ShardName
from transforms.schema import FimConfig, ShardInfo, Stats, TokenizedDocument
from transforms.sinks import DEFAULT_OUTPUT_FORMAT, SinkLayout, output_sink
from transforms.stats import StepWithStats, prefixed


class ShardCopy(NamedTuple):
    """One set of files made from a split's chunks: ``prefix`` (``train``, ``validation_ar``...), its FIM
    settings, and the prefix of its FIM statistics."""

    prefix: str
    fim: FimConfig
    stats_prefix: str = ""


class ShardStep:
    """``(bucket, documents)`` -> ``ShardInfo`` per copy and format: the bucket's shard files, written."""

    def __init__(self, output_dir: str, num_shards: int, seed: int, copies: tuple[ShardCopy, ...],
                 tokenizer: TokenizerHandle, eot: int, keep_whole_reserve: int = 0, stats_prefix: str = "",
                 formats: tuple[str, ...] = (DEFAULT_OUTPUT_FORMAT,)):
        self._sinks = tuple(output_sink(name) for name in formats)
        self._output_dir = output_dir
        self._num_shards = num_shards
        self._seed = seed
        self._copies = copies
        self._tokenizer_handle = tokenizer
        self._eot = eot
        self._keep_whole_reserve = keep_whole_reserve
        self._stats_prefix = stats_prefix

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()

    def __call__(self, bucket_and_documents: tuple[int, list[TokenizedDocument]], stats: Stats):
        bucket, documents = bucket_and_documents
        # Packing needs only the context length, which every copy shares.
        chunks = list(pack_bucket(bucket, documents, self._copies[0].fim.context_length, self._eot,
                                  self._keep_whole_reserve))
        stats.update(prefixed(Counter(chunks=len(chunks)), self._stats_prefix))
        order = sorted(range(len(chunks)), key=lambda index: shard_key(self._seed, bucket, index))
        layout = SinkLayout(self._copies[0].fim.context_length, self._tokenizer.vocab_size)
        serialize = any(sink.holds_examples for sink in self._sinks)
        for copy in self._copies:
            counts: Stats = Counter()
            name = ShardName(FileSystems.join(self._output_dir, copy.prefix), bucket, self._num_shards, "")
            with AtomicFiles() as files:
                sinks = [sink(files, name, layout) for sink in self._sinks]
                for index in order:
                    example, example_counts = fim_chunk(chunks[index], self._seed, copy.fim, self._tokenizer)
                    counts.update(example_counts)
                    record = example_record(example) if serialize else None
                    for sink in sinks:
                        sink.write(example, record)
                for sink in sinks:
                    sink.close()
                files.commit()
            stats.update(prefixed(counts, copy.stats_prefix))
            for sink in self._sinks:
                yield ShardInfo(str(name.with_suffix(sink.suffixes[0])), len(order), sink.name)


class WriteShards(beam.PTransform):
    """``PCollection[(bucket, documents)]`` -> ``{'shards': PCollection[ShardInfo], 'stats': ...}``.

    Every bucket from 0 to ``num_shards - 1`` must come once, empty or not
    (``ShuffleDocuments`` sees to it), so every shard exists and readers can
    rely on ``-of-NNNNN``. ``keep_whole_reserve``: see ``transforms.core.packing``.
    ``stats_prefix``: put before the packing counts (a held-out split's). ``formats``: the output
    formats (``transforms.sinks.OUTPUT_FORMATS``) each shard is written in.
    """

    def __init__(self, output_dir: str, num_shards: int, seed: int, copies: tuple[ShardCopy, ...],
                 tokenizer: TokenizerHandle, eot: int, keep_whole_reserve: int = 0, stats_prefix: str = "",
                 formats: tuple[str, ...] = (DEFAULT_OUTPUT_FORMAT,)):
        super().__init__()
        self._step = ShardStep(output_dir, num_shards, seed, copies, tokenizer, eot, keep_whole_reserve,
                               stats_prefix, formats)

    def expand(self, buckets):
        return buckets | "PackFimWrite" >> StepWithStats("shards", self._step, "shards", output_type=ShardInfo)

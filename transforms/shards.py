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
record being written (with helper processes, the records of the few buckets
handed to them, see ``ShardStep``). So the bucket is the unit of parallel
work after the shuffle, and the number of buckets is the number of shards
(``pipeline.plan.default_num_shards``).

What a shard holds, in which order, is ``transforms.core.shard_content``'s:
no byte depends on the runner, on the process that made it or on a retry; a
retried bundle writes its files again under new temporary names and renames
them over the same final ones.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from transforms.core.records import example_record
from transforms.core.shard_content import ShardContent
from transforms.core.tokenizer import TokenizerHandle
from transforms.core.tokenizer_pool import BundleJobs
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


# A bucket of more tokens than this is made where it is written, streaming: handed to a helper process,
# its records (about 5 bytes a token) would be held whole, in both processes.
MAX_HANDED_OVER_TOKENS = 1 << 22


class ShardStep:
    """``(bucket, documents)`` -> ``ShardInfo`` per copy and format: the bucket's shard files, written.

    With helper processes (``num_processes > 1``, a runner in one process), a
    bucket's records are made by a helper while this process goes on, and its
    files are written when they come back, at the latest at the end of the
    bundle; only where every output format takes serialized examples (the
    others take arrays, several times larger) and the bucket is small
    enough. Otherwise each record is written as it is made.
    """

    def __init__(self, output_dir: str, num_shards: int, seed: int, copies: tuple[ShardCopy, ...],
                 tokenizer: TokenizerHandle, eot: int, keep_whole_reserve: int = 0, stats_prefix: str = "",
                 formats: tuple[str, ...] = (DEFAULT_OUTPUT_FORMAT,), num_processes: int = 1):
        self._sinks = tuple(output_sink(name) for name in formats)
        self._serialize = any(sink.holds_examples for sink in self._sinks)
        self._output_dir = output_dir
        self._num_shards = num_shards
        self._copies = copies
        self._content = ShardContent(seed, tuple(copy.fim for copy in copies), eot, keep_whole_reserve)
        self._tokenizer_handle = tokenizer
        self._stats_prefix = stats_prefix
        self._num_processes = num_processes
        self._work = BundleJobs()

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()
        self._layout = SinkLayout(self._copies[0].fim.context_length, self._tokenizer.vocab_size)
        self._work.open(self._tokenizer_handle.identity, self._tokenizer, self._num_processes)
        self._hand_over = self._work.pool.helpers > 0 and all(sink.holds_examples for sink in self._sinks)

    def teardown(self):
        self._work.close()

    def start_bundle(self):
        self._work.start_bundle()

    def __call__(self, bucket_and_documents: tuple[int, list[TokenizedDocument]], stats: Stats):
        bucket, documents = bucket_and_documents
        documents = list(documents)
        if self._hand_over and sum(len(d.ids) for d in documents) <= MAX_HANDED_OVER_TOKENS:
            self._work.jobs.submit(bucket, self._content, bucket, documents)
            return self._written(self._work.jobs.completed(), stats)
        return self._write(bucket, self._content.chunks(bucket, documents), stats)

    def finish_bundle(self, stats: Stats):
        return self._written(self._work.jobs.drain(), stats)

    def _written(self, made, stats: Stats):
        for bucket, (chunk_count, copies) in made:
            yield from self._write_files(bucket, chunk_count, [((None, record) for record in records)
                                                               for records, _ in copies],
                                         [counts for _, counts in copies], stats)

    def _write(self, bucket: int, chunks: list, stats: Stats):
        counts = [Counter() for _ in self._copies]
        examples = [((example, example_record(example) if self._serialize else None)
                     for example in self._content.examples(self._tokenizer, chunks, copy.fim, copy_counts))
                    for copy, copy_counts in zip(self._copies, counts)]
        return self._write_files(bucket, len(chunks), examples, counts, stats)

    def _write_files(self, bucket: int, chunk_count: int, examples, counts: list[Stats], stats: Stats):
        """Writes each copy's ``(example, record)`` pairs (an iterable per copy, made as it is read) and adds
        its ``counts``, complete once its pairs are read, to ``stats``."""
        stats.update(prefixed(Counter(chunks=chunk_count), self._stats_prefix))
        for copy, pairs, copy_counts in zip(self._copies, examples, counts):
            name = ShardName(FileSystems.join(self._output_dir, copy.prefix), bucket, self._num_shards, "")
            with AtomicFiles() as files:
                sinks = [sink(files, name, self._layout) for sink in self._sinks]
                for example, record in pairs:
                    for sink in sinks:
                        sink.write(example, record)
                for sink in sinks:
                    sink.close()
                files.commit()
            stats.update(prefixed(copy_counts, copy.stats_prefix))
            for sink in self._sinks:
                yield ShardInfo(str(name.with_suffix(sink.suffixes[0])), chunk_count, sink.name)


class WriteShards(beam.PTransform):
    """``PCollection[(bucket, documents)]`` -> ``{'shards': PCollection[ShardInfo], 'stats': ...}``.

    Every bucket from 0 to ``num_shards - 1`` must come once, empty or not
    (``ShuffleDocuments`` sees to it), so every shard exists and readers can
    rely on ``-of-NNNNN``. ``keep_whole_reserve``: see ``transforms.core.packing``.
    ``stats_prefix``: put before the packing counts (a held-out split's). ``formats``: the output
    formats (``transforms.sinks.OUTPUT_FORMATS``) each shard is written in. ``num_processes``: as
    ``TokenizeDocuments``'s, whose helper processes it shares.
    """

    def __init__(self, output_dir: str, num_shards: int, seed: int, copies: tuple[ShardCopy, ...],
                 tokenizer: TokenizerHandle, eot: int, keep_whole_reserve: int = 0, stats_prefix: str = "",
                 formats: tuple[str, ...] = (DEFAULT_OUTPUT_FORMAT,), num_processes: int = 1):
        super().__init__()
        self._step = ShardStep(output_dir, num_shards, seed, copies, tokenizer, eot, keep_whole_reserve,
                               stats_prefix, formats, num_processes)

    def expand(self, buckets):
        return buckets | "PackFimWrite" >> StepWithStats("shards", self._step, "shards", output_type=ShardInfo)

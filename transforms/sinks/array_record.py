"""``array_record``: the same serialized ``tf.train.Example``s as the TFRecords, in ArrayRecord files,
which Grain's ``ArrayRecordDataSource`` (MaxText's input pipeline) reads with random access.

Written with ``group_size:1``, one record per chunk: the layout Grain's
documentation asks for, so reading record *i* decompresses only record *i*.
ArrayRecord's writer takes only a local path, so a shard bound for ``gs://``
is written locally and copied (``AtomicFiles.local_path``). Its library is
the ``array_record`` extra (``pip install "fimflow[array_record]"``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.sinks.base import RecordSink
from transforms.schema import Example

WRITER_OPTIONS = "group_size:1"


class ArrayRecordSink(RecordSink):
    name = "array_record"
    suffixes = (".array_record",)
    extra = "array_record"
    holds_examples = True
    reading = "grain.python.ArrayRecordDataSource (or array_record's ArrayRecordReader), then tf.io.parse_example"

    def __init__(self, files, shard, layout):
        from array_record.python.array_record_module import ArrayRecordWriter

        super().__init__(files, shard, layout)
        self._writer = ArrayRecordWriter(files.local_path(self.path(".array_record")), WRITER_OPTIONS)

    def write(self, example: Example, record: Optional[bytes]) -> None:
        self._writer.write(record)

    def close(self) -> None:
        self._writer.close()

    @classmethod
    def read_records(cls, path: str) -> Iterator[bytes]:
        from array_record.python.array_record_module import ArrayRecordReader

        with _local_copy(path) as local:
            reader = ArrayRecordReader(local)
            try:
                for start in range(0, reader.num_records(), 1024):
                    yield from reader.read(list(range(start, min(start + 1024, reader.num_records()))))
            finally:
                reader.close()


@contextlib.contextmanager
def _local_copy(path: str):
    """``path`` itself where it is local; else a local copy, removed after."""
    if "://" not in path:
        yield path
        return
    descriptor, local = tempfile.mkstemp(suffix=".array_record")
    try:
        with os.fdopen(descriptor, "wb") as target, FileSystems.open(
                path, compression_type=CompressionTypes.UNCOMPRESSED) as source:
            shutil.copyfileobj(source, target, 1 << 22)
        yield local
    finally:
        os.unlink(local)


SINK = ArrayRecordSink

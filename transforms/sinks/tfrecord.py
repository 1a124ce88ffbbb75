"""``tfrecord``: ``tf.train.Example`` records in TFRecord framing (``transforms.core.records``), read by
``tf.data.TFRecordDataset``. One ``.tfrecord`` file per shard."""

from __future__ import annotations

from typing import Iterator, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.core.records import read_tfrecords, tfrecord_frame
from transforms.sinks.base import RecordSink
from transforms.schema import Example


class TFRecordSink(RecordSink):
    name = "tfrecord"
    suffixes = (".tfrecord",)
    holds_examples = True
    reading = "tf.data.TFRecordDataset, then tf.io.parse_example"

    def __init__(self, files, shard, layout):
        super().__init__(files, shard, layout)
        self._f = files.open(self.path(".tfrecord"))

    def write(self, example: Example, record: Optional[bytes]) -> None:
        self._f.write(tfrecord_frame(record))

    @classmethod
    def read_records(cls, path: str) -> Iterator[bytes]:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            yield from read_tfrecords(f)


SINK = TFRecordSink

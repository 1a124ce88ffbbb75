"""``parquet``: one row per example, ``input_ids``, ``segment_ids`` and ``positions`` as int32 list columns,
which ``datasets.load_dataset("parquet", ...)`` and any Arrow reader load.

Rows go out in row groups of ``ROW_GROUP_ROWS``, so a shard never waits whole
in memory; pyarrow writes the same bytes for the same rows (no timestamps).
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.sinks.base import RecordSink, SinkLayout
from transforms.schema import EXAMPLE_FEATURES, Example

ROW_GROUP_ROWS = 1024
SCHEMA = pa.schema([(name, pa.list_(pa.int32())) for name in EXAMPLE_FEATURES])


class ParquetSink(RecordSink):
    name = "parquet"
    suffixes = (".parquet",)
    reading = 'datasets.load_dataset("parquet", data_files=...), or pyarrow.parquet'

    def __init__(self, files, shard, layout):
        super().__init__(files, shard, layout)
        self._writer = pq.ParquetWriter(files.local_path(self.path(".parquet")), SCHEMA)
        self._rows: list[Example] = []

    def write(self, example: Example, record: Optional[bytes]) -> None:
        self._rows.append(example)
        if len(self._rows) == ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        length = self._layout.context_length
        offsets = pa.array(np.arange(0, (len(self._rows) + 1) * length, length, dtype=np.int32))
        columns = [pa.ListArray.from_arrays(offsets, pa.array(
            np.concatenate([getattr(row, name) for row in self._rows]).astype(np.int32)))
            for name in EXAMPLE_FEATURES]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=SCHEMA))
        self._rows = []

    def close(self) -> None:
        if self._rows:
            self._flush()
        self._writer.close()

    @classmethod
    def read_features(cls, path: str, layout: SinkLayout) -> Iterator[dict[str, np.ndarray]]:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            table = pq.read_table(pa.BufferReader(f.read()))
        columns = {name: table.column(name).to_pylist() for name in EXAMPLE_FEATURES}
        for row in range(table.num_rows):
            yield {name: np.asarray(columns[name][row], dtype=np.int64) for name in EXAMPLE_FEATURES}


SINK = ParquetSink

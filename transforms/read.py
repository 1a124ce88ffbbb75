"""Reading documents from JSONL, Parquet and plain source files.

In: a list of file paths (local or any Beam filesystem such as ``gs://``).
Out: ``documents`` (``Document``) and ``rejected`` (``Rejected``: a record
that could not become a document, with its source, position and reason).
Every record read comes out exactly once on one of the two outputs.

The file is the unit of reading; a ``Reshuffle`` after reading breaks fusion
so that tokenization of one large file is spread over all workers.
"""

from __future__ import annotations

import json
import re
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.beam_workarounds import check_decompressed_to_the_end, connect_anonymously_to_emulator
from transforms.schema import REJECTED_REASON_PREFIX, SKIP_REASONS, Document, Rejected, Stats
from transforms.stats import StepWithStats

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2", ".deflate")
RAW_START_CHARS = 200
BINARY_SNIFF_BYTES = 8192
_SURROGATE = re.compile("[\ud800-\udfff]")


def file_format(path: str) -> str:
    name = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "text"


def _raw_start(raw) -> str:
    if isinstance(raw, bytes):
        raw = raw[: RAW_START_CHARS * 4].decode("utf-8", errors="backslashreplace")
    return str(raw)[:RAW_START_CHARS]


class RecordReader:
    """Reads one file into ``Document``s and ``Rejected`` records, by its format."""

    def __init__(self, text_field: str = "content", id_field: Optional[str] = None,
                 max_file_bytes: int = 10 << 20):
        self._text_field = text_field
        self._id_field = id_field
        self._max_file_bytes = max_file_bytes

    def read(self, path: str) -> Iterator[Document | Rejected]:
        """Every record of ``path``; a file that breaks off (a truncated .gz, a corrupt
        Parquet footer) ends with one ``unreadable_file`` record instead of failing the job."""
        reader = {"jsonl": self._read_jsonl, "parquet": self._read_parquet,
                  "text": self._read_text_file}[file_format(path)]
        index = 0
        try:
            for item in reader(path):
                index = item.index + 1
                yield item
        except Exception as e:  # Decompressors and pyarrow raise many types; all mean the same here.
            yield Rejected(path, index, "unreadable_file", f"{type(e).__name__}: {e}"[:500], "")

    def _document(self, path: str, index: int, text, doc_id, raw_start: str) -> Document | Rejected:
        if not isinstance(text, str):
            return Rejected(path, index, "text_not_string",
                            f"field {self._text_field!r} is {type(text).__name__}", raw_start, doc_id)
        # isspace() rather than strip(): no copy of a document of hundreds of MB.
        if not text or text.isspace():
            return Rejected(path, index, "empty_document", "no non-whitespace text", raw_start, doc_id)
        # JSON may escape a lone surrogate ("\ud800"): valid JSON, but no UTF-8
        # text, and the tokenizer would fail on it mid-job.
        if not text.isascii() and (m := _SURROGATE.search(text)):
            return Rejected(path, index, "lone_surrogate", f"U+{ord(m.group()):04X} at character {m.start()}",
                            raw_start, doc_id)
        return Document(path, index, text, doc_id)

    def _from_record(self, path: str, index: int, record, raw_start: str) -> Document | Rejected:
        if not isinstance(record, dict):
            return Rejected(path, index, "not_an_object", f"JSON {type(record).__name__}", raw_start)
        doc_id = record.get(self._id_field) if self._id_field else None
        doc_id = None if doc_id is None else str(doc_id)
        if self._text_field not in record:
            return Rejected(path, index, "missing_text_field",
                            f"no field {self._text_field!r}", raw_start, doc_id)
        return self._document(path, index, record[self._text_field], doc_id, raw_start)

    def _read_jsonl(self, path: str) -> Iterator[Document | Rejected]:
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            # A plain loop, not enumerate(): enumerate's cached result tuple
            # would keep the previous line alive after ``del raw``.
            index = -1
            while raw := f.readline():
                index += 1
                if raw.isspace():
                    continue
                raw_start = _raw_start(raw)
                # At most two copies of a line are alive at once (bytes and
                # text, then text and the parsed document): a document of
                # hundreds of MB costs twice its size while read, not more.
                try:
                    line = raw.decode("utf-8-sig")
                except UnicodeDecodeError as e:
                    yield Rejected(path, index, "invalid_utf8", str(e), raw_start)
                    continue
                del raw
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    result: Document | Rejected = Rejected(path, index, "invalid_json", str(e), raw_start)
                else:
                    result = self._from_record(path, index, record, raw_start)
                del line
                record = None
                yield result
            check_decompressed_to_the_end(f)

    def _read_parquet(self, path: str) -> Iterator[Document | Rejected]:
        import pyarrow.parquet as pq  # Only Parquet inputs pay for the import.

        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            if self._text_field not in names:
                yield Rejected(path, 0, "missing_text_field", f"no column {self._text_field!r}", "")
                return
            id_field = self._id_field if self._id_field in names else None
            columns = [self._text_field] + ([id_field] if id_field else [])
            index = 0
            for batch in parquet.iter_batches(columns=columns, batch_size=1024):
                texts = batch.column(self._text_field).to_pylist()
                ids = batch.column(id_field).to_pylist() if id_field else [None] * len(texts)
                for text, doc_id in zip(texts, ids):
                    doc_id = None if doc_id is None else str(doc_id)
                    yield self._document(path, index, text, doc_id, _raw_start(text if isinstance(text, str) else ""))
                    index += 1

    def _read_text_file(self, path: str) -> Iterator[Document | Rejected]:
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        if size > self._max_file_bytes:
            yield Rejected(path, 0, "file_too_large", f"{size} bytes > {self._max_file_bytes}", "")
            return
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            data = f.read()
            check_decompressed_to_the_end(f)
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            yield Rejected(path, 0, "binary_file", "NUL byte in the first 8 KiB", _raw_start(data))
            return
        raw_start = _raw_start(data)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            yield Rejected(path, 0, "invalid_utf8", str(e), raw_start)
            return
        del data
        yield self._document(path, 0, text, None, raw_start)


class ReadFileStep:
    """A file path -> its ``Document``s and ``Rejected`` records, counted as read."""

    def __init__(self, reader: RecordReader):
        self._reader = reader

    def setup(self):
        connect_anonymously_to_emulator()

    def __call__(self, path: str, stats: Stats):
        for item in self._reader.read(path):
            stats["records_read"] += 1
            if isinstance(item, Rejected):
                stats["records_rejected"] += 1
                stats["records_in_error"] += item.reason not in SKIP_REASONS
                stats[REJECTED_REASON_PREFIX + item.reason] += 1
            yield item


class ReadDocuments(beam.PTransform):
    """``PBegin`` -> ``{'documents': PCollection[Document], 'rejected': PCollection[Rejected],
    'stats': PCollection[Stats]}``."""

    def __init__(self, files: list[str], text_field: str = "content",
                 id_field: Optional[str] = None, max_file_bytes: int = 10 << 20):
        super().__init__()
        self._files = sorted(files)
        self._reader = RecordReader(text_field, id_field, max_file_bytes)

    def expand(self, pbegin):
        results = (pbegin
                   | "Files" >> beam.Create(self._files).with_output_types(str)
                   | "ReadFiles" >> StepWithStats("read", ReadFileStep(self._reader), "documents",
                                                  input_type=str, output_type=Document,
                                                  tagged={Rejected: "rejected"}))
        return {
            "documents": results["documents"] | "BreakFusion" >> beam.Reshuffle(),
            "rejected": results["rejected"],
            "stats": results["stats"],
        }

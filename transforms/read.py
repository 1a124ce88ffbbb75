"""Reading documents from JSONL, Parquet and plain source files.

In: ``InputFile``s (matched on the workers by ``transforms.match``).
Out: ``documents`` (``Document``) and ``rejected`` (``Rejected``: a record
that could not become a document, with its source, position and reason).
Every record read comes out exactly once on one of the two outputs.

Three kinds of failure, three answers:
* a bad record (malformed JSON, a 5,000-digit number, deep nesting, no text,
  invalid UTF-8...) is that record's dead letter; reading goes on;
* a file whose content breaks off (a truncated ``.gz``, a corrupt Parquet
  footer) ends with one ``unreadable_file`` dead letter, and its bytes count
  against the error budget (``bytes_in_error``);
* the storage failing (a reset connection, a timeout) or the file changing
  after planning (deleted, truncated, grown, replaced) raises, so the runner
  retries the bundle and, when retries run out, the job fails with that line.
  An exception raised by the file's byte stream itself is such a failure;
  everything raised above it (decompression, parsing) is the content's.

An uncompressed JSONL file larger than ``split_bytes`` is read in byte
ranges, each by whichever worker takes it, as Beam's text source splits:
a range holds the lines that start inside it. Records are named by their
byte position, so the output does not depend on how a file was split.
Compressed files and Parquet files are read whole, one worker each; where
one is large, a ``Reshuffle`` after reading spreads its tokenization over
all workers.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.io.filesystem import CompressedFile, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.beam_workarounds import check_decompressed_to_the_end
from transforms.schema import (REJECTED_REASON_PREFIX, SKIP_REASONS, SOURCE_PREFIX, Document, FileRange, InputFile, Rejected,
                               Stats, identified)
from transforms.stats import StepWithStats

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2", ".deflate")
RAW_START_CHARS = 200
BINARY_SNIFF_BYTES = 8192
DEFAULT_SPLIT_BYTES = 64 << 20
_SURROGATE = re.compile("[\ud800-\udfff]")
logger = logging.getLogger(__name__)


class StorageError(IOError):
    """Reading a file failed in the storage, not in its content: the bundle fails so the runner retries it."""


class InputChangedError(IOError):
    """A file is not what was planned: deleted, truncated, grown or replaced since the run started."""


class _ByteStream:
    """A file's raw byte stream that remembers the first exception it raised.

    Everything decoded above it (decompression, Parquet, JSON) reads through
    it, so after a failure ``error`` tells the storage's fault from the content's.
    """

    def __init__(self, raw):
        self._raw = raw
        self.error: Optional[BaseException] = None

    def __getattr__(self, name):
        attribute = getattr(self._raw, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            try:
                return attribute(*args, **kwargs)
            except Exception as e:
                self.error = self.error or e
                raise
        # Kept, so that a method called once per line is wrapped once per file.
        setattr(self, name, call)
        return call

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._raw.close()


def _uncompressed_name(path: str) -> str:
    """``path``'s file name, lower-cased, without its compression suffix (``a.jsonl.gz`` -> ``a.jsonl``)."""
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def file_format(path: str) -> str:
    name = _uncompressed_name(path)
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "text"


# Languages by file extension, for whole-file inputs; any other extension names itself.
LANGUAGES = {"py": "Python", "pyi": "Python", "js": "JavaScript", "mjs": "JavaScript", "jsx": "JavaScript",
             "ts": "TypeScript", "tsx": "TypeScript", "java": "Java", "kt": "Kotlin", "scala": "Scala",
             "c": "C", "h": "C", "cc": "C++", "cpp": "C++", "cxx": "C++", "hpp": "C++", "cs": "C#", "go": "Go",
             "rs": "Rust", "rb": "Ruby", "php": "PHP", "swift": "Swift", "sh": "Shell", "bash": "Shell",
             "sql": "SQL", "r": "R", "jl": "Julia", "lua": "Lua", "pl": "Perl", "hs": "Haskell",
             "md": "Markdown", "rst": "reStructuredText", "txt": "Text", "html": "HTML", "css": "CSS",
             "json": "JSON", "yaml": "YAML", "yml": "YAML", "toml": "TOML", "xml": "XML"}


def language_of(path: str) -> str:
    """A whole file's language, by its extension (after any compression suffix)."""
    name = _uncompressed_name(path)
    extension = name.rsplit(".", 1)[1] if "." in name.lstrip(".") else ""
    return LANGUAGES.get(extension, extension)


def _raw_start(raw) -> str:
    if isinstance(raw, bytes):
        raw = raw[: RAW_START_CHARS * 4].decode("utf-8", errors="backslashreplace")
    return str(raw)[:RAW_START_CHARS]


def _decompressed(path: str, stream: _ByteStream):
    """``stream`` decompressed by Beam's ``CompressedFile`` when ``path`` names a compression, else as is."""
    compression = CompressionTypes.detect_compression_type(path)
    return stream if compression == CompressionTypes.UNCOMPRESSED else CompressedFile(stream, compression)


class RecordReader:
    """Reads one file into ``Document``s and ``Rejected`` records, by its format."""

    def __init__(self, text_field: str = "content", id_field: Optional[str] = None,
                 max_file_bytes: int = 10 << 20, language_field: Optional[str] = None,
                 repository: Optional[tuple[str, str]] = None):
        self._text_field = text_field
        self._id_field = id_field
        self._max_file_bytes = max_file_bytes
        self._language_field = language_field
        # With --group_by repo: the (repository, path) fields of JSONL and Parquet records.
        self.repository = repository

    def read(self, path: str, size: Optional[int] = None, start: int = 0,
             end: Optional[int] = None, pattern: str = "") -> Iterator[Document | Rejected]:
        """Every record of ``path`` (of a JSONL file: every line that starts in ``[start, end)``);
        a file whose content breaks off (a truncated .gz, a corrupt Parquet footer) ends with one
        ``unreadable_file`` record; a storage failure raises ``StorageError``. ``pattern``: the
        ``--input`` that matched it, whose folders name the repositories of whole files."""
        fmt = file_format(path)
        if (start, end) != (0, None) and not splittable(path):
            raise ValueError(f"{path}: only uncompressed JSONL files are read in byte ranges")
        reader = {"jsonl": functools.partial(self._read_jsonl, start=start, end=end),
                  "parquet": self._read_parquet,
                  "text": functools.partial(self._read_text_file, size=size, pattern=pattern)}[fmt]
        stream = _ByteStream(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED))
        records, position = 0, start
        with stream:
            try:
                for item in reader(path, stream):
                    records, position = records + 1, item.position
                    yield item
            except ImportError:
                # The worker lacks a decompressor or Parquet: its environment's fault, not the file's.
                raise
            except Exception as e:
                if stream.error is not None:
                    raise StorageError(f"reading {path} failed after {records} record(s) from byte {start}: "
                                       f"{type(stream.error).__name__}: {stream.error}") from e
                logger.warning("%s: unreadable after %d record(s): %s: %s", path, records, type(e).__name__, e)
                # Past the last record read, so that it sorts after it among the dead letters.
                yield Rejected(path, position + (records > 0), "unreadable_file",
                               f"{type(e).__name__}: {e}"[:500], "")

    def _document(self, path: str, position: int, text, doc_id, raw_start: str,
                  language: str = "") -> Document | Rejected:
        if not isinstance(text, str):
            return Rejected(path, position, "text_not_string",
                            f"field {self._text_field!r} is {type(text).__name__}", raw_start, doc_id)
        # isspace() rather than strip(): no copy of a document of hundreds of MB.
        if not text or text.isspace():
            return Rejected(path, position, "empty_document", "no non-whitespace text", raw_start, doc_id)
        # JSON may escape a lone surrogate ("\ud800"): valid JSON, but no UTF-8
        # text, and the tokenizer would fail on it mid-job.
        if not text.isascii() and (m := _SURROGATE.search(text)):
            return Rejected(path, position, "lone_surrogate", f"U+{ord(m.group()):04X} at character {m.start()}",
                            raw_start, doc_id)
        return Document(path, position, text, doc_id, language)

    def _from_record(self, path: str, position: int, record, raw_start: str) -> Document | Rejected:
        if not isinstance(record, dict):
            return Rejected(path, position, "not_an_object", f"JSON {type(record).__name__}", raw_start)
        doc_id = record.get(self._id_field) if self._id_field else None
        doc_id = None if doc_id is None else str(doc_id)
        if self._text_field not in record:
            return Rejected(path, position, "missing_text_field",
                            f"no field {self._text_field!r}", raw_start, doc_id)
        language = record.get(self._language_field) if self._language_field else None
        document = self._document(path, position, record[self._text_field], doc_id, raw_start,
                                  "" if language is None else str(language))
        if self.repository is None or isinstance(document, Rejected):
            return document
        repo_field, path_field = self.repository
        return in_repository(document, record.get(repo_field), record.get(path_field), f"field {repo_field!r}",
                             f"field {path_field!r}", raw_start)

    def _read_jsonl(self, path: str, stream: _ByteStream, start: int = 0,
                    end: Optional[int] = None) -> Iterator[Document | Rejected]:
        f = _decompressed(path, stream)
        position = start
        if start:
            # The line that holds byte start - 1 belongs to the range before.
            f.seek(start - 1)
            position = start - 1 + len(f.readline())
        while (end is None or position < end) and (raw := f.readline()):
            line_start, position = position, position + len(raw)
            if raw.isspace():
                continue
            raw_start = _raw_start(raw)
            # At most two copies of a line are alive at once (bytes and
            # text, then text and the parsed document): a document of
            # hundreds of MB costs twice its size while read, not more.
            try:
                line = raw.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                yield Rejected(path, line_start, "invalid_utf8", str(e), raw_start)
                continue
            del raw
            try:
                record = json.loads(line)
            # Not only JSONDecodeError: a number of 5,000 digits is a
            # ValueError, 100,000 nested brackets a RecursionError.
            except (ValueError, RecursionError) as e:
                result: Document | Rejected = Rejected(path, line_start, "invalid_json",
                                                       f"{type(e).__name__}: {e}"[:500], raw_start)
            else:
                result = self._from_record(path, line_start, record, raw_start)
            del line
            record = None
            yield result
        if end is None:
            check_decompressed_to_the_end(f)

    def _read_parquet(self, path: str, stream: _ByteStream) -> Iterator[Document | Rejected]:
        import pyarrow.parquet as pq  # Only Parquet inputs pay for the import.

        parquet = pq.ParquetFile(stream)
        names = parquet.schema_arrow.names
        if self._text_field not in names:
            yield Rejected(path, 0, "missing_text_field", f"no column {self._text_field!r}", "")
            return
        wanted = [self._id_field, self._language_field, *(self.repository or ())]
        present = {f for f in wanted if f in names}
        columns = [self._text_field] + sorted(present)
        row = 0
        for batch in parquet.iter_batches(columns=columns, batch_size=1024):
            texts = batch.column(self._text_field).to_pylist()
            column = lambda f: batch.column(f).to_pylist() if f in present else [None] * len(texts)  # noqa: E731
            for text, doc_id, language, *repository in zip(texts, *map(column, wanted[:2]),
                                                           *map(column, self.repository or ())):
                doc_id = None if doc_id is None else str(doc_id)
                raw_start = _raw_start(text if isinstance(text, str) else "")
                document = self._document(path, row, text, doc_id, raw_start,
                                          "" if language is None else str(language))
                if self.repository is not None and isinstance(document, Document):
                    document = in_repository(document, *repository, *(f"column {c!r}" for c in self.repository),
                                             raw_start)
                yield document
                row += 1


    def _read_text_file(self, path: str, stream: _ByteStream, size: Optional[int],
                        pattern: str) -> Iterator[Document | Rejected]:
        if size is None:
            size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        if size > self._max_file_bytes:
            yield Rejected(path, 0, "file_too_large", f"{size} bytes > {self._max_file_bytes}", "")
            return
        f = _decompressed(path, stream)
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
        document = self._document(path, 0, text, None, raw_start, language_of(path))
        if self.repository is not None and isinstance(document, Document):
            document = in_repository(document, *repository_of_file(pattern, path),
                                     "a folder under the --input's folder", "the path below it", raw_start)
        yield document


def in_repository(document: Document, repo, path, repo_label: str, path_label: str,
                  raw_start: str) -> Document | Rejected:
    """``document`` as a file of repository ``repo`` at ``path``, or the dead letter saying why not;
    the labels say where each came from."""
    if not isinstance(repo, str) or not repo.strip():
        return Rejected(document.source, document.position, "no_repository",
                        f"no repository name in {repo_label}", raw_start, document.id)
    if not isinstance(path, str) or not path.strip() or "\n" in path:
        return Rejected(document.source, document.position, "invalid_path",
                        f"{path_label} must be one non-empty line", raw_start, document.id)
    return document._replace(repo=repo, path=path)


def pattern_root(pattern: str) -> str:
    """The folder an ``--input`` pattern starts from: the folder itself, or the folder of its first glob."""
    glob = next((i for i, c in enumerate(pattern) if c in "*?["), None)
    if glob is None and (pattern.endswith("/") or os.path.isdir(pattern)):
        return pattern.rstrip("/") + "/"
    return pattern[:glob].rsplit("/", 1)[0] + "/"


def repository_of_file(pattern: str, source: str) -> tuple[Optional[str], Optional[str]]:
    """A file's repository and path in a tree of repositories: the first folder under the
    pattern's root, and the path below it; ``(None, None)`` for a file not in such a folder."""
    root = pattern_root(pattern)
    repo, _, path = source[len(root):].partition("/") if source.startswith(root) else ("", "", "")
    return (repo, path) if path else (None, None)


def splittable(path: str) -> bool:
    """Whether ``path`` can be read in byte ranges: uncompressed JSONL."""
    return (file_format(path) == "jsonl"
            and CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED)


def split_ranges(file: InputFile, split_bytes: int) -> list[FileRange]:
    """``file`` as ranges of ``split_bytes`` when it can be split and is larger, else whole."""
    if not splittable(file.path) or file.size <= split_bytes:
        return [FileRange(file)]
    return [FileRange(file, start, min(start + split_bytes, file.size))
            for start in range(0, file.size, split_bytes)]


def check_unchanged(file: InputFile) -> None:
    """Raises ``InputChangedError`` unless ``file`` still has its planned size and modification time."""
    try:
        matched = FileSystems.match([file.path])[0].metadata_list
    except Exception as e:  # Beam raises BeamIOError for a path that no longer matches.
        raise InputChangedError(f"{file.path} was deleted after the run was planned ({e})") from e
    if not matched:
        raise InputChangedError(f"{file.path} was deleted after the run was planned")
    now = InputFile.from_metadata(matched[0])
    if now.size != file.size:
        raise InputChangedError(f"{file.path} changed after the run was planned: "
                                f"{file.size} bytes then, {now.size} now")
    if file.mtime is not None and now.mtime != file.mtime:
        raise InputChangedError(f"{file.path} was replaced after the run was planned (modified at {now.mtime}, "
                                f"planned at {file.mtime})")


class ReadRangeStep:
    """A ``FileRange`` -> its ``Document``s and ``Rejected`` records, counted as read.

    The file must be the one matched, before and after it is read: a file
    deleted, truncated, grown or replaced meanwhile fails the run instead of
    quietly giving other data.
    """

    def __init__(self, reader: RecordReader):
        self._reader = reader

    def __call__(self, part: FileRange, stats: Stats):
        file = part.file
        check_unchanged(file)
        stats["file_ranges_read"] += 1
        size = (file.size if part.end is None else part.end) - part.start
        for item in self._reader.read(file.path, file.size, part.start, part.end, file.pattern):
            stats["records_read"] += 1
            if isinstance(item, Rejected):
                stats["records_rejected"] += 1
                stats[f"{SOURCE_PREFIX}pattern/{file.pattern}/records_rejected"] += 1
                stats["records_in_error"] += item.reason not in SKIP_REASONS
                stats[REJECTED_REASON_PREFIX + item.reason] += 1
                if item.reason == "unreadable_file":
                    stats["bytes_in_error"] += size
            else:
                stats["text_chars_read"] += len(item.text)
                item = identified(item._replace(pattern=file.pattern))
            yield item
        check_unchanged(file)
        stats["bytes_read"] += size


class ReadDocuments(beam.PTransform):
    """``PCollection[InputFile]`` -> ``{'documents': PCollection[Document], 'rejected':
    PCollection[Rejected], 'stats': PCollection[Stats]}``.

    ``respread``: pass the documents through a ``Reshuffle``, so that what
    one worker read whole is tokenized by all. That moves the corpus's text
    through a shuffle, which a local runner holds in memory whole, so a run
    wants it only where some file is read whole and is large
    (``pipeline.plan.needs_respread``).
    """

    def __init__(self, text_field: str = "content", id_field: Optional[str] = None,
                 max_file_bytes: int = 10 << 20, split_bytes: int = DEFAULT_SPLIT_BYTES,
                 language_field: Optional[str] = None, repository: Optional[tuple[str, str]] = None,
                 respread: bool = True):
        super().__init__()
        self._reader = RecordReader(text_field, id_field, max_file_bytes, language_field, repository)
        self._split_bytes = split_bytes
        self._respread = respread

    def expand(self, files):
        results = (files
                   | "Split" >> beam.FlatMap(split_ranges, self._split_bytes).with_output_types(FileRange)
                   # Ranges of one file leave the bundle that made them: each worker takes some.
                   | "SpreadRanges" >> beam.Reshuffle()
                   | "ReadRanges" >> StepWithStats("read", ReadRangeStep(self._reader), "documents",
                                                   input_type=FileRange, output_type=Document,
                                                   tagged={Rejected: "rejected"}))
        documents = results["documents"]
        if self._respread:
            documents = documents | "BreakFusion" >> beam.Reshuffle()
        return {
            "documents": documents,
            "rejected": results["rejected"],
            "stats": results["stats"],
        }

"""What flows between fimflow's stages, and the names a dataset is made of.

Every stage imports this module and ``transforms.core``, never another stage.
The element types, in pipeline order::

    InputSelection ─Match─▶ InputFile ─Split─▶ FileRange
      ─Read─▶ Document | Rejected [─Decontaminate─▶ Document | Rejected] [─AssignSplits─▶ Document]
      ─Tokenize─▶ TokenizedDocument [─GroupRepositories─▶ TokenizedDocument (repository parts)]
      ─Shuffle─▶ (bucket, [TokenizedDocument])
      ─WriteShards─▶ ShardInfo (per bucket: pack into Chunks, FIM into Examples, write)   (once per split)
    Rejected ─WriteRejected─▶ ShardInfo
    held-out Document ─EvalProblems─▶ (task, [problem]) ─WriteEvalSets─▶ (task, problems)

Stages also emit statistics (``Stats``: a ``Counter`` of the names below),
merged into one dict for ``metadata.json`` and mirrored as Beam counters.
Plain ``NamedTuple``s: Beam codes them with its default coder, so no schema
registration is needed, and numpy arrays travel inside them as they are.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import NamedTuple, Optional

import numpy as np

from transforms.core.hashing import document_identity
from transforms.core.splits import TRAIN

# Token ids as fimflow stores them between stages: two bytes each for a vocabulary that fits
# (most do), which halves the ids the shuffle holds and moves; four bytes otherwise.
TOKEN_DTYPE = np.int32
NARROW_TOKEN_DTYPE = np.uint16


def token_dtype(vocab_size: int):
    """The dtype of a model's ids between stages."""
    return NARROW_TOKEN_DTYPE if vocab_size <= np.iinfo(NARROW_TOKEN_DTYPE).max + 1 else TOKEN_DTYPE
Stats = Counter

# The dataset's layout.
METADATA_FILE = "metadata.json"
# Statistics of one split or held-out copy: SPLIT_PREFIX + its name + "/" + the count's name.
SPLIT_PREFIX = "split/"
# Documents dropped per benchmark file: CONTAMINATION_PREFIX + the file + "/documents".
CONTAMINATION_PREFIX = "decontaminate/"
# Infilling evaluation sets built from held-out documents: EVAL_DIR/<task>.jsonl.
EVAL_DIR = "eval"
EVAL_TASKS = ("single_line", "multi_line", "random_span")
ERRORS_DIR = "errors"
REJECTED_PREFIX = "rejected"
EXAMPLE_FEATURES = ("input_ids", "segment_ids", "positions")

# Statistics of the files the workers matched, which must be those planned.
INPUT_FILES, INPUT_BYTES, INPUT_FINGERPRINT = "input_files", "input_bytes", "input_fingerprint"
# Statistics per source: SOURCE_PREFIX + "pattern/" or "language/" + the source + "/" + the count's name.
SOURCE_PREFIX = "source/"
# Statistic names built from a value.
FRAGMENT_HISTOGRAM_PREFIX = "fragment_tokens_le_"
DOCUMENT_HISTOGRAM_PREFIX = "document_tokens_le_"
MIDDLE_HISTOGRAM_PREFIX = "middle_tokens_le_"
# Near-duplicate clusters by the least power of two at or above their size.
CLUSTER_HISTOGRAM_PREFIX = "near_duplicate_cluster_size_le_"
HISTOGRAM_PREFIXES = (DOCUMENT_HISTOGRAM_PREFIX, FRAGMENT_HISTOGRAM_PREFIX, MIDDLE_HISTOGRAM_PREFIX,
                      CLUSTER_HISTOGRAM_PREFIX)


def histogram_key(prefix: str, n: int) -> str:
    """The statistic counting ``n`` in a histogram of powers of two: ``prefix`` + the least power >= n."""
    return f"{prefix}{1 << max(n - 1, 0).bit_length()}"
REJECTED_REASON_PREFIX = "rejected/"
# Rejected for a reason that says nothing about the corpus being broken (an
# empty __init__.py, a .pyc beside the sources): written to the dead letters,
# counted by reason, not counted as errors.
SKIP_REASONS = ("empty_document", "binary_file", "contaminated")

SPAN_UNITS = ("char", "line", "token")
FIM_LEVELS = ("context", "document")
GROUPINGS = ("none", "repo")
DEDUP_MODES = ("exact", "near", "none")
TRIM_POLICIES = ("paper", "keep_middle")


class InputSelection(NamedTuple):
    """What ``--input``, ``--include`` and ``--exclude`` select: patterns, then fnmatch globs on paths."""

    patterns: tuple
    include: tuple = ()
    exclude: tuple = ()


class InputFile(NamedTuple):
    """A file as matched: reading checks that it is still this file (size, modification time).
    ``pattern``: the ``--input`` that selected it (the first, sorted, of several), for statistics."""

    path: str
    size: int
    mtime: Optional[float] = None
    pattern: str = ""

    @classmethod
    def from_metadata(cls, metadata, pattern: str = "") -> "InputFile":
        """The ``InputFile`` of a Beam ``FileMetadata``."""
        return cls(metadata.path, metadata.size_in_bytes, getattr(metadata, "last_updated_in_seconds", None),
                   pattern)


class FileRange(NamedTuple):
    """The records of ``file`` that start in bytes ``[start, end)``; ``end`` None: to the end."""

    file: InputFile
    start: int = 0
    end: Optional[int] = None


class Document(NamedTuple):
    """Text of one document and where it came from.

    ``position``: the byte offset where its line starts in the (decompressed)
    JSONL file, its row in a Parquet file, 0 for a whole file. A position, not
    a line number, so that a file read in byte ranges by many workers names
    each record the same way as a file read whole. ``language``: the record's
    ``--language_field``, else named by the file's extension; ``pattern``: the
    ``--input`` it came from. Both only sort the statistics per source.
    ``repo``/``path``: with ``--group_by repo``, the repository the document
    is a file of and its path there. ``content_hash``: its identity
    (``transforms.core.hashing.document_identity``), computed once where it
    is read (``identified``) and used by every stage after: the split, the
    evaluation problems, the shuffle and the dedup.
    """

    source: str
    position: int
    text: str
    id: Optional[str] = None
    language: str = ""
    pattern: str = ""
    repo: Optional[str] = None
    path: Optional[str] = None
    split: str = TRAIN
    content_hash: bytes = b""


def identified(doc: Document) -> Document:
    """``doc`` with its ``content_hash`` set."""
    return doc._replace(content_hash=document_identity(doc.text, doc.path if doc.repo is not None else None))


class Rejected(NamedTuple):
    """A record that did not become a document: the dead letter's content (``position`` as in ``Document``)."""

    source: str
    position: int
    reason: str
    detail: str
    raw_start: str
    id: Optional[str] = None

    def as_json_line(self) -> bytes:
        """One UTF-8 JSON line. A file name that is not UTF-8 (Python holds its bytes as lone
        surrogates) is written as ``\\udcXX`` escapes: valid JSON, and ``os.fsencode`` of the
        parsed ``source`` gives the name's bytes back."""
        return json.dumps(self._asdict(), ensure_ascii=False, sort_keys=True).encode("utf-8", "backslashreplace")


class TokenizedDocument(NamedTuple):
    """A document's ids (``token_dtype(vocab_size)``, no ``<eot>``) and its identity for the seeded shuffle;
    a repository's file (``PATH\n`` + content) keeps its ``repo`` and ``path`` until its repository is put
    together."""

    content_hash: bytes
    ids: np.ndarray
    repo: Optional[str] = None
    path: Optional[str] = None
    # UTF-8 bytes of the text the ids encode: what removing a duplicate saves.
    text_bytes: int = 0
    split: str = TRAIN


class Chunk(NamedTuple):
    """``ids`` (at most ``context_length``) cut at ``index`` from shuffle ``bucket``: its identity."""

    bucket: int
    index: int
    ids: np.ndarray


class Example(NamedTuple):
    """One training example (int64 arrays of ``context_length``), identified by its chunk."""

    bucket: int
    index: int
    input_ids: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray


class ShardInfo(NamedTuple):
    """One written shard: the path of its main file, its record count and its format (an output format's
    name, ``jsonl`` for dead letters)."""

    path: str
    records: int
    format: str


@dataclasses.dataclass(frozen=True)
class FimConfig:
    """How fragments are transformed; the CLI help describes each field."""

    context_length: int
    rate: float = 0.5
    spm_rate: float = 0.5
    span_unit: str = "char"
    trim: str = "paper"
    max_middle_tokens: int = 0
    min_fragment_tokens: int = 0
    level: str = "context"
    format: str = "paper"

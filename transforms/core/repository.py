"""Repository-level packing: one repository's files as contexts (StarCoder2, Qwen2.5-Coder style).

``repository_parts``: a repository's name and its files (each the ids of
``PATH\\n`` + content, in the order the caller sorted them) -> *parts*, each
``[BOS] <repo_name> NAME <file_sep> FILE <file_sep> FILE ...``. A part holds
whole files, as many as fit in ``budget`` ids; a file longer than that is a
part of its own, which packing then cuts into contexts. Every part repeats
the repository's name, so each context says which repository it is from.

``file_spans``: where the files of a packed fragment are, for FIM on one
file's content (never across a file separator) and for reading records back.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


def repository_parts(name_ids: np.ndarray, files: list[np.ndarray], budget: int, special) -> list[np.ndarray]:
    """The parts of one repository, files in the order given; ``budget``: ids per part, ``<eot>`` excluded."""
    dtype = name_ids.dtype
    header = np.concatenate([np.array(([special.bos] if special.bos is not None else []) + [special.repo_name],
                                      dtype=dtype), name_ids])
    separator = np.array([special.file_sep], dtype=dtype)
    parts: list[list[np.ndarray]] = []
    length = 0
    for file in files:
        size = 1 + len(file)
        if not parts or length + size > budget:
            parts.append([header])
            length = len(header)
        parts[-1] += [separator, file]
        length += size
    return [np.concatenate(part) for part in parts]


class FileSpan(NamedTuple):
    """One file of a fragment: ``[separator, content_start)`` holds ``<file_sep>`` and the ``PATH\\n``
    ids, ``[content_start, end)`` its content; ``content_start == end``: no content here."""

    separator: int
    content_start: int
    end: int


def file_spans(fragment: np.ndarray, special, piece_bytes) -> list[FileSpan]:
    """The files whose ``<file_sep>`` is in ``fragment`` (a continuation before the first is not one).

    The content starts after the id whose bytes hold the path's newline: an
    id that also holds the first bytes of the content keeps them with the
    path, so that no id is split.
    """
    separators = np.flatnonzero(fragment == special.file_sep).tolist()
    ends = separators[1:] + [len(fragment)]
    spans = []
    for start, end in zip(separators, ends):
        content_start = end
        for k in range(start + 1, end):
            surface: Optional[bytes] = piece_bytes[fragment[k]]
            if surface and b"\n" in surface:
                content_start = k + 1
                break
        spans.append(FileSpan(start, content_start, end))
    return spans

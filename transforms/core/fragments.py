"""A fragment as FIM sees it, and the re-encoding of the pieces FIM cuts out.

``fragment_parts`` turns a fragment's ids (an array) into *parts*:
``TextSpan``s of decoded text that cut points may fall in, and arrays of
original ids that must stay whole (bytes of a character cut by a chunk
boundary, ids that stand for no text). ``split_parts`` cuts parts into
prefix, middle and suffix; ``encode_parts`` turns each back into ids,
re-encoding text with the tokenizer's fragment encoder, and, where the
tokenizer encodes words independently, only the words at the two ends of
each span.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Union

import numpy as np

from transforms.core.tokenizer import Tokenizer


class TextRun:
    """The decoded text of a run of original ids, and the ids themselves.

    ``ids_between`` finds the original ids of a slice of the text, which is
    what lets FIM re-encode only the words around its cut points.
    """

    __slots__ = ("text", "ids", "_byte_offsets")

    def __init__(self, text: str, ids: np.ndarray, byte_lengths: np.ndarray):
        self.text = text
        self.ids = ids
        self._byte_offsets = np.concatenate([[0], np.cumsum(byte_lengths)])

    def _byte_offset(self, char_offset: int) -> int:
        text = self.text
        return char_offset if text.isascii() else len(text[:char_offset].encode("utf-8"))

    def ids_between(self, start: int, end: int) -> Optional[np.ndarray]:
        """Original ids covering exactly ``text[start:end]``, or ``None`` if no ids do."""
        offsets = self._byte_offsets
        a, b = self._byte_offset(start), self._byte_offset(end)
        k, m = np.searchsorted(offsets, (a, b)).tolist()
        if m >= len(offsets) or offsets[k] != a or offsets[m] != b:
            return None
        return self.ids[k:m]


@dataclasses.dataclass(frozen=True)
class TextSpan:
    """``run.text[start:end]``: a piece of text FIM may cut and must re-encode.

    Not an array, so it is never mistaken for a run of ids.
    """

    run: TextRun
    start: int
    end: int


# A part: text FIM may cut, or a run of original ids it must keep whole.
Part = Union[TextSpan, np.ndarray]


def _incomplete_tail(data: bytes, start: int) -> int:
    """Length of a UTF-8 sequence at the end of ``data[start:]`` that lacks its last bytes."""
    end = len(data)
    p = end - 1
    while p >= start and end - p <= 3 and (data[p] & 0xC0) == 0x80:
        p -= 1
    if p < start:
        return 0
    lead = data[p]
    need = 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 1
    return end - p if end - p < need else 0


def _edge_tokens(byte_lengths: np.ndarray, nbytes: int, from_end: bool) -> Optional[int]:
    """How many edge ids (byte pieces, one byte each) cover ``nbytes`` edge bytes; ``None`` if not whole ids."""
    # Every piece stands for at least one byte: ``nbytes`` ids are enough to look at.
    edge = byte_lengths[max(len(byte_lengths) - nbytes, 0):][::-1] if from_end else byte_lengths[:nbytes]
    covered = k = 0
    for length in edge.tolist():
        if covered >= nbytes:
            break
        covered += length
        k += 1
    return k if covered == nbytes else None


class FragmentParts(NamedTuple):
    """A fragment as parts, and what splitting it found: character bytes cut off at its
    edges (kept as byte ids), and runs kept whole because they were not valid UTF-8."""

    parts: list
    partial_character_edges: int = 0
    kept_whole_invalid_utf8: int = 0


def _text_run_parts(ids: np.ndarray, byte_lengths: np.ndarray, tokenizer: Tokenizer) -> FragmentParts:
    """Parts of a run of ids that all stand for bytes."""
    data = tokenizer.surface(ids)
    lead = 0
    while lead < len(data) and (data[lead] & 0xC0) == 0x80:
        lead += 1
    tail = _incomplete_tail(data, lead)
    k_lead = _edge_tokens(byte_lengths, lead, from_end=False)
    k_tail = _edge_tokens(byte_lengths, tail, from_end=True)
    try:
        if k_lead is None or k_tail is None:
            raise ValueError("partial character inside an id")
        text = data[lead:len(data) - tail].decode("utf-8")
    except ValueError:
        # Not valid UTF-8 inside (ids that did not come from encoding text):
        # keep the run whole rather than guess.
        return FragmentParts([ids], kept_whole_invalid_utf8=1)
    end = len(ids) - k_tail
    parts: list = []
    if k_lead:
        parts.append(ids[:k_lead])
    if text:
        parts.append(TextSpan(TextRun(text, ids[k_lead:end], byte_lengths[k_lead:end]), 0, len(text)))
    if k_tail:
        parts.append(ids[end:])
    return FragmentParts(parts, partial_character_edges=bool(k_lead) + bool(k_tail))


def fragment_parts(ids: np.ndarray, tokenizer: Tokenizer) -> FragmentParts:
    """Splits a fragment into text FIM may cut and id runs it must keep whole."""
    byte_lengths = tokenizer.piece_lengths[ids]
    no_text = np.flatnonzero(byte_lengths < 0).tolist()
    if not no_text:
        return _text_run_parts(ids, byte_lengths, tokenizer)
    parts: list = []
    edges = invalid = 0
    start = 0
    for k in no_text + [len(ids)]:
        if k > start:
            run = _text_run_parts(ids[start:k], byte_lengths[start:k], tokenizer)
            parts.extend(run.parts)
            edges += run.partial_character_edges
            invalid += run.kept_whole_invalid_utf8
        if k < len(ids):
            parts.append(ids[k:k + 1])
        start = k + 1
    return FragmentParts(_merge_id_runs(parts), edges, invalid)


def _merge_id_runs(parts: list) -> list:
    merged: list = []
    for part in parts:
        if merged and isinstance(part, np.ndarray) and isinstance(merged[-1], np.ndarray):
            merged[-1] = np.concatenate([merged[-1], part])
        elif isinstance(part, TextSpan) or len(part):
            merged.append(part)
    return merged


def unit_length(part: Part) -> int:
    return part.end - part.start if isinstance(part, TextSpan) else 1


def cut_candidates(parts: list, span_unit: str) -> Optional[list]:
    """Positions where cut points may fall; ``None`` means every position 0..N."""
    if span_unit == "char":
        return None
    if span_unit != "line":
        raise ValueError(f"unknown span unit {span_unit!r}")
    positions = [0]
    offset = 0
    for part in parts:
        if isinstance(part, TextSpan):
            text, start = part.run.text, part.start
            while (nl := text.find("\n", start, part.end)) >= 0:
                positions.append(offset + nl + 1 - part.start)
                start = nl + 1
        offset += unit_length(part)
    if positions[-1] != offset:
        positions.append(offset)
    return positions


def split_parts(parts: list, i: int, j: int) -> tuple[list, list, list]:
    """Cuts ``parts`` at unit positions ``i <= j`` into prefix, middle, suffix."""
    out: tuple[list, list, list] = ([], [], [])
    offset = 0
    for part in parts:
        n = unit_length(part)
        if isinstance(part, TextSpan):
            a, b = min(max(i - offset, 0), n), min(max(j - offset, 0), n)
            for target, (x, y) in zip(out, ((0, a), (a, b), (b, n))):
                if y > x:
                    target.append(TextSpan(part.run, part.start + x, part.start + y))
        else:
            target = out[0] if offset < i else out[1] if offset < j else out[2]
            target.append(part)
        offset += n
    return out


def _word_boundary_at_or_after(text: str, start: int, end: int) -> int:
    """First ``p`` in ``[start, end]`` where a run of spaces follows a non-space, or -1."""
    p = text.find(" ", max(start, 1), end)
    while p > 0 and text[p - 1] == " ":
        p = text.find(" ", p + 1, end)
    return p


def _word_boundary_before(text: str, start: int, end: int) -> int:
    """Last ``p`` in ``[start, end)`` where a run of spaces follows a non-space, or -1."""
    p = text.rfind(" ", start, end)
    while p > start and text[p - 1] == " ":
        p -= 1
    return p if p > 0 and text[p - 1] != " " else -1


def _reencoding_plan(span: TextSpan, local: bool) -> list:
    """Text to encode and original ids to keep that make up ``span``'s encoding.

    With a tokenizer whose pieces never cross a word boundary (a space after
    a non-space), encoding text is encoding each word on its own; the words
    strictly inside the span keep their original ids and only the words at
    its two ends are re-encoded. Otherwise the whole span is re-encoded.
    """
    text = span.run.text
    if local:
        first = _word_boundary_at_or_after(text, span.start, span.end)
        last = _word_boundary_before(text, first, span.end) if first >= 0 else -1
        if first >= 0 and last > first:
            kept = span.run.ids_between(first, last)
            if kept is not None:
                return [text[span.start:first], kept, text[last:span.end]]
    return [text[span.start:span.end]]


def encode_parts(groups: list[list], tokenizer: Tokenizer) -> list[np.ndarray]:
    """Token ids of each group of parts, all text re-encoded in one batch call."""
    plans = [[_reencoding_plan(p, tokenizer.encodes_words_independently) if isinstance(p, TextSpan) else [p]
              for p in group] for group in groups]
    texts = [piece for group in plans for plan in group for piece in plan if isinstance(piece, str) and piece]
    encoded = iter(tokenizer.encode_fragments(texts)) if texts else iter(())
    result = []
    for group in plans:
        ids = [next(encoded) if isinstance(piece, str) else piece
               for plan in group for piece in plan if not isinstance(piece, str) or piece]
        result.append(np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64))
    return result

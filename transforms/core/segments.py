"""Reading an example's segments back: which are FIM, and their prefix, middle and suffix.

For ``fimflow inspect`` and for tests that reassemble FIM data into its
source text; the pipeline never needs it.
"""

from __future__ import annotations

from typing import NamedTuple

from transforms.core.fim_format import FORMATS, PARTS, FimFormat


class FimSegment(NamedTuple):
    """One segment of an example read back: ``mode`` is plain, psm, spm or truncated; ``bos``:
    it starts with the BOS of a document's start."""

    mode: str
    prefix: list
    middle: list
    suffix: list
    eot: bool
    bos: bool = False


def _leading_sentinels(layout: tuple) -> list:
    return list(layout[:next(i for i, item in enumerate(layout) if item in PARTS)])


def parse_segment(ids: list, special, fim_format: FimFormat = FORMATS["paper"]) -> FimSegment:
    """Splits one segment's ids into prefix, middle and suffix in document order.

    A plain fragment is all prefix. Parts that the layout puts side by side
    with no sentinel between them (SPM's prefix and middle, Codestral's) are
    one run in the tokens, reported as the middle. ``truncated`` is a FIM
    example the trim cut before its last sentinel; its parts are returned as
    far as present.
    """
    eot = bool(ids) and ids[-1] == special.eot
    body = ids[:-1] if eot else ids
    bos = special.bos is not None and bool(body) and body[0] == special.bos
    body = body[1:] if bos else body
    # The most specific order first: the paper's SPM opens with two sentinels, PSM with one.
    for mode, layout in sorted(fim_format.orders.items(), key=lambda m: -len(_leading_sentinels(m[1]))):
        leading = _leading_sentinels(layout)
        if body[:len(leading)] == [getattr(special, role) for role in leading]:
            return _parse_layout(mode, layout[len(leading):], body[len(leading):], special, eot, bos)
    return FimSegment("plain", body, [], [], eot, bos)


def _parse_layout(mode: str, layout: tuple, body: list, special, eot: bool, bos: bool) -> FimSegment:
    parts = {"P": [], "M": [], "S": []}
    pending: list = []
    position = 0
    for item in layout:
        if item in PARTS:
            pending.append(item)
            continue
        sentinel = getattr(special, item)
        if sentinel not in body[position:]:
            parts[pending[0] if pending else "M"] = body[position:]
            return FimSegment("truncated", parts["P"], parts["M"], parts["S"], eot, bos)
        end = body.index(sentinel, position)
        if pending:
            parts[pending[-1]] = body[position:end]
        pending, position = [], end + 1
    if pending:
        parts[pending[-1]] = body[position:]
    return FimSegment(mode, parts["P"], parts["M"], parts["S"], eot, bos)


class RepositoryFile(NamedTuple):
    """One file of a repository segment: ``header`` (``PATH\\n``, and any first bytes of the content
    that share its last id) and its content read as a FIM segment (``plain`` when FIM left it)."""

    header: list
    content: FimSegment


class RepositorySegment(NamedTuple):
    """A repository-level segment: ``lead`` (BOS, ``<repo_name>`` and the name, or the end of a
    file a context boundary cut), then its files in order."""

    lead: list
    files: list
    eot: bool


def parse_repository_segment(ids: list, special, fim_format: FimFormat = FORMATS["paper"]) -> RepositorySegment:
    """Splits a repository-level segment into its files, each with its FIM parts in document order."""
    eot = bool(ids) and ids[-1] == special.eot
    body = ids[:-1] if eot else ids
    cuts = [i for i, t in enumerate(body) if t == special.file_sep]
    spans = [body[a + 1:b] for a, b in zip(cuts, cuts[1:] + [len(body)])]
    lead = body[:cuts[0]] if cuts else body
    ends_middle = special.fim_end is not None and special.fim_end == special.file_sep
    if ends_middle and spans and not spans[-1] and len(spans) > 1:
        # A middle that ended the segment's last file ended with the separator piece itself.
        spans = spans[:-1]
        spans[-1] = spans[-1] + [special.fim_end]
    sentinels = {special.fim_prefix, special.fim_suffix, special.fim_middle} - {None}
    files = []
    for k, span in enumerate(spans):
        first = next((i for i, t in enumerate(span) if t in sentinels), len(span))
        content = span[first:]
        if ends_middle and first < len(span) and k + 1 < len(spans) and content[-1:] != [special.fim_end]:
            # Its middle ends where the next file starts (the separator was not written twice).
            content = content + [special.fim_end]
        files.append(RepositoryFile(span[:first], parse_segment(content, special, fim_format)))
    return RepositorySegment(lead, files, eot)

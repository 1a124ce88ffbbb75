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

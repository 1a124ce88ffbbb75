"""Reading an example's segments back: which are FIM, and their prefix, middle and suffix.

For ``fimflow inspect`` and for tests that reassemble FIM data into its
source text; the pipeline never needs it.
"""

from __future__ import annotations

from typing import NamedTuple


class FimSegment(NamedTuple):
    """One segment of an example read back: ``mode`` is plain, psm, spm or truncated."""

    mode: str
    prefix: list
    middle: list
    suffix: list
    eot: bool


def parse_segment(ids: list, special) -> FimSegment:
    """Splits one segment's ids into prefix, middle and suffix in document order.

    A plain fragment is all prefix. ``truncated`` is a FIM example the trim
    cut before its middle sentinel; its parts are returned as far as present.
    """
    eot = bool(ids) and ids[-1] == special.eot
    body = ids[:-1] if eot else ids
    if not body or body[0] != special.fim_prefix:
        return FimSegment("plain", body, [], [], eot)
    spm = len(body) > 1 and body[1] == special.fim_suffix
    rest = body[2:] if spm else body[1:]
    if spm:
        if special.fim_middle not in rest:
            return FimSegment("truncated", [], [], rest, eot)
        m = rest.index(special.fim_middle)
        # SPM puts prefix and middle after <mid> as one run; their split is
        # not marked in the tokens, so the run is reported as the middle.
        return FimSegment("spm", [], rest[m + 1:], rest[:m], eot)
    if special.fim_suffix not in rest:
        return FimSegment("truncated", rest, [], [], eot)
    f = rest.index(special.fim_suffix)
    after = rest[f + 1:]
    if special.fim_middle not in after:
        return FimSegment("truncated", rest[:f], [], after, eot)
    m = after.index(special.fim_middle)
    return FimSegment("psm", rest[:f], after[m + 1:], after[:m], eot)

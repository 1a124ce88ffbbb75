"""Checks of FIM output shared by unit and end-to-end tests."""

from __future__ import annotations

import numpy as np

from transforms.core.fim import fim_chunk
from transforms.core.segments import parse_segment
from transforms.schema import Chunk, FimConfig
from transforms.core.tokenizer import Tokenizer


def render(tokenizer: Tokenizer, ids) -> bytes:
    """Bytes of ``ids``, with ids that stand for no text shown as ``\\0<id>\\0``."""
    return b"".join(tokenizer.piece_bytes[i] if tokenizer.piece_bytes[i] is not None
                    else b"\0%d\0" % i for i in ids)


def split_fragments(ids: list, eot: int) -> list[list]:
    fragments, current = [], []
    for t in ids:
        if t == eot:
            fragments.append(current)
            current = []
        else:
            current.append(t)
    if current:
        fragments.append(current)
    return fragments


def segments(example_ids: list, segment_ids: list) -> list[list]:
    out: dict = {}
    for t, s in zip(example_ids, segment_ids):
        if s:
            out.setdefault(s, []).append(t)
    return [out[s] for s in sorted(out)]


def reassemble(tokenizer: Tokenizer, seg_ids: list, may_be_trimmed: bool = False) -> tuple[str, list[bytes]]:
    """Mode of a segment and its text parts in document order.

    One part, the whole fragment, unless the segment was cut by the trim (the
    last segment of a full example without its ``<eot>``): then each part on
    its own, since the trim may have cut the middle short.
    """
    part = parse_segment(seg_ids, tokenizer.special)
    if part.mode == "truncated" or (may_be_trimmed and not part.eot and part.mode != "plain"):
        return part.mode, [render(tokenizer, p) for p in (part.prefix, part.middle, part.suffix) if p]
    return part.mode, [render(tokenizer, part.prefix + part.middle + part.suffix)]


def check_lossless(tokenizer, chunk_ids: list, config: FimConfig, seed: int):
    example, stats = fim_chunk(Chunk(0, 0, np.array(chunk_ids)), seed, config, tokenizer)
    ids, segs = example.input_ids.tolist(), example.segment_ids.tolist()
    originals = split_fragments(chunk_ids, tokenizer.special.eot)
    rebuilt = segments(ids, segs)
    assert len(rebuilt) == len(originals)
    for original, seg in zip(originals, rebuilt):
        mode, parts = reassemble(tokenizer, seg)
        assert mode != "truncated"
        assert parts == [render(tokenizer, original)], mode
    return stats

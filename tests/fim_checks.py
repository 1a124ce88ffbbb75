"""Checks of FIM output shared by unit and end-to-end tests."""

from __future__ import annotations

import numpy as np

from transforms.core.fim import fim_chunk
from transforms.core.fim_format import FORMATS, SENTINEL_ROLES, FimFormat
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


def reassemble(tokenizer: Tokenizer, seg_ids: list, may_be_trimmed: bool = False,
               fmt: FimFormat = FORMATS["paper"]) -> tuple[str, list[bytes]]:
    """Mode of a segment and its text parts in document order.

    One part, the whole fragment, unless the segment was cut by the trim (the
    last segment of a full example without its ``<eot>``): then each part on
    its own, since the trim may have cut the middle short.
    """
    part = parse_segment(seg_ids, tokenizer.special, fmt)
    bos = [tokenizer.special.bos] if part.bos else []
    if part.mode == "truncated" or (may_be_trimmed and not part.eot and part.mode != "plain"):
        return part.mode, [render(tokenizer, p) for p in (bos, part.prefix, part.middle, part.suffix) if p]
    return part.mode, [render(tokenizer, bos + part.prefix + part.middle + part.suffix)]


def check_lossless(tokenizer, chunk_ids: list, config: FimConfig, seed: int, fmt: FimFormat = FORMATS["paper"]):
    """Each segment reassembles to its fragment's bytes, keeps its BOS first, and holds special ids only
    where the format's layout puts them."""
    example, stats = fim_chunk(Chunk(0, 0, np.array(chunk_ids)), seed, config, tokenizer)
    ids, segs = example.input_ids.tolist(), example.segment_ids.tolist()
    sp = tokenizer.special
    originals = split_fragments(chunk_ids, sp.eot)
    rebuilt = segments(ids, segs)
    assert len(rebuilt) == len(originals)
    sentinels = {getattr(sp, role) for layout in fmt.orders.values() for role in layout if role in SENTINEL_ROLES}
    for original, seg in zip(originals, rebuilt):
        mode, parts = reassemble(tokenizer, seg, fmt=fmt)
        assert mode != "truncated"
        assert parts == [render(tokenizer, original)], mode
        starts_with_bos = sp.bos is not None and original[:1] == [sp.bos]
        assert (seg[:1] == [sp.bos]) == starts_with_bos and sp.bos not in seg[starts_with_bos:]
        used = [t for t in seg if t in sentinels]
        if mode == "plain":
            assert used == []
        else:
            layout = fmt.orders[mode] if mode in fmt.orders else fmt.orders["spm"]
            assert used == [getattr(sp, role) for role in layout if role in SENTINEL_ROLES], mode
    return stats

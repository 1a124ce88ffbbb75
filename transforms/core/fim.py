"""Fill-in-the-Middle on token ids: per chunk (the paper's context level) or per document.

``fim_chunk``: a ``Chunk`` (ids cut from the packed stream, documents
separated by ``<eot>``) -> an ``Example`` (three int64 arrays of exactly
``context_length``) and its statistics. The chunk is split on ``<eot>`` into
fragments; a fragment is transformed with probability ``rate`` into its
format's PSM layout (the paper's: ``<pre> P <suf> S <mid> M``) or, with
probability ``spm_rate``, its SPM layout (``<pre> <suf> S <mid> P M``, variant
2 of the FIM paper; ``transforms.core.fim_format`` holds every format's);
fragments are re-joined with ``<eot>``, trimmed to the context length and
padded at the tail. A document's BOS stays in front of its FIM form; in a
repository part, FIM cuts inside one file's content, only where the context
has room for the sentinels.

``fim_document``: the same transformation on a whole ``TokenizedDocument``
before packing, for the paper's ablation.

The transform works on the bytes that pieces stand for, never on ``decode``
(see ``transforms.core.fragments``): bytes of a character cut in two by a
chunk boundary stay as their original byte pieces, and prefix, middle and
suffix are re-encoded by the tokenizer's fragment encoder, so the bytes of
P+M+S are exactly the bytes of the fragment. All randomness comes from a
generator seeded by the run seed and the chunk's (or document's) identity, so
a retried bundle produces the same bytes. No Beam here: the stage
``transforms.fim`` wraps these functions.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import NamedTuple, Optional

import numpy as np

from transforms.core.fim_format import fim_format
from transforms.core.fragments import cut_candidates, encode_parts, fragment_parts, split_parts, unit_length
from transforms.core.hashing import seeded_rng
from transforms.core.repository import file_spans
from transforms.core.tokenizer import Tokenizer
from transforms.schema import (FRAGMENT_HISTOGRAM_PREFIX, MIDDLE_HISTOGRAM_PREFIX, Chunk, Example, FimConfig, Stats,
                               TokenizedDocument, histogram_key)


class _Draws(NamedTuple):
    """The random choices for one transformed fragment, as fractions of its length."""

    cut_a: float
    cut_b: float
    spm: bool


def _draw(rng, config: FimConfig) -> Optional[_Draws]:
    if rng.random() >= config.rate:
        return None
    return _Draws(rng.random(), rng.random(), rng.random() < config.spm_rate)


class FimForm(NamedTuple):
    """A fragment's FIM form (int64 ids, sentinels included, no ``<eot>``) and what cutting it found."""

    tokens: np.ndarray
    partial_character_edges: int
    kept_whole_invalid_utf8: int
    moved_to_token_boundaries: bool = False
    middle_tokens: int = 0


def _positions(draws: _Draws, n: int) -> tuple[int, int]:
    """Two cut positions among ``0..n``, in order."""
    i, j = sorted(min(int(u * (n + 1)), n) for u in (draws.cut_a, draws.cut_b))
    return i, j


def _cap_middle(middle: np.ndarray, suffix: np.ndarray, cap: int,
                tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Moves the end of a middle longer than ``cap`` ids into the suffix.

    The cut goes back to a character boundary so that no character is split
    between middle and suffix; the bytes of middle + suffix do not change.
    """
    if cap <= 0 or len(middle) <= cap:
        return middle, suffix
    table = tokenizer.piece_bytes
    k = cap
    while k > 0 and (s := table[middle[k]]) and (s[0] & 0xC0) == 0x80:
        k -= 1
    return middle[:k], np.concatenate([middle[k:], suffix])


def fim_form(ids: np.ndarray, draws: _Draws, config: FimConfig, tokenizer: Tokenizer) -> FimForm:
    """The FIM form of one fragment, cut where ``draws`` say."""
    if config.span_unit == "token":
        i, j = _positions(draws, len(ids))
        groups, view = [[ids[:i]], [ids[i:j]], [ids[j:]]], None
    else:
        view = fragment_parts(ids, tokenizer)
        candidates = cut_candidates(view.parts, config.span_unit)
        if candidates is None:
            i, j = _positions(draws, sum(unit_length(p) for p in view.parts))
        else:
            k = len(candidates)
            i, j = sorted(candidates[min(int(u * k), k - 1)] for u in (draws.cut_a, draws.cut_b))
        groups = list(split_parts(view.parts, i, j))
    prefix, middle, suffix = encode_parts(groups, tokenizer)
    moved = (view is not None and not tokenizer.reencodes_losslessly
             and tokenizer.surface(np.concatenate([prefix, middle, suffix])) != tokenizer.surface(ids))
    if moved:
        # Re-encoding lost bytes (a character or half a user-defined symbol
        # became <unk>): the same draws cut between the original ids instead.
        i, j = _positions(draws, len(ids))
        prefix, middle, suffix = ids[:i], ids[i:j], ids[j:]
    middle, suffix = _cap_middle(middle, suffix, config.max_middle_tokens, tokenizer)
    sp = tokenizer.special
    parts = {"P": prefix, "S": suffix, "M": middle}
    layout = fim_format(config.format).orders[form_mode(draws, config)]
    tokens = np.concatenate([parts[item] if item in parts else [getattr(sp, item)] for item in layout],
                            dtype=np.int64)
    return FimForm(tokens, view.partial_character_edges if view else 0, view.kept_whole_invalid_utf8 if view else 0,
                   moved, len(middle))


def form_mode(draws: _Draws, config: FimConfig) -> str:
    """``psm`` or ``spm``: the order drawn, or the format's only order (Codestral's is suffix-first)."""
    orders = fim_format(config.format).orders
    if len(orders) == 1:
        return next(iter(orders))
    return "spm" if draws.spm else "psm"


def _lead(ids: np.ndarray, special) -> int:
    """1 if ``ids`` start with BOS (a document's start), else 0: the BOS stays in front of a FIM form."""
    return int(special.bos is not None and len(ids) > 0 and ids[0] == special.bos)


# Re-tokenization can change a shortened fragment's length again; a few
# attempts converge in practice, after which the fragment stays plain.
_FIT_ATTEMPTS = 4


def _fit_fim_form(ids: np.ndarray, form: FimForm, room: int, draws: _Draws, config: FimConfig,
                  tokenizer: Tokenizer) -> tuple[Optional[FimForm], int]:
    """For ``keep_middle``: the FIM form of the longest head of ``ids`` that fits in ``room``.

    Returns the form and how many ids of the fragment it covers, or ``(None, 0)``.
    The same draws cut the shorter fragment, so prefix, middle and suffix stay
    whole and only the fragment's tail is left out.
    """
    n = len(ids)
    for _ in range(_FIT_ATTEMPTS):
        if len(form.tokens) <= room:
            return form, n
        n -= len(form.tokens) - room
        if n < 1:
            break
        form = fim_form(ids[:n], draws, config, tokenizer)
    return (form, n) if len(form.tokens) <= room and n >= 1 else (None, 0)


def _fragments(ids: np.ndarray, eot: int):
    """``(fragment, followed_by_eot, next_start)`` for each fragment of a chunk, as array views."""
    start = 0
    for end in np.flatnonzero(ids == eot).tolist():
        yield ids[start:end], True, end + 1
        start = end + 1
    if start < len(ids):
        yield ids[start:], False, len(ids)


def _count_document_fim(fragment: np.ndarray, with_eot: bool, config: FimConfig, sp, stats: Stats) -> None:
    """Counts the tokens of document-level FIM examples, and those that a chunk boundary cut apart.

    A cut example is counted once, in the chunk where it starts (its fragment
    begins with the layout's first sentinel and has no ``<eot>`` there), not
    again in the chunks that hold the rest of it.
    """
    sentinels = [i for i in (sp.fim_prefix, sp.fim_suffix, sp.fim_middle) if i is not None]
    if not np.isin(fragment, sentinels).any():
        return
    stats["fim_tokens"] += len(fragment) + with_eot
    lead = _lead(fragment, sp)
    openers = {getattr(sp, layout[0]) for layout in fim_format(config.format).orders.values()}
    if not with_eot and len(fragment) > lead and fragment[lead] in openers:
        stats["document_fim_examples_cut"] += 1


def _body(fragment: np.ndarray, file_pick: float, tokenizer: Tokenizer) -> tuple[int, int]:
    """Where in ``fragment`` FIM may cut: after a document's BOS; in a repository, the content of
    one file (picked by ``file_pick``) of those whose separator is in the fragment. ``(0, 0)``: nowhere."""
    sp = tokenizer.special
    if sp.file_sep is None:
        return _lead(fragment, sp), len(fragment)
    spans = [span for span in file_spans(fragment, sp, tokenizer.piece_bytes) if span.content_start < span.end]
    if not spans:
        return 0, 0
    span = spans[min(int(file_pick * len(spans)), len(spans) - 1)]
    return span.content_start, span.end


def _transform_fragment(fragment: np.ndarray, draws: _Draws, file_pick: float, room: int, slack: Optional[int],
                        with_eot: bool, config: FimConfig, tokenizer: Tokenizer,
                        stats: Stats) -> tuple[np.ndarray, int]:
    """A drawn fragment's tokens in the example and how many of its ids they cover.

    ``slack``: how many ids the fragment may grow by (repositories: what the
    example has to spare, so that no file loses its end to the trim); ``None``: any.
    """
    start, end = _body(fragment, file_pick, tokenizer)
    body = fragment[start:end]
    if not len(body):
        return fragment, len(fragment)
    form: Optional[FimForm] = fim_form(body, draws, config, tokenizer)
    covered = len(body)
    if config.trim == "keep_middle":
        # Not with repositories (refused when planning), so nothing follows the body.
        form, covered = _fit_fim_form(body, form, room - start, draws, config, tokenizer)
    tail = fragment[end:]
    if form is not None:
        form_tokens = form.tokens
        if len(tail) and len(form_tokens) and form_tokens[-1] == tokenizer.special.fim_end == tail[0]:
            # CodeGemma ends a middle with the piece that starts the next file: once is enough.
            form_tokens = form_tokens[:-1]
        if slack is not None and len(form_tokens) - len(body) > slack:
            form = None
    if form is None:
        stats["fim_fragments_left_plain_no_room"] += 1
        return fragment, len(fragment)
    if form.partial_character_edges:
        stats["partial_character_edges"] += form.partial_character_edges
    if form.kept_whole_invalid_utf8:
        stats["fragments_kept_whole_invalid_utf8"] += form.kept_whole_invalid_utf8
    if form.moved_to_token_boundaries:
        stats["fim_cuts_moved_to_token_boundaries"] += 1
    stats["fim_fragments"] += 1
    stats[form_mode(draws, config) + "_fragments"] += 1
    tokens = np.concatenate([fragment[:start], form_tokens, tail]) if start or len(tail) else form_tokens
    stats["fim_tokens"] += min(len(tokens) + with_eot, room)
    stats[histogram_key(MIDDLE_HISTOGRAM_PREFIX, form.middle_tokens)] += 1
    return tokens, start + covered + len(tail)


def _segments(ids: np.ndarray, rng, config: FimConfig, tokenizer: Tokenizer, stats: Stats) -> list:
    """The token arrays of an example's segments, before the trim: one per fragment, ``<eot>`` included."""
    sp = tokenizer.special
    L = config.context_length
    eot = np.array([sp.eot], dtype=np.int64)
    segments: list = []
    length = 0
    slack = L - len(ids) if sp.file_sep is not None else None
    for fragment, with_eot, next_start in _fragments(ids, sp.eot):
        if length >= L:
            # Earlier FIM forms grew past the context: the rest of the chunk is
            # trimmed away whole and never counted as fragments.
            stats["trimmed_tokens"] += len(ids) - (next_start - len(fragment) - with_eot)
            break
        tokens, covered = fragment, len(fragment)
        if len(fragment):
            stats["fragments"] += 1
            stats[histogram_key(FRAGMENT_HISTOGRAM_PREFIX, len(fragment))] += 1
            draws = None
            if config.level == "document":
                _count_document_fim(fragment, with_eot, config, sp, stats)
            else:
                stats["fim_candidates"] += 1
                draws = _draw(rng, config)
            if draws is not None and len(fragment) >= config.min_fragment_tokens:
                file_pick = rng.random() if sp.file_sep is not None else 0.0
                tokens, covered = _transform_fragment(fragment, draws, file_pick, L - length, slack, with_eot,
                                                      config, tokenizer, stats)
                if slack is not None:
                    slack -= len(tokens) - len(fragment)
        shortened = covered < len(fragment)
        if with_eot and not shortened:
            tokens = np.concatenate([tokens, eot])
        segments.append(tokens)
        length += len(tokens)
        if shortened:
            # The fragment's document goes on past what fitted: no <eot>, and
            # nothing after it in this example.
            stats["fim_fragments_shortened_to_fit"] += 1
            stats["trimmed_tokens"] += len(fragment) - covered + with_eot + len(ids) - next_start
            break
    return segments


def _example(chunk: Chunk, segments: list, context_length: int, pad: int, stats: Stats) -> Example:
    """Segments laid out as one example: trimmed to the context, numbered, positioned, padded."""
    L = context_length
    lengths = np.array([len(s) for s in segments], dtype=np.int64)
    input_ids = np.concatenate(segments) if segments else np.zeros(0, dtype=np.int64)
    segment_ids = np.repeat(np.arange(1, len(segments) + 1, dtype=np.int64), lengths)
    positions = np.arange(len(input_ids), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if len(input_ids) > L:
        stats["trimmed_tokens"] += len(input_ids) - L
        input_ids, segment_ids, positions = input_ids[:L], segment_ids[:L], positions[:L]
    padding = L - len(input_ids)
    stats["padding_tokens"] += padding
    stats["example_tokens"] += L - padding
    return Example(
        chunk.bucket, chunk.index,
        np.concatenate([input_ids, np.full(padding, pad, dtype=np.int64)]),
        np.concatenate([segment_ids, np.zeros(padding, dtype=np.int64)]),
        np.concatenate([positions, np.zeros(padding, dtype=np.int64)]))


def chunk_rng(seed: int, bucket: int, index: int):
    return seeded_rng("fim", seed, bucket, index)


def fim_chunk(chunk: Chunk, seed: int, config: FimConfig, tokenizer: Tokenizer) -> tuple[Example, Stats]:
    """Applies context-level FIM to one chunk; returns the example and its statistics.

    Fragments stay numpy arrays throughout: plain ones as views of the
    chunk, transformed ones as the concatenation of their re-encoded parts.
    """
    stats: Stats = Counter()
    ids = np.asarray(chunk.ids, dtype=np.int64)
    segments = _segments(ids, chunk_rng(seed, chunk.bucket, chunk.index), config, tokenizer, stats)
    example = _example(chunk, segments, config.context_length, tokenizer.special.pad, stats)
    stats["examples"] += 1
    stats["chunk_tokens"] += len(ids)
    return example, stats


def fim_document(doc: TokenizedDocument, seed: int, config: FimConfig,
                 tokenizer: Tokenizer) -> tuple[TokenizedDocument, Stats]:
    """Document-level FIM (before packing), for the paper's ablation; seeded by the content."""
    stats: Stats = Counter({"fim_candidates": 1})
    draws = _draw(seeded_rng("document-fim", seed, doc.content_hash), config)
    lead = _lead(doc.ids, tokenizer.special)
    if draws is None or len(doc.ids) - lead < max(config.min_fragment_tokens, 1):
        return doc, stats
    ids = np.concatenate([doc.ids[:lead], fim_form(doc.ids[lead:], draws, config, tokenizer).tokens])
    stats["fim_fragments"] += 1
    stats[form_mode(draws, config) + "_fragments"] += 1
    return doc._replace(ids=np.asarray(ids, dtype=doc.ids.dtype)), stats


def fim_at(ids: np.ndarray, text: str, start: int, end: int, spm: bool, config: FimConfig,
           tokenizer: Tokenizer) -> tuple[list, list]:
    """The FIM form of a whole document (``ids``, ``text``) with ``text[start:end]`` as the middle:
    ``(prompt, middle)``, the ids before the middle (BOS first with ``--bos``) and the middle's ids.

    The same path as training examples (``fim_form``), with character cuts and no middle cap, so an
    evaluation prompt is laid out and tokenized exactly as the model saw FIM examples.
    """
    config = dataclasses.replace(config, span_unit="char", max_middle_tokens=0)
    # The document encoder's implicit leading space is a character of the fragment, before the text.
    chars = len(tokenizer.surface(ids).decode("utf-8", errors="replace"))
    offset = chars - len(text)
    draws = _Draws((offset + start + 0.5) / (chars + 1), (offset + end + 0.5) / (chars + 1), spm)
    form = fim_form(np.asarray(ids), draws, config, tokenizer)
    tokens = form.tokens.tolist()
    ended = fim_format(config.format).orders[form_mode(draws, config)][-1] == "fim_end"
    middle_start = len(tokens) - ended - form.middle_tokens
    bos = [tokenizer.special.bos] if tokenizer.special.bos is not None else []
    return bos + tokens[:middle_start], tokens[middle_start:len(tokens) - ended]

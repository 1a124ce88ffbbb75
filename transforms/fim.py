"""Context-level Fill-in-the-Middle on packed chunks.

In: ``Chunk`` elements (``context_length`` token ids cut from the packed
stream, documents separated by ``<eot>``). Out: ``Example`` elements (three
int64 arrays of exactly ``context_length``: ``input_ids``, ``segment_ids``,
``positions``) and per-chunk statistics.

Each chunk is split on ``<eot>`` into fragments. A fragment is transformed
with probability ``rate`` into PSM ``<pre> P <suf> S <mid> M`` or, with
probability ``spm_rate``, SPM (variant 2 of the FIM paper)
``<pre> <suf> S <mid> P M``; fragments are re-joined with ``<eot>``, trimmed to
the context length and padded at the tail.

The transform works on the bytes that pieces stand for, never on ``decode``
(see ``transforms.fragments``): bytes of a character cut in two by a chunk
boundary stay as their original byte pieces, and prefix, middle and suffix
are re-encoded by the tokenizer's fragment encoder, so the bytes of P+M+S are
exactly the bytes of the fragment.
All randomness comes from a ``random.Random`` seeded by the run seed and the
chunk's identity, so a retried bundle produces the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import Counter
from typing import Callable, NamedTuple, Optional

import apache_beam as beam
import numpy as np

from transforms.fragments import (cut_candidates, encode_parts, fragment_parts, split_parts,
                                  unit_length)
from transforms.pack import Chunk
from transforms.tokenize import TokenizedDocument
from transforms.tokenizer import Tokenizer, TokenizerHandle

SPAN_UNITS = ("char", "line", "token")
FIM_LEVELS = ("context", "document")
TRIM_POLICIES = ("paper", "keep_middle")



@dataclasses.dataclass(frozen=True)
class FimConfig:
    """How fragments are transformed; see the CLI help for each field."""

    context_length: int
    rate: float = 0.5
    spm_rate: float = 0.5
    span_unit: str = "char"
    trim: str = "paper"
    max_middle_tokens: int = 0
    min_fragment_tokens: int = 0
    level: str = "context"


class Example(NamedTuple):
    """One training example, identified by the chunk it came from."""

    bucket: int
    index: int
    input_ids: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray


def _rng(*identity) -> random.Random:
    digest = hashlib.blake2b(repr(identity).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def chunk_rng(seed: int, bucket: int, index: int) -> random.Random:
    return _rng("fim", seed, bucket, index)


class _Draws(NamedTuple):
    """The random choices for one transformed fragment, as fractions of its length."""

    cut_a: float
    cut_b: float
    spm: bool


def _draw(rng: random.Random, config: FimConfig) -> Optional[_Draws]:
    if rng.random() >= config.rate:
        return None
    return _Draws(rng.random(), rng.random(), rng.random() < config.spm_rate)


def _cut_groups(ids: np.ndarray, draws: _Draws, config: FimConfig, tokenizer: Tokenizer,
                stats: Counter) -> list:
    """Prefix, middle and suffix of a fragment as parts, cut where ``draws`` say."""
    if config.span_unit == "token":
        n = len(ids)
        i, j = sorted(min(int(u * (n + 1)), n) for u in (draws.cut_a, draws.cut_b))
        return [[ids[:i]], [ids[i:j]], [ids[j:]]]
    parts = fragment_parts(ids, tokenizer, stats)
    candidates = cut_candidates(parts, config.span_unit)
    if candidates is None:
        n = sum(unit_length(p) for p in parts)
        i, j = sorted(min(int(u * (n + 1)), n) for u in (draws.cut_a, draws.cut_b))
    else:
        k = len(candidates)
        i, j = sorted(candidates[min(int(u * k), k - 1)] for u in (draws.cut_a, draws.cut_b))
    return list(split_parts(parts, i, j))


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


def fim_form(ids: np.ndarray, draws: _Draws, config: FimConfig, tokenizer: Tokenizer,
             stats: Counter) -> np.ndarray:
    """The FIM form of one fragment (int64), sentinels included, without its ``<eot>``."""
    groups = _cut_groups(ids, draws, config, tokenizer, stats)
    prefix, middle, suffix = encode_parts(groups, tokenizer)
    middle, suffix = _cap_middle(middle, suffix, config.max_middle_tokens, tokenizer)
    sp = tokenizer.special
    if draws.spm:
        pieces = [[sp.fim_prefix, sp.fim_suffix], suffix, [sp.fim_middle], prefix, middle]
    else:
        pieces = [[sp.fim_prefix], prefix, [sp.fim_suffix], suffix, [sp.fim_middle], middle]
    return np.concatenate(pieces, dtype=np.int64)


# Re-tokenization can change a shortened fragment's length again; a few
# attempts converge in practice, after which the fragment stays plain.
_FIT_ATTEMPTS = 4


def _fit_fim_form(ids: np.ndarray, fim: np.ndarray, room: int, draws: _Draws, config: FimConfig,
                  tokenizer: Tokenizer, stats: Counter) -> tuple[Optional[np.ndarray], int]:
    """For ``keep_middle``: the FIM form of the longest head of ``ids`` that fits in ``room``.

    Returns the form and how many ids of the fragment it covers, or ``(None, 0)``.
    The same draws cut the shorter fragment, so prefix, middle and suffix stay
    whole and only the fragment's tail is left out.
    """
    n = len(ids)
    for _ in range(_FIT_ATTEMPTS):
        if len(fim) <= room:
            return fim, n
        n -= len(fim) - room
        if n < 1:
            break
        fim = fim_form(ids[:n], draws, config, tokenizer, stats)
    return (fim, n) if len(fim) <= room and n >= 1 else (None, 0)


FRAGMENT_HISTOGRAM_PREFIX = "fragment_tokens_le_"


def _fragment_bucket(n: int) -> str:
    return f"{FRAGMENT_HISTOGRAM_PREFIX}{1 << max(n - 1, 0).bit_length()}"


def _fragments(ids: np.ndarray, eot: int):
    """``(fragment, followed_by_eot, next_start)`` for each fragment of a chunk, as array views."""
    start = 0
    for end in np.flatnonzero(ids == eot).tolist():
        yield ids[start:end], True, end + 1
        start = end + 1
    if start < len(ids):
        yield ids[start:], False, len(ids)


def _count_document_fim(fragment: np.ndarray, with_eot: bool, first: bool, sp, stats: Counter):
    """Counts document-level FIM examples that the chunk boundary cut apart."""
    if not np.any((fragment == sp.fim_middle) | (fragment == sp.fim_prefix)):
        return
    stats["fim_tokens"] += len(fragment) + with_eot
    if not with_eot or (first and fragment[0] != sp.fim_prefix):
        stats["document_fim_examples_cut"] += 1


def fim_chunk(chunk: Chunk, seed: int, config: FimConfig,
              tokenizer: Tokenizer) -> tuple[Example, Counter]:
    """Applies context-level FIM to one chunk; returns the example and its statistics.

    Fragments stay numpy arrays throughout: plain ones as views of the
    chunk, transformed ones as the concatenation of their re-encoded parts.
    """
    stats: Counter = Counter()
    sp = tokenizer.special
    rng = chunk_rng(seed, chunk.bucket, chunk.index)
    ids = np.asarray(chunk.ids, dtype=np.int64)
    L = config.context_length
    eot = np.array([sp.eot], dtype=np.int64)
    pieces: list = []  # token arrays, one per segment
    length = 0
    for fragment, with_eot, next_start in _fragments(ids, sp.eot):
        if length >= L:
            # Earlier FIM forms grew past the context: the rest of the chunk is
            # trimmed away whole and never counted as fragments.
            stats["trimmed_tokens"] += len(ids) - (next_start - len(fragment) - with_eot)
            break
        tokens = fragment
        covered = len(fragment)
        if len(fragment):
            stats["fragments"] += 1
            stats[_fragment_bucket(len(fragment))] += 1
            if config.level == "document":
                _count_document_fim(fragment, with_eot, not pieces, sp, stats)
                draws = None
            else:
                stats["fim_candidates"] += 1
                draws = _draw(rng, config)
            if draws is not None and len(fragment) >= config.min_fragment_tokens:
                fim = fim_form(fragment, draws, config, tokenizer, stats)
                if config.trim == "keep_middle":
                    fim, covered = _fit_fim_form(fragment, fim, L - length, draws, config,
                                                 tokenizer, stats)
                if fim is None:
                    covered = len(fragment)
                    stats["fim_fragments_left_plain_no_room"] += 1
                else:
                    tokens = fim
                    stats["fim_fragments"] += 1
                    stats["spm_fragments" if draws.spm else "psm_fragments"] += 1
                    stats["fim_tokens"] += min(len(fim) + with_eot, L - length)
        shortened = covered < len(fragment)
        if with_eot and not shortened:
            tokens = np.concatenate([tokens, eot])
        pieces.append(tokens)
        length += len(tokens)
        if shortened:
            # The fragment's document goes on past what fitted: no <eot>, and
            # nothing after it in this example.
            stats["fim_fragments_shortened_to_fit"] += 1
            stats["trimmed_tokens"] += len(fragment) - covered + with_eot + len(ids) - next_start
            break
    stats["examples"] += 1
    stats["chunk_tokens"] += len(ids)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    input_ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    segment_ids = np.repeat(np.arange(1, len(pieces) + 1, dtype=np.int64), lengths)
    positions = np.arange(len(input_ids), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if len(input_ids) > L:
        stats["trimmed_tokens"] += len(input_ids) - L
        input_ids, segment_ids, positions = input_ids[:L], segment_ids[:L], positions[:L]
    pad = L - len(input_ids)
    stats["padding_tokens"] += pad
    stats["example_tokens"] += L - pad
    example = Example(
        chunk.bucket, chunk.index,
        np.concatenate([input_ids, np.full(pad, sp.pad, dtype=np.int64)]),
        np.concatenate([segment_ids, np.zeros(pad, dtype=np.int64)]),
        np.concatenate([positions, np.zeros(pad, dtype=np.int64)]))
    return example, stats


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


STATS_TAG = "stats"


class _FimFn(beam.DoFn):
    """Runs ``transform(element, seed, config, tokenizer) -> (output, stats)`` per element."""

    _COUNTED = ("fim_candidates", "fim_fragments", "trimmed_tokens", "document_fim_examples_cut")

    def __init__(self, transform: Callable, tokenizer: TokenizerHandle, seed: int, config: FimConfig):
        self._transform = transform
        self._tokenizer_handle = tokenizer
        self._seed = seed
        self._config = config
        self._counters = {name: beam.metrics.Metrics.counter("fim", name) for name in self._COUNTED}

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()

    def process(self, element):
        output, stats = self._transform(element, self._seed, self._config, self._tokenizer)
        for name, counter in self._counters.items():
            counter.inc(stats[name])
        yield output
        yield beam.pvalue.TaggedOutput(STATS_TAG, stats)


def _apply_with_stats(elements, fn: _FimFn, main: str) -> dict:
    results = elements | beam.ParDo(fn).with_outputs(STATS_TAG, main=main)
    return {main: results[main], "stats": results[STATS_TAG]}


def fim_document(doc: TokenizedDocument, seed: int, config: FimConfig,
                 tokenizer: Tokenizer) -> tuple[TokenizedDocument, Counter]:
    """Document-level FIM (before packing), for the paper's ablation; seeded by the content."""
    stats: Counter = Counter({"fim_candidates": 1})
    draws = _draw(_rng("document-fim", seed, doc.content_hash), config)
    if draws is None or len(doc.ids) < max(config.min_fragment_tokens, 1):
        return doc, stats
    ids = fim_form(doc.ids, draws, config, tokenizer, stats)
    stats["fim_fragments"] += 1
    stats["spm_fragments" if draws.spm else "psm_fragments"] += 1
    return doc._replace(ids=np.asarray(ids, dtype=doc.ids.dtype)), stats


class ApplyDocumentFim(beam.PTransform):
    """``PCollection[TokenizedDocument]`` -> ``{'documents': ..., 'stats': PCollection[Counter]}``.

    Whole documents become FIM examples before packing: the common but worse
    method, kept for ablations. Packing later cuts some of them apart; the
    chunk stage counts those as ``document_fim_examples_cut``.
    """

    def __init__(self, tokenizer: TokenizerHandle, seed: int, config: FimConfig):
        super().__init__()
        self._fn = _FimFn(fim_document, tokenizer, seed, config)

    def expand(self, documents):
        return _apply_with_stats(documents, self._fn, "documents")


class ApplyFim(beam.PTransform):
    """``PCollection[Chunk]`` -> ``{'examples': PCollection[Example], 'stats': PCollection[Counter]}``."""

    def __init__(self, tokenizer: TokenizerHandle, seed: int, config: FimConfig):
        super().__init__()
        self._fn = _FimFn(fim_chunk, tokenizer, seed, config)

    def expand(self, chunks):
        return _apply_with_stats(chunks, self._fn, "examples")

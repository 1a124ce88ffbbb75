"""The Hugging Face backend of the tokenizer protocol: a ``tokenizer.json`` holding a byte-level BPE.

StarCoder/StarCoder2, Qwen2.5-Coder, DeepSeek-Coder and Llama 3 ship their
tokenizers as a ``tokenizer.json`` for the ``tokenizers`` library: a BPE
over the 256 byte symbols of GPT-2's byte-to-unicode table, after a
pre-tokenizer that splits text into words by a regex. fimflow runs it with
``tokenizers`` itself (no ``transformers``), from the file's JSON with these
changes, all through the file format and the library's public settings:

* the special tokens the run uses are marked special, and every encoder has
  ``encode_special_tokens`` on: literal ``<fim_middle>`` in a document is
  text, as the SentencePiece backend makes its special pieces control symbols.
  Otherwise ids equal ``Tokenizer.encode(text, add_special_tokens=False).ids``;
* truncation and padding are off (a file saved with them would cut documents);
* the *fragment encoder*, for text FIM cuts out of encoded text, has no
  normalizer and no prefix space: its input is already the surface of ids.

``piece_bytes`` of a vocabulary token is its string read back through the
byte table; of an added token that is not special, its content; of a
special token, ``None``. A file whose vocabulary lacks any of the 256 byte
symbols is refused: BPE without ``<unk>`` drops what it cannot encode.

The word cache (``splits``) is used only where it is proven: a pre-tokenizer
made of ``ByteLevel`` (GPT-2's regex, or none), ``Digits`` and ``Split`` with
one of ``KNOWN_WORD_REGEXES``, no prefix space, no normalizer but NFC, and
added tokens that cannot match across a word's edge. Each regex starts a new
match at the cuts of its split in ``transforms.core.word_cache``
(``GPT2_WORD``, ``LLAMA3_WORD``: whitespace after non-whitespace), so those
are cuts of the pre-tokenizer, and NFC never composes across ASCII
whitespace. Other files (DeepSeek-Coder's pre-tokenizer
has an end-of-text anchor) encode every document whole: exact, slower.
"""

from __future__ import annotations

import json
from typing import Optional

import numpy as np

from transforms.core.tokenizer import (SpecialTokenNames, Tokenizer, TokenizerError, resolve_special_tokens)
from transforms.core.word_cache import GPT2_WORD, LLAMA3_WORD
from transforms.schema import TOKEN_DTYPE

# The end of text of the GPT-2 family's tokenizers, which StarCoder and Qwen keep.
DEFAULT_EOT = "<|endoftext|>"
# Word-splitting regexes of Split pre-tokenizers checked for the word cache: Llama 3's and Qwen2's
# (``\p{N}{1,3}`` against single digits), as their tokenizer.json files spell them. Both cut where
# ``LLAMA3_WORD`` does.
KNOWN_WORD_REGEXES = frozenset({
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
})


def byte_symbols() -> dict:
    """GPT-2's byte-to-unicode table (the one ``tokenizers``' ``ByteLevel`` uses): printable Latin-1 bytes
    stand for themselves, the others for the code points from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}


_SYMBOL_BYTES = {symbol: bytes([b]) for b, symbol in byte_symbols().items()}


def _pre_tokenizers(spec: Optional[dict]) -> list[dict]:
    if spec is None:
        return []
    return [p for part in spec["pretokenizers"] for p in _pre_tokenizers(part)] if spec["type"] == "Sequence" else [spec]


def _word_split(pre_tokenizers: list[dict]):
    """The word split the pre-tokenizers provably never merge across, or None.

    Every stage must keep the cuts: ``Digits`` and ``ByteLevel`` without
    its regex only split further or map bytes; a regex stage decides the
    cuts. Llama 3's cuts are a subset of GPT-2's, so with both it is theirs.
    """
    splits = set()
    for p in pre_tokenizers:
        kind = p["type"]
        if kind == "ByteLevel":
            if p.get("add_prefix_space"):
                return None
            if p.get("use_regex", True):
                splits.add(GPT2_WORD)
        elif kind == "Split":
            if (p.get("behavior") != "Isolated" or p.get("invert")
                    or p.get("pattern", {}).get("Regex") not in KNOWN_WORD_REGEXES):
                return None
            splits.add(LLAMA3_WORD)
        elif kind != "Digits":
            return None
    return LLAMA3_WORD if LLAMA3_WORD in splits else GPT2_WORD if splits else None


def _added_token_stays_in_words(token: dict) -> bool:
    """A non-special added token is matched in raw text before the pre-tokenizer; one without whitespace,
    stripping or word-boundary rules matches the same inside a word as in the whole text."""
    content = token["content"]
    return (not any(c.isspace() for c in content) and content.isascii()
            and not (token.get("lstrip") or token.get("rstrip") or token.get("single_word")))


def _without_prefix_space(spec):
    if isinstance(spec, dict):
        return {k: False if k == "add_prefix_space" else _without_prefix_space(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_without_prefix_space(v) for v in spec]
    return spec


class _BatchEncoder:
    """A ``tokenizers.Tokenizer`` as the word cache calls an encoder."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def encode(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def _load(spec: dict):
    from tokenizers import Tokenizer as HfTokenizer

    tokenizer = HfTokenizer.from_str(json.dumps(spec))
    tokenizer.encode_special_tokens = True
    return tokenizer


class HuggingFaceTokenizer(Tokenizer):
    """A user's ``tokenizer.json`` (a ``Tokenizer``); see the module docstring for what is checked."""

    backend = "huggingface"

    def __init__(self, model_bytes: bytes, names: SpecialTokenNames = SpecialTokenNames(),
                 reference: bool = False):
        super().__init__(model_bytes, names, reference)
        try:
            spec = json.loads(model_bytes)
        except ValueError as e:
            raise TokenizerError(f"not a tokenizer.json: {e}") from None
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise TokenizerError(f"a {model.get('type')} tokenizer.json: fimflow reads byte-level BPE ones; "
                                 "for a SentencePiece model use its .model file")
        if model.get("dropout"):
            raise TokenizerError(f"the BPE has dropout {model['dropout']}: it would tokenize the same text "
                                 "differently on each run; save the tokenizer without it")
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise TokenizerError("the BPE marks word pieces (continuing_subword_prefix/end_of_word_suffix): "
                                 "not a byte-level BPE")
        added = {t["content"]: t for t in spec.get("added_tokens", [])}
        vocab = dict(model["vocab"])
        ids = {**vocab, **{content: t["id"] for content, t in added.items()}}
        added_ids = {t["id"] for t in added.values()}
        self.vocab_size = max(ids.values()) + 1
        self.special = resolve_special_tokens(
            names, ids, DEFAULT_EOT if DEFAULT_EOT in added else None,
            lambda i: None if i in added_ids else "an ordinary text piece",
            [c for c, t in added.items() if t.get("special")])
        by_id = {i: piece for piece, i in ids.items()}
        self.special_pieces = {role: by_id[i] for role, i in self.special.as_dict().items()}
        roles = {by_id[i] for role, i in self.special.as_dict().items() if by_id[i] in added}
        for content in roles:
            added[content] = {**added[content], "special": True}
        self.special_texts = tuple(sorted(roles))
        piece_bytes: list[Optional[bytes]] = [None] * self.vocab_size
        for piece, i in vocab.items():
            try:
                piece_bytes[i] = b"".join(_SYMBOL_BYTES[c] for c in piece)
            except KeyError:
                if piece not in added:
                    raise TokenizerError(f"vocabulary token {piece!r} is not byte-level: fimflow reads byte-level BPE "
                                         "tokenizer.json files; for a SentencePiece model use its .model file") from None
        for content, token in added.items():
            piece_bytes[token["id"]] = None if token.get("special") else content.encode("utf-8")
        absent = sorted(set(_SYMBOL_BYTES) - set(vocab))
        if absent:
            raise TokenizerError(f"the vocabulary lacks {len(absent)} of the 256 byte symbols (e.g. "
                                 f"{', '.join(map(repr, absent[:4]))}): text holding those bytes would be dropped")
        self._set_piece_bytes(piece_bytes)
        self.reencodes_losslessly = True
        spec = {**spec, "added_tokens": [added[t["content"]] for t in spec.get("added_tokens", [])],
                "truncation": None, "padding": None}
        normalizer = spec.get("normalizer")
        # Repository-level runs: every text follows a special piece, so none gets a text's leading space.
        self.document_encoder = _load(_without_prefix_space(spec) if names.file_sep is not None else spec)
        # Removing the normalizer is what a byte-level file allows: its surfaces are text after normalization.
        self.fragment_encoder = _load({**_without_prefix_space(spec), "normalizer": None})
        self._normalizer = self.document_encoder.normalizer
        split = _word_split(_pre_tokenizers(spec.get("pre_tokenizer")))
        self.splits = ((split,)
                       if split is not None and (normalizer is None or normalizer.get("type") == "NFC")
                       and all(t.get("special") or _added_token_stays_in_words(t) for t in added.values())
                       else ())
        self._fragments = _BatchEncoder(self.fragment_encoder)
        self._set_word_cache(self._fragments)

    def encode_documents(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        """``tokenizers``' own encoding of ``texts`` (special-token text as text); it uses its own threads."""
        return [e.ids for e in self.document_encoder.encode_batch_fast(texts, add_special_tokens=False)]

    def _cached_form(self, text: str, start: bool) -> str:
        return self._normalizer.normalize_str(text) if self._normalizer is not None else text

    def _encode_continuation(self, text: str) -> np.ndarray:
        return np.asarray(self.fragment_encoder.encode(self._cached_form(text, False), add_special_tokens=False).ids,
                          dtype=TOKEN_DTYPE)

    def _encode_fragment_texts(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=TOKEN_DTYPE) for ids in self._fragments.encode(texts)]

"""The SentencePiece backend of the tokenizer protocol (``transforms.core.tokenizer``).

A user's model is loaded once and turned into two encoders that share its
vocabulary and ids:

* the *document encoder* tokenizes raw documents exactly as the user's model
  does, except that the special pieces (``<eot>``, the FIM sentinels, pad) are
  turned into control symbols, so that literal text such as ``<fim_middle>``
  in a source file can never become a sentinel id, even when the model
  declares the sentinels as user-defined symbols;
* the *fragment encoder* re-tokenizes the prefix, middle and suffix that FIM
  cuts out of already-tokenized text. It has no dummy prefix, no extra
  whitespace removal and no normalization, because its input is the surface of
  pieces that were already normalized: encoding it again must reproduce those
  bytes exactly, or FIM would silently change the training data.

``piece_bytes``: ``None`` for unknown, control and unused pieces; byte pieces
are their byte; text pieces their text with U+2581 as a space.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from transforms.core.tokenizer import (SpecialTokenNames, SpecialTokens, Tokenizer, TokenizerError,
                                       resolve_special_tokens)
from transforms.core.word_cache import ATOM, WORD
from transforms.schema import TOKEN_DTYPE

PieceType = model_pb2.ModelProto.SentencePiece.Type
# Plain ints: looking enum values up on the protobuf wrapper, once per piece,
# costs a noticeable part of loading a model.
_BYTE = PieceType.Value("BYTE")
_NORMAL = PieceType.Value("NORMAL")
_USER_DEFINED = PieceType.Value("USER_DEFINED")
_UNUSED = PieceType.Value("UNUSED")
_CONTROL = PieceType.Value("CONTROL")
_UNKNOWN = PieceType.Value("UNKNOWN")
_TEXT_TYPES = (_NORMAL, _USER_DEFINED)
_MERGEABLE_TYPES = _TEXT_TYPES + (_UNUSED,)
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_WHITESPACE_MARK = "\u2581"


def model_bos_piece(model_bytes: bytes) -> str:
    """The model's BOS piece; a ``TokenizerError`` if it has none."""
    spec = model_pb2.ModelProto.FromString(model_bytes).trainer_spec
    if spec.bos_id < 0:
        raise TokenizerError("the model has no BOS piece (trained with bos_id=-1): name the one to put first",
                             roles=("bos",))
    return spec.bos_piece


def _check_complete_model(proto) -> None:
    """Refuses a model file cut short: protobuf parses a prefix of one as a model with defaults.

    A model file holds its pieces first, then the trainer and normalizer
    specs; cut between two pieces it parses as a unigram model with fewer
    pieces, which would turn much of a corpus into ``<unk>``. Models that have
    pieces added after training (more pieces than trained) are fine.
    """
    if not proto.HasField("trainer_spec") or not proto.HasField("normalizer_spec"):
        raise TokenizerError("the model file is incomplete (no trainer or normalizer settings): "
                             "it was probably cut short; copy it again")
    if len(proto.pieces) < proto.trainer_spec.vocab_size:
        raise TokenizerError(f"the model file is incomplete: {len(proto.pieces)} pieces, "
                             f"trained with {proto.trainer_spec.vocab_size}; copy it again")


def _resolve_special_tokens(proto, names: SpecialTokenNames) -> SpecialTokens:
    spec = proto.trainer_spec
    kinds = {_NORMAL: "an ordinary text piece", _BYTE: "a byte piece"}
    return resolve_special_tokens(
        names, {p.piece: i for i, p in enumerate(proto.pieces)}, spec.eos_piece if spec.eos_id >= 0 else None,
        lambda i: kinds.get(proto.pieces[i].type),
        [p.piece for p in proto.pieces if p.type in (_CONTROL, _USER_DEFINED, _UNUSED)])


def _piece_surface(piece, escape_whitespaces: bool) -> Optional[bytes]:
    if piece.type == _BYTE:
        return bytes([int(_BYTE_PIECE.fullmatch(piece.piece).group(1), 16)])
    if piece.type in _TEXT_TYPES:
        text = piece.piece.replace(_WHITESPACE_MARK, " ") if escape_whitespaces else piece.piece
        return text.encode("utf-8")
    return None


def _independent_splits(proto) -> tuple:
    """The splits of text whose parts the model encodes independently, coarsest first.

    Only for a BPE model with identity normalization: BPE merges symbols only
    into pieces of the vocabulary (normal, user-defined and unused ones), so
    where no such piece contains the two characters on both sides of a cut, no
    merge crosses it. ``WORD`` cuts where a space follows a non-space, ``ATOM``
    also between letters and anything else; each applies when no
    piece contains one of its cuts. Unknown characters next to each other
    become one ``<unk>``, so a cut needs a known character beside it: the space
    piece for ``WORD``, byte fallback for ``ATOM``.
    """
    spec = proto.normalizer_spec
    if (proto.trainer_spec.model_type != model_pb2.TrainerSpec.BPE
            or spec.name != "identity" or spec.precompiled_charsmap or spec.remove_extra_whitespaces
            or not spec.escape_whitespaces or proto.trainer_spec.treat_whitespace_as_suffix):
        return ()
    texts = [p.piece.replace(_WHITESPACE_MARK, " ") for p in proto.pieces
             if p.type in _MERGEABLE_TYPES]
    byte_fallback = proto.trainer_spec.byte_fallback
    splits = []
    for split, cuts_are_known in ((WORD, byte_fallback or " " in texts), (ATOM, byte_fallback)):
        if not cuts_are_known or any(len(split.unicode.findall(text)) > 1 for text in texts):
            break
        splits.append(split)
    return tuple(splits)


class SentencePieceTokenizer(Tokenizer):
    """A user's SentencePiece model (a ``Tokenizer``)."""

    backend = "sentencepiece"

    def __init__(self, model_bytes: bytes, names: SpecialTokenNames = SpecialTokenNames(),
                 reference: bool = False):
        super().__init__(model_bytes, names, reference)
        proto = model_pb2.ModelProto.FromString(model_bytes)
        _check_complete_model(proto)
        self.special = _resolve_special_tokens(proto, names)
        self.special_pieces = {role: proto.pieces[i].piece for role, i in self.special.as_dict().items()}
        # A pad that is a text piece stays one: it only fills positions segment_ids marks as padding.
        special_ids = {i for i in self.special.as_dict().values() if proto.pieces[i].type not in (_NORMAL, _BYTE)}
        self.special_texts = tuple(sorted({proto.pieces[i].piece for i in special_ids}))
        for i in special_ids:
            # <unk> stays what it is (SentencePiece needs one); it already stands for no text.
            if proto.pieces[i].type != _UNKNOWN:
                proto.pieces[i].type = _CONTROL
        # Where this model provably never joins pieces across a cut: long
        # documents are cut only there, in the reference mode too.
        self.splits = _independent_splits(proto)
        if names.file_sep is not None:
            # Repository-level runs: every text (a repository's name, a file's path and content)
            # follows a special piece, so none gets the implicit leading space of a text's start.
            proto.normalizer_spec.add_dummy_prefix = False
        self.document_encoder = spm.SentencePieceProcessor(
            model_proto=proto.SerializeToString())
        self._dummy_prefix = " " if proto.normalizer_spec.add_dummy_prefix else ""
        # Encodes the pieces after the first of a document too long to encode in
        # one call, and single words: they continue the text, so they get no
        # dummy prefix.
        proto.normalizer_spec.add_dummy_prefix = False
        self.continuation_encoder = spm.SentencePieceProcessor(
            model_proto=proto.SerializeToString())
        # The fragment encoder below equals this one for every model with splits.
        self._set_word_cache(self.continuation_encoder)
        escape = proto.normalizer_spec.escape_whitespaces
        self._set_piece_bytes([_piece_surface(p, escape) for p in proto.pieces])
        proto.normalizer_spec.name = "identity"
        proto.normalizer_spec.precompiled_charsmap = b""
        proto.normalizer_spec.add_dummy_prefix = False
        proto.normalizer_spec.remove_extra_whitespaces = False
        proto.normalizer_spec.ClearField("normalization_rule_tsv")
        self.fragment_encoder = spm.SentencePieceProcessor(
            model_proto=proto.SerializeToString())
        self.vocab_size = len(proto.pieces)
        # With byte fallback every character has pieces, so re-encoding text cut
        # out of a fragment gives its bytes back; without it a cut can leave a
        # character (or half a user-defined symbol) that encodes to <unk>.
        self.reencodes_losslessly = proto.trainer_spec.byte_fallback

    def encode_documents(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        """SentencePiece's own encoding of ``texts``: the reference every faster path must equal."""
        return self.document_encoder.encode(texts, num_threads=num_threads)

    def _cached_form(self, text: str, start: bool) -> str:
        # SentencePiece adds the dummy prefix to non-empty text only.
        return self._dummy_prefix + text if start else text

    def _encode_continuation(self, text: str) -> np.ndarray:
        return np.asarray(self.continuation_encoder.encode(text), dtype=TOKEN_DTYPE)

    def _encode_fragment_texts(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=TOKEN_DTYPE) for ids in self.fragment_encoder.encode(texts)]

"""SentencePiece models as fimflow uses them.

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

``piece_bytes`` maps every id to the bytes it stands for (``None`` for ids
that stand for no text: unknown, control, unused), which is what FIM works on
instead of ``decode`` (decode drops a leading space and turns a character split
across byte pieces into U+FFFD).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Optional

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from apache_beam.io.filesystems import FileSystems
from apache_beam.utils import shared

from transforms.storage import connect_anonymously_to_emulator

PieceType = model_pb2.ModelProto.SentencePiece.Type
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_WHITESPACE_MARK = "\u2581"


class TokenizerError(ValueError):
    """The tokenizer cannot be used for FIM data; the message says why and how to fix it."""


@dataclasses.dataclass(frozen=True)
class SpecialTokenNames:
    """Piece names of the special tokens; ``eot=None`` means the model's EOS piece."""

    fim_prefix: str = "<fim_prefix>"
    fim_middle: str = "<fim_middle>"
    fim_suffix: str = "<fim_suffix>"
    pad: str = "<fim_pad>"
    eot: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens in one model."""

    pad: int
    eot: int
    fim_prefix: int
    fim_middle: int
    fim_suffix: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_model_bytes(path: str) -> bytes:
    """Reads a model file from any Beam filesystem (local path, gs://, ...)."""
    connect_anonymously_to_emulator()
    with FileSystems.open(path) as f:
        return f.read()


def _resolve_special_tokens(proto, names: SpecialTokenNames) -> SpecialTokens:
    ids = {p.piece: i for i, p in enumerate(proto.pieces)}
    eot_name = names.eot
    if eot_name is None:
        eot_name = proto.trainer_spec.eos_piece if proto.trainer_spec.eos_id >= 0 else None
    wanted = {
        "pad": names.pad,
        "eot": eot_name,
        "fim_prefix": names.fim_prefix,
        "fim_middle": names.fim_middle,
        "fim_suffix": names.fim_suffix,
    }
    missing = [f"{role}={name!r}" if name else f"{role} (the model has no EOS piece)"
               for role, name in wanted.items() if name not in ids]
    if missing:
        raise TokenizerError(
            "tokenizer lacks special tokens: " + ", ".join(missing) +
            ". Train one with `fimflow train-tokenizer` (it adds them as control symbols), "
            "add them to your model as control symbols, or name existing pieces with "
            "--fim_prefix_token/--fim_middle_token/--fim_suffix_token/--pad_token/--eot_token.")
    values = {role: ids[name] for role, name in wanted.items()}
    if len(set(values.values())) != len(values):
        raise TokenizerError(f"special tokens must be distinct pieces, got ids {values}")
    return SpecialTokens(**values)


def _piece_surface(piece, escape_whitespaces: bool) -> Optional[bytes]:
    if piece.type == PieceType.BYTE:
        return bytes([int(_BYTE_PIECE.fullmatch(piece.piece).group(1), 16)])
    if piece.type in (PieceType.NORMAL, PieceType.USER_DEFINED):
        text = piece.piece.replace(_WHITESPACE_MARK, " ") if escape_whitespaces else piece.piece
        return text.encode("utf-8")
    return None


def _encodes_words_independently(proto) -> bool:
    """Whether encoding text equals encoding each space-started word on its own.

    True for a BPE model with identity normalization when no piece has a space
    after a non-space inside it: BPE only merges into vocabulary pieces, so no
    merge ever crosses such a boundary. FIM then re-encodes only the words
    around its cut points (a test checks the ids equal a full re-encode).
    """
    spec = proto.normalizer_spec
    if (proto.trainer_spec.model_type != model_pb2.TrainerSpec.BPE
            or spec.name != "identity" or spec.precompiled_charsmap or spec.remove_extra_whitespaces
            or not spec.escape_whitespaces or proto.trainer_spec.treat_whitespace_as_suffix):
        return False
    mark = _WHITESPACE_MARK
    for piece in proto.pieces:
        if piece.type in (PieceType.NORMAL, PieceType.USER_DEFINED):
            text = piece.piece
            if any(text[k] == mark and text[k - 1] != mark for k in range(1, len(text))):
                return False
    return True


class Tokenizer:
    """A user's SentencePiece model with the encoders and tables FIM needs.

    Picklable by value (the serialized model), so a DoFn may hold one; DoFns
    should rather obtain it through ``shared_tokenizer`` in ``setup()``.
    """

    def __init__(self, model_bytes: bytes, names: SpecialTokenNames = SpecialTokenNames(),
                 local_reencoding: Optional[bool] = None):
        self.model_bytes = model_bytes
        self.names = names
        proto = model_pb2.ModelProto.FromString(model_bytes)
        self.local_reencoding = (_encodes_words_independently(proto) if local_reencoding is None
                                 else local_reencoding)
        self.special = _resolve_special_tokens(proto, names)
        special_ids = set(self.special.as_dict().values())
        self.special_texts = tuple(sorted({proto.pieces[i].piece for i in special_ids}))
        for i in special_ids:
            proto.pieces[i].type = PieceType.CONTROL
        self.document_encoder = spm.SentencePieceProcessor(
            model_proto=proto.SerializeToString())
        # Encodes the pieces after the first of a document too long to encode in
        # one call: they continue the text, so they get no dummy prefix.
        proto.normalizer_spec.add_dummy_prefix = False
        self.continuation_encoder = spm.SentencePieceProcessor(
            model_proto=proto.SerializeToString())
        escape = proto.normalizer_spec.escape_whitespaces
        self.piece_bytes = tuple(_piece_surface(p, escape) for p in proto.pieces)
        proto.normalizer_spec.name = "identity"
        proto.normalizer_spec.precompiled_charsmap = b""
        proto.normalizer_spec.add_dummy_prefix = False
        proto.normalizer_spec.remove_extra_whitespaces = False
        proto.normalizer_spec.ClearField("normalization_rule_tsv")
        self.fragment_encoder = spm.SentencePieceProcessor(
            model_proto=proto.SerializeToString())
        self.vocab_size = len(proto.pieces)
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()
        self.byte_fallback = proto.trainer_spec.byte_fallback

    def __reduce__(self):
        return Tokenizer, (self.model_bytes, self.names, self.local_reencoding)

    def encode_documents(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        return self.document_encoder.encode(texts, num_threads=num_threads)

    def encode_long_document(self, text: str, piece_chars: int, dtype=np.int32) -> np.ndarray:
        """Encodes ``text`` in pieces of about ``piece_chars`` cut after newlines.

        Bounds the memory SentencePiece needs for one call on a document of
        hundreds of MB, and keeps ids in compact arrays rather than one list of
        Python ints; tokens never span a piece boundary.
        """
        pieces: list[np.ndarray] = []
        start = 0
        encoder = self.document_encoder
        while start < len(text):
            end = min(start + piece_chars, len(text))
            if end < len(text):
                newline = text.rfind("\n", start, end)
                end = newline + 1 if newline >= start else end
            pieces.append(np.asarray(encoder.encode(text[start:end]), dtype=dtype))
            encoder = self.continuation_encoder
            start = end
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)

    def encode_fragments(self, texts: list[str]) -> list[list[int]]:
        return self.fragment_encoder.encode(texts)

    def surface(self, ids) -> bytes:
        """The bytes ``ids`` stand for; ids without text (unknown, control) contribute nothing."""
        table = self.piece_bytes
        return b"".join(table[i] or b"" for i in ids)

    def count_special_text(self, text: str) -> int:
        """How many literal special-piece strings (``<fim_middle>``, ``</s>``...) ``text`` contains."""
        return sum(text.count(s) for s in self.special_texts if s in text)


class TokenizerHandle:
    """A picklable reference to a tokenizer that DoFns resolve in ``setup()``.

    Beam runs several DoFn instances per worker process; through
    ``apache_beam.utils.shared`` they share one loaded model instead of each
    reading and holding its own, and the model never travels inside the
    pickled DoFn.
    """

    def __init__(self, path: str, names: SpecialTokenNames):
        self.path = path
        self.names = names
        self._shared = shared.Shared()

    def acquire(self) -> Tokenizer:
        return self._shared.acquire(
            lambda: Tokenizer(read_model_bytes(self.path), self.names),
            tag=(self.path, self.names))

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

from transforms.core.word_cache import ATOM, WORD, WordCache
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


class TokenizerError(ValueError):
    """The tokenizer cannot be used for FIM data; the message says why and how to fix it."""


@dataclasses.dataclass(frozen=True)
class SpecialTokenNames:
    """Piece names of the special tokens (``transforms.core.fim_format`` sets them per preset).

    ``eot=None``: the model's EOS piece; ``pad=None``: the ``eot`` piece;
    ``fim_middle=None``: a layout without a middle sentinel (Codestral's);
    ``fim_end``, ``bos``, ``repo_name``, ``file_sep``: ``None`` when the run
    does not use them.
    """

    fim_prefix: str = "<fim_prefix>"
    fim_middle: Optional[str] = "<fim_middle>"
    fim_suffix: str = "<fim_suffix>"
    pad: Optional[str] = "<fim_pad>"
    eot: Optional[str] = None
    fim_end: Optional[str] = None
    bos: Optional[str] = None
    repo_name: Optional[str] = None
    file_sep: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens in one model; ``None``: a role this run does not use."""

    pad: int
    eot: int
    fim_prefix: int
    fim_suffix: int
    fim_middle: Optional[int] = None
    fim_end: Optional[int] = None
    bos: Optional[int] = None
    repo_name: Optional[int] = None
    file_sep: Optional[int] = None

    def as_dict(self) -> dict:
        return {role: i for role, i in dataclasses.asdict(self).items() if i is not None}


PACKAGE_SCHEME = "package://"


def read_model_bytes(path: str) -> bytes:
    """Reads a model file from any Beam filesystem (local path, gs://, ...), or from an installed
    Python package: ``package://PACKAGE/RESOURCE`` (the bundled model: a path every worker with
    fimflow installed resolves, wherever the launcher's copy lies)."""
    if path.startswith(PACKAGE_SCHEME):
        import importlib.resources

        package, _, resource = path[len(PACKAGE_SCHEME):].partition("/")
        return importlib.resources.files(package).joinpath(resource).read_bytes()
    # Imported here: processes that only encode (``transforms.core.tokenizer_pool``)
    # start without Beam.
    from apache_beam.io.filesystems import FileSystems

    
    with FileSystems.open(path) as f:
        return f.read()


def model_bos_piece(model_bytes: bytes) -> str:
    """The model's BOS piece, for ``--bos``; a ``TokenizerError`` if it has none."""
    spec = model_pb2.ModelProto.FromString(model_bytes).trainer_spec
    if spec.bos_id < 0:
        raise TokenizerError("--bos: the model has no BOS piece (trained with bos_id=-1); name one with --bos_token")
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
    ids = {p.piece: i for i, p in enumerate(proto.pieces)}
    wanted = {role: name for role, name in dataclasses.asdict(names).items() if name is not None}
    if names.eot is None:
        wanted["eot"] = proto.trainer_spec.eos_piece if proto.trainer_spec.eos_id >= 0 else None
    if names.pad is None:
        wanted["pad"] = wanted["eot"]
    missing = [f"{role}={name!r}" if name else f"{role} (the model has no EOS piece)"
               for role, name in wanted.items() if name not in ids]
    if missing:
        raise TokenizerError(
            "tokenizer lacks special tokens: " + ", ".join(missing) +
            ". Train one with `fimflow train-tokenizer` (it adds them as control symbols), "
            "add them to your model as control symbols, pick the --fim_format of your model's family, "
            "or name existing pieces with --fim_prefix_token/--fim_middle_token/--fim_suffix_token/"
            "--pad_token/--eot_token.")
    values = {role: ids[name] for role, name in wanted.items()}
    for role, name in wanted.items():
        kind = proto.pieces[ids[name]].type
        # Padding is marked by segment_ids == 0, so any piece may fill it.
        if kind in (_NORMAL, _BYTE) and role != "pad":
            what = "an ordinary text piece" if kind == _NORMAL else "a byte piece"
            raise TokenizerError(
                f"--{ROLE_FLAGS[role]} {name!r} is {what}: as a {role} it would stop text from "
                f"encoding to it and change how text containing it is tokenized; name a control, "
                f"user-defined or unused piece{_spare_pieces(proto, set(values.values()))}")
    shared = {}
    for role, i in values.items():
        if role != "pad":
            shared.setdefault(i, []).append(role)
    for i, roles in shared.items():
        if len(roles) > 1 and set(roles) != _MAY_SHARE:
            raise TokenizerError(
                f"{' and '.join(roles)} are the same piece {proto.pieces[i].piece!r}; each special token needs "
                f"its own piece: set {' or '.join('--' + ROLE_FLAGS[r] for r in roles)}"
                f"{_spare_pieces(proto, set(values.values()))}")
    return SpecialTokens(**values)


# CodeGemma's <|file_separator|> both ends a middle and starts the next file.
_MAY_SHARE = {"fim_end", "file_sep"}
# The command-line flag that names each special token.
ROLE_FLAGS = {"pad": "pad_token", "eot": "eot_token", "fim_prefix": "fim_prefix_token",
              "fim_middle": "fim_middle_token", "fim_suffix": "fim_suffix_token", "fim_end": "fim_end_token",
              "bos": "bos_token", "repo_name": "repo_name_token", "file_sep": "file_sep_token"}


def _spare_pieces(proto, taken: set) -> str:
    """Control, user-defined and unused pieces of the model not already a special token, as a hint."""
    spare = [p.piece for i, p in enumerate(proto.pieces)
             if i not in taken and p.type in (_CONTROL, _USER_DEFINED, _UNUSED)][:6]
    return f", e.g. {', '.join(map(repr, spare))}" if spare else " (this model has none to spare: add one)"


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


# How far back from a piece's end a cut is looked for first.
_CUT_SEARCH_CHARS = 1 << 16


def _last_cut(pattern, text: str, lo: int, hi: int) -> Optional[int]:
    """The last position in ``(lo, hi)`` where ``pattern``'s split cuts ``text``, or None.

    Each split's cuts depend only on the characters on either side, so any
    match's end is a cut, wherever the search starts, except the last one,
    which ``hi`` may have cut short.
    """
    ends = [m.end() for m in pattern.finditer(text, lo, hi)]
    return ends[-2] if len(ends) >= 2 else None


class Tokenizer:
    """A user's SentencePiece model with the encoders and tables FIM needs.

    Picklable by value (the serialized model), so a DoFn may hold one; DoFns
    should rather obtain it through a ``TokenizerHandle`` in ``setup()``.
    ``reference=True`` turns off every word-level shortcut (the word cache,
    FIM's local re-encoding): the straightforward implementation that tests
    compare the shortcuts with.
    """

    def __init__(self, model_bytes: bytes, names: SpecialTokenNames = SpecialTokenNames(),
                 reference: bool = False):
        self.model_bytes = model_bytes
        self.names = names
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
        self.reference = reference
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
        self.word_cache = (WordCache(self.continuation_encoder, self.splits, TOKEN_DTYPE)
                           if self.splits and not reference else None)
        escape = proto.normalizer_spec.escape_whitespaces
        self.piece_bytes = tuple(_piece_surface(p, escape) for p in proto.pieces)
        # The same table for whole arrays of ids: FIM looks up every id of the
        # fragments it transforms, which numpy does in one call.
        self.piece_lengths = np.array([-1 if s is None else len(s) for s in self.piece_bytes], dtype=np.int64)
        self._surfaces = np.empty(len(self.piece_bytes), dtype=object)
        self._surfaces[:] = [s or b"" for s in self.piece_bytes]
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
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()

    @property
    def encodes_words_independently(self) -> bool:
        """Whether FIM may re-encode only the words at its cuts, as documents go through the word cache."""
        return self.word_cache is not None

    def __reduce__(self):
        return Tokenizer, (self.model_bytes, self.names, self.reference)

    def encode_documents(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        """SentencePiece's own encoding of ``texts``: the reference every faster path must equal."""
        return self.document_encoder.encode(texts, num_threads=num_threads)

    def encode_documents_fast(self, texts: list[str], num_threads: int = 1) -> list[np.ndarray]:
        """The ids of ``encode_documents`` as arrays, through the word cache where it applies."""
        if self.word_cache is not None:
            # SentencePiece adds the dummy prefix to non-empty text only.
            prefix = self._dummy_prefix
            return self.word_cache.encode([prefix + t if t else t for t in texts], num_threads)
        return [np.asarray(ids, dtype=TOKEN_DTYPE) for ids in self.encode_documents(texts, num_threads)]

    def encode_long_document(self, text: str, piece_chars: int, dtype=TOKEN_DTYPE) -> np.ndarray:
        """The ids of ``text`` exactly as encoding it whole gives them, in pieces of about ``piece_chars``.

        Bounds the memory one encoding call needs on a document of hundreds of
        MB, and keeps ids in compact arrays rather than one list of Python
        ints. A piece ends only where the model provably never joins pieces
        (``splits``: where a space follows a non-space, else between a letter
        and a non-letter): the last such cut within ``piece_chars``, or, with
        none there, the next one after. A model with no such cut (unigram,
        normalizing models) encodes the text whole: exactness comes first.
        """
        pieces: list[np.ndarray] = []
        start = 0
        while start < len(text):
            end = self._piece_end(text, start, piece_chars)
            piece = text[start:end]
            if start == 0:
                pieces.append(self.encode_documents_fast([piece])[0])
            elif self.word_cache is not None:
                pieces.append(self.word_cache.encode([piece])[0])
            else:
                pieces.append(np.asarray(self.continuation_encoder.encode(piece), dtype=TOKEN_DTYPE))
            start = end
        return np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype=dtype)

    def _piece_end(self, text: str, start: int, piece_chars: int) -> int:
        end = start + piece_chars
        if end >= len(text) or not self.splits:
            return len(text)
        for split in self.splits:
            # The end of the window first: cutting there keeps pieces near piece_chars.
            cut = (_last_cut(split.unicode, text, max(start + 1, end - _CUT_SEARCH_CHARS), end)
                   or _last_cut(split.unicode, text, start + 1, end))
            if cut:
                return cut
        # No provable cut within reach: the piece runs on to the next one.
        following = next(self.splits[-1].unicode.finditer(text, end), None)
        return following.end() if following is not None else len(text)

    def encode_fragments(self, texts: list[str]) -> list[np.ndarray]:
        if self.word_cache is not None:
            return self.word_cache.encode(texts)
        return [np.asarray(ids, dtype=TOKEN_DTYPE) for ids in self.fragment_encoder.encode(texts)]

    def surface(self, ids) -> bytes:
        """The bytes ``ids`` stand for; ids without text (unknown, control) contribute nothing."""
        return b"".join(self._surfaces[np.asarray(ids, dtype=np.int64)].tolist())

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

    def __init__(self, path: str, names: SpecialTokenNames, reference: bool = False,
                 sha256: Optional[str] = None):
        from apache_beam.utils import shared

        self.path = path
        self.names = names
        self.reference = reference
        self.sha256 = sha256
        self._shared = shared.Shared()

    def _load(self) -> Tokenizer:
        tokenizer = Tokenizer(read_model_bytes(self.path), self.names, self.reference)
        if self.sha256 is not None and tokenizer.sha256 != self.sha256:
            # Workers read the path again: a model replaced since planning
            # would make data that metadata.json does not describe.
            raise TokenizerError(f"{self.path} changed after the run was planned: sha256 {tokenizer.sha256}, "
                                 f"planned {self.sha256}")
        return tokenizer

    def acquire(self) -> Tokenizer:
        return self._shared.acquire(self._load, tag=(self.path, self.names, self.reference, self.sha256))

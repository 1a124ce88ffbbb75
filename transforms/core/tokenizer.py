"""The tokenizer protocol: what every stage, ``inspect``, ``report`` and the bench use of a tokenizer.

A ``Tokenizer`` turns documents into ids exactly as its library does and
gives FIM the tables it works on. Two backends implement it:

* ``transforms.core.sentencepiece_tokenizer``: a SentencePiece ``.model``;
* ``transforms.core.huggingface_tokenizer``: a Hugging Face ``tokenizer.json``
  with a byte-level BPE (StarCoder, Qwen, DeepSeek-Coder, Llama 3).

``load_tokenizer(path, names)`` reads a file from any Beam filesystem or an
installed package and picks the backend from its content (a JSON object is a
``tokenizer.json``, anything else a SentencePiece model), so a ``gs://`` path
needs no particular name.

What every backend guarantees, and the shared code below relies on:

* the special tokens (``SpecialTokens``) are ids that no text encodes to, so
  literal ``<fim_middle>`` in a source file stays text;
* ``piece_bytes[i]`` is the bytes id ``i`` stands for (``None``: no text:
  special, unknown, unused), which is what FIM cuts and joins instead of
  ``decode`` (decode drops a leading space and turns a character split across
  byte pieces into U+FFFD);
* ``encode_fragments`` re-encodes text cut out of already-encoded text so that
  its ids stand for exactly those bytes (no dummy prefix, no normalization);
* ``splits``: cuts in a text that the tokenizer provably never merges across,
  coarsest first (``transforms.core.word_cache``); a document is the
  concatenation of its parts between them, which the word cache and the
  encoding of very long documents use. Empty where nothing is proven: then
  every text is encoded whole.

Messages name roles (``fim_prefix``, ``eot``), not command-line flags:
``TokenizerError.roles`` says which, and ``pipeline`` words the flags.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from transforms.core.word_cache import WordCache
from transforms.schema import TOKEN_DTYPE


class TokenizerError(ValueError):
    """The tokenizer cannot be used for FIM data; the message says why. ``roles``: the special tokens concerned;
    ``missing``: some of them are not in the tokenizer at all."""

    def __init__(self, message: str, roles: Sequence[str] = (), missing: bool = False):
        super().__init__(message)
        self.roles = tuple(roles)
        self.missing = missing


@dataclasses.dataclass(frozen=True)
class SpecialTokenNames:
    """Piece names of the special tokens (``transforms.core.fim_format`` sets them per preset).

    ``eot=None``: the tokenizer's own end of text (a SentencePiece model's EOS
    piece, a ``tokenizer.json``'s ``<|endoftext|>``); ``pad=None``: the
    ``eot`` piece; ``fim_middle=None``: a layout without a middle sentinel
    (Codestral's); ``fim_end``, ``bos``, ``repo_name``, ``file_sep``: ``None``
    when the run does not use them.
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
    """Ids of the special tokens in one tokenizer; ``None``: a role this run does not use."""

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
# CodeGemma's <|file_separator|> both ends a middle and starts the next file.
_MAY_SHARE = {"fim_end", "file_sep"}


def read_model_bytes(path: str) -> bytes:
    """Reads a tokenizer file from any Beam filesystem (local path, gs://, ...), or from an installed
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


def is_huggingface_file(data: bytes) -> bool:
    """Whether ``data`` is a ``tokenizer.json`` (a JSON object) rather than a SentencePiece model (a protobuf,
    which never starts with ``{``)."""
    return data.lstrip()[:1] == b"{"


def backend_of(data: bytes) -> str:
    return "huggingface" if is_huggingface_file(data) else "sentencepiece"


def tokenizer_from_bytes(data: bytes, names: SpecialTokenNames = SpecialTokenNames(),
                         reference: bool = False) -> "Tokenizer":
    """The tokenizer a file's bytes hold, by the backend its content names."""
    if is_huggingface_file(data):
        from transforms.core.huggingface_tokenizer import HuggingFaceTokenizer

        return HuggingFaceTokenizer(data, names, reference)
    from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(data, names, reference)


def load_tokenizer(path: str, names: SpecialTokenNames = SpecialTokenNames(), reference: bool = False) -> "Tokenizer":
    """The tokenizer at ``path`` (local, ``gs://``, ``package://``): a SentencePiece ``.model`` or a ``tokenizer.json``."""
    return tokenizer_from_bytes(read_model_bytes(path), names, reference)


def default_bos_piece(data: bytes) -> str:
    """The tokenizer's own BOS piece, for ``--bos`` without a named one; a ``TokenizerError`` if it declares none."""
    if is_huggingface_file(data):
        raise TokenizerError("a tokenizer.json declares no BOS token: name the one to put first", roles=("bos",))
    from transforms.core.sentencepiece_tokenizer import model_bos_piece

    return model_bos_piece(data)


def resolve_special_tokens(names: SpecialTokenNames, ids: Mapping[str, int], default_eot: Optional[str],
                           text_kind: Callable[[int], Optional[str]], spare: Sequence[str]) -> SpecialTokens:
    """The ids of ``names`` in a vocabulary, checked the same way for every backend.

    ``ids``: piece -> id; ``default_eot``: the piece ``eot=None`` means (``None``: the tokenizer has none);
    ``text_kind(id)``: what kind of text the id stands for (``"an ordinary text piece"``) if text
    encodes to it, else ``None``; ``spare``: pieces to suggest when one is refused.
    """
    wanted = {role: name for role, name in dataclasses.asdict(names).items() if name is not None}
    if names.eot is None:
        wanted["eot"] = default_eot
    if names.pad is None:
        wanted["pad"] = wanted["eot"]
    missing = {role: name for role, name in wanted.items() if name not in ids}
    if missing:
        raise TokenizerError("tokenizer lacks special tokens: " + ", ".join(
            f"{role}={name!r}" if name else f"{role} (the tokenizer declares none)" for role, name in missing.items()),
            roles=tuple(missing), missing=True)
    values = {role: ids[name] for role, name in wanted.items()}
    taken = set(values.values())
    hint = _spare_hint([piece for piece in spare if ids[piece] not in taken])
    for role, name in wanted.items():
        kind = text_kind(values[role])
        # Padding is marked by segment_ids == 0, so any piece may fill it.
        if kind and role != "pad":
            raise TokenizerError(
                f"the {role} token {name!r} is {kind}: as a {role} it would stop text from encoding to it "
                f"and change how text containing it is tokenized; name a special, control, user-defined or "
                f"unused piece{hint}", roles=(role,))
    shared: dict = {}
    for role, i in values.items():
        if role != "pad":
            shared.setdefault(i, []).append(role)
    for roles in shared.values():
        if len(roles) > 1 and set(roles) != _MAY_SHARE:
            raise TokenizerError(f"{' and '.join(roles)} are the same piece {wanted[roles[0]]!r}; each special token "
                                 f"needs its own piece{hint}", roles=tuple(roles))
    return SpecialTokens(**values)


def _spare_hint(spare: Sequence[str]) -> str:
    return f", e.g. {', '.join(map(repr, spare[:6]))}" if spare else " (this tokenizer has none to spare: add one)"


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


class Tokenizer(abc.ABC):
    """A user's tokenizer with the encoders and tables FIM needs (the protocol; see the module docstring).

    Picklable by value (the file's bytes), so a DoFn may hold one; DoFns
    should rather obtain it through a ``TokenizerHandle`` in ``setup()``.
    ``reference=True`` turns off every word-level shortcut (the word cache,
    FIM's local re-encoding): the straightforward implementation that tests
    compare the shortcuts with.

    A backend's ``__init__`` sets ``special``, ``special_pieces``,
    ``special_texts``, ``splits`` and ``vocab_size``, calls ``_set_piece_bytes``
    and ``_set_word_cache``, and implements the abstract methods.
    """

    backend: str
    special: SpecialTokens
    # role -> piece name; the literal texts of the special pieces that no text encodes to.
    special_pieces: dict
    special_texts: tuple
    splits: tuple
    vocab_size: int
    # Whether re-encoding any cut-out text gives its bytes back (no character maps to nothing or <unk>).
    reencodes_losslessly: bool

    def __init__(self, model_bytes: bytes, names: SpecialTokenNames, reference: bool):
        self.model_bytes = model_bytes
        self.names = names
        self.reference = reference
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()
        self.word_cache: Optional[WordCache] = None

    def __reduce__(self):
        return type(self), (self.model_bytes, self.names, self.reference)

    def _set_piece_bytes(self, piece_bytes: Sequence[Optional[bytes]]) -> None:
        self.piece_bytes = tuple(piece_bytes)
        # The same table for whole arrays of ids: FIM looks up every id of the
        # fragments it transforms, which numpy does in one call.
        self.piece_lengths = np.array([-1 if s is None else len(s) for s in self.piece_bytes], dtype=np.int64)
        self._surfaces = np.empty(len(self.piece_bytes), dtype=object)
        self._surfaces[:] = [s or b"" for s in self.piece_bytes]

    def _set_word_cache(self, encoder) -> None:
        """``encoder.encode(texts, num_threads=)``: ids of text that continues a document, which the cache's parts are."""
        self.word_cache = (WordCache(encoder, self.splits, TOKEN_DTYPE)
                           if self.splits and not self.reference else None)

    @property
    def encodes_words_independently(self) -> bool:
        """Whether FIM may re-encode only the words at its cuts, as documents go through the word cache."""
        return self.word_cache is not None

    @abc.abstractmethod
    def encode_documents(self, texts: list[str], num_threads: int = 1) -> list[list[int]]:
        """The library's own encoding of whole documents (special-token text as text): the reference every
        faster path must equal."""

    @abc.abstractmethod
    def _cached_form(self, text: str, start: bool) -> str:
        """Non-empty text as the word cache encodes it: with the dummy prefix (``start``: it begins a document)
        or the normalization the tokenizer applies."""

    @abc.abstractmethod
    def _encode_continuation(self, text: str) -> np.ndarray:
        """Ids of ``text`` as a part after the first of a document (``splits`` cut it there)."""

    @abc.abstractmethod
    def _encode_fragment_texts(self, texts: list[str]) -> list[np.ndarray]:
        """Ids of text cut out of encoded text, standing for exactly its bytes."""

    def encode_documents_fast(self, texts: list[str], num_threads: int = 1) -> list[np.ndarray]:
        """The ids of ``encode_documents`` as arrays, through the word cache where it applies."""
        if self.word_cache is not None:
            return self.word_cache.encode([self._cached_form(t, True) if t else t for t in texts], num_threads)
        return [np.asarray(ids, dtype=TOKEN_DTYPE) for ids in self.encode_documents(texts, num_threads)]

    def encode_batch(self, texts: list[str], piece_chars: int, dtype=TOKEN_DTYPE,
                     num_threads: int = 1) -> list[np.ndarray]:
        """``encode_documents_fast`` of every text as ``dtype`` arrays, those longer than ``piece_chars``
        encoded in pieces (``encode_long_document``); in order."""
        short = iter(self.encode_documents_fast([t for t in texts if len(t) <= piece_chars], num_threads))
        return [(next(short) if len(t) <= piece_chars else self.encode_long_document(t, piece_chars))
                .astype(dtype, copy=False) for t in texts]

    def encode_long_document(self, text: str, piece_chars: int, dtype=TOKEN_DTYPE) -> np.ndarray:
        """The ids of ``text`` exactly as encoding it whole gives them, in pieces of about ``piece_chars``.

        Bounds the memory one encoding call needs on a document of hundreds of
        MB, and keeps ids in compact arrays rather than one list of Python
        ints. A piece ends only where the tokenizer provably never joins pieces
        (``splits``): the last such cut within ``piece_chars``, or, with none
        there, the next one after. A tokenizer with no such cut encodes the
        text whole: exactness comes first.
        """
        pieces: list[np.ndarray] = []
        start = 0
        while start < len(text):
            end = self._piece_end(text, start, piece_chars)
            piece = text[start:end]
            if start == 0:
                pieces.append(self.encode_documents_fast([piece])[0])
            elif self.word_cache is not None:
                pieces.append(self.word_cache.encode([self._cached_form(piece, False)])[0])
            else:
                pieces.append(self._encode_continuation(piece))
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
        return self._encode_fragment_texts(texts)

    def surface(self, ids) -> bytes:
        """The bytes ``ids`` stand for; ids without text (special, unknown, control) contribute nothing."""
        return b"".join(self._surfaces[np.asarray(ids, dtype=np.int64)].tolist())

    def count_special_text(self, text: str) -> int:
        """How many literal special-piece strings (``<fim_middle>``, ``</s>``...) ``text`` contains."""
        return sum(text.count(s) for s in self.special_texts if s in text)


class TokenizerHandle:
    """A picklable reference to a tokenizer that DoFns resolve in ``setup()``.

    Beam runs several DoFn instances per worker process; through
    ``apache_beam.utils.shared`` they share one loaded tokenizer instead of
    each reading and holding its own, and the tokenizer never travels inside
    the pickled DoFn.
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
        tokenizer = load_tokenizer(self.path, self.names, self.reference)
        if self.sha256 is not None and tokenizer.sha256 != self.sha256:
            # Workers read the path again: a tokenizer replaced since planning
            # would make data that metadata.json does not describe.
            raise TokenizerError(f"{self.path} changed after the run was planned: sha256 {tokenizer.sha256}, "
                                 f"planned {self.sha256}")
        return tokenizer

    @property
    def identity(self) -> tuple:
        """What makes two handles load the same tokenizer."""
        return self.path, self.names, self.reference, self.sha256

    def acquire(self) -> Tokenizer:
        return self._shared.acquire(self._load, tag=self.identity)

"""``fimflow train-tokenizer``: a tokenizer suited to FIM on code, for either backend.

``sentencepiece`` (the default): a model trained by SentencePiece's own
trainer with settings that make tokenization lossless for source code: byte
fallback (no ``<unk>``), identity normalization, no dummy prefix, whitespace
kept as is, and the FIM sentinels, pad and the repository-level pieces
(``<repo_name>``, ``<file_sep>``) as *control* symbols, so no text can ever
encode to them.

``huggingface``: a ``tokenizer.json`` trained by ``tokenizers``' own BPE
trainer in StarCoder2's shape: single digits, GPT-2's byte-level word regex,
all 256 byte symbols (lossless on any bytes), no normalizer, and
``<|endoftext|>``, the sentinels, pad and the repository-level pieces as
special tokens. It works with ``--fim_format paper`` and ``starcoder``.
"""

from __future__ import annotations

import io
import itertools
from typing import Iterable, Iterator

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from transforms.core.fim_format import REPO_PIECES
from transforms.core.tokenizer import SpecialTokenNames

# The trainer caps sentence length; source files are fed as line-aligned
# pieces below this size so that newlines and indentation are learned too.
MAX_SENTENCE_BYTES = 4096


def _sentences(documents: Iterable[str]) -> Iterator[str]:
    for doc in documents:
        piece: list[str] = []
        size = 0
        for line in doc.splitlines(keepends=True):
            line = line[:MAX_SENTENCE_BYTES // 4]
            n = len(line.encode("utf-8"))
            if size + n > MAX_SENTENCE_BYTES and piece:
                yield "".join(piece)
                piece, size = [], 0
            piece.append(line)
            size += n
        if piece:
            yield "".join(piece)


def train_code_tokenizer(documents: Iterable[str], vocab_size: int = 8192,
                         names: SpecialTokenNames = SpecialTokenNames(),
                         max_sentences: int = 200_000) -> bytes:
    """Trains a BPE model on ``documents`` and returns the serialized model."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(documents),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.9995,
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        max_sentence_length=MAX_SENTENCE_BYTES,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        unk_piece="<unk>", bos_piece="<s>", eos_piece=names.eot or "<eot>",
        pad_piece=names.pad,
        control_symbols=[names.fim_prefix, names.fim_middle, names.fim_suffix],
        minloglevel=2,
        num_threads=2,
    )
    return with_control_pieces(model.getvalue(), list(REPO_PIECES.values()))


HUGGINGFACE_EOT = "<|endoftext|>"


def train_huggingface_tokenizer(documents: Iterable[str], vocab_size: int = 8192,
                                names: SpecialTokenNames = SpecialTokenNames(),
                                max_sentences: int = 200_000) -> bytes:
    """Trains a byte-level BPE ``tokenizer.json`` on ``documents`` and returns its bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tokenizer.decoder = decoders.ByteLevel()
    specials = [names.eot or HUGGINGFACE_EOT, names.fim_prefix, names.fim_middle, names.fim_suffix, names.pad,
                *REPO_PIECES.values()]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(dict.fromkeys(specials)),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(itertools.islice(_sentences(documents), max_sentences), trainer=trainer)
    return tokenizer.to_str().encode("utf-8")


BACKENDS = {"sentencepiece": train_code_tokenizer, "huggingface": train_huggingface_tokenizer}


def with_control_pieces(model: bytes, pieces: list[str]) -> bytes:
    """``model`` with ``pieces`` appended as control symbols: the ids of every trained piece stay
    what they were (repository-level packing's pieces came after the first released models)."""
    proto = model_pb2.ModelProto.FromString(model)
    present = {p.piece for p in proto.pieces}
    for piece in pieces:
        if piece not in present:
            proto.pieces.add(piece=piece, score=0.0, type=model_pb2.ModelProto.SentencePiece.CONTROL)
    return proto.SerializeToString()

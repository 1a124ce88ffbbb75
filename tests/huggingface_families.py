"""Hugging Face ``tokenizer.json`` files of the StarCoder, Qwen2.5-Coder and DeepSeek-Coder kind, trained
here by ``tokenizers``' own BPE trainer (no hub download exists here), and ``transformers``' tokenizer
class of each family loaded from them: the references the presets are checked against.

Each file has its family's shape: StarCoder2's single digits and GPT-2 byte-level regex; Qwen2's NFC
normalizer, Qwen2 word regex and a non-special added token (``<tool_call>``); and DeepSeek-Coder's chain
of Split pre-tokenizers (newlines, letter runs, punctuation runs, CJK), which fimflow cannot prove word
independent, so it is the file that exercises whole-document encoding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from typing import Callable

from transforms.core.huggingface_tokenizer import KNOWN_WORD_REGEXES

QWEN2_REGEX = next(r for r in KNOWN_WORD_REGEXES if r"\p{N}|" in r)


@dataclasses.dataclass(frozen=True)
class Family:
    specials: tuple
    # Added tokens that are not special: transformers and tokenizers match them in text.
    added: tuple
    shape: Callable  # the tokenizers.Tokenizer to train, with normalizer and pre-tokenizer set
    reference: Callable  # (path) -> transformers tokenizer


def _starcoder():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return tokenizer


def _qwen():
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tokenizer


def _deepseek():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        *(pre_tokenizers.Split(Regex(r), behavior="isolated")
          for r in (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[\u4e00-\u9fa5\uac00-\ud7ff]+")),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tokenizer


def _quiet(make):
    with contextlib.redirect_stderr(io.StringIO()):
        return make()


FAMILIES = {
    "starcoder": Family(
        ("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<repo_name>", "<file_sep>"),
        (), _starcoder,
        lambda path: _quiet(lambda: __import__("transformers").GPT2TokenizerFast(tokenizer_file=str(path)))),
    "qwen2.5-coder": Family(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
         "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"),
        ("<tool_call>",), _qwen,
        lambda path: _quiet(lambda: __import__("transformers").Qwen2TokenizerFast(tokenizer_file=str(path)))),
    "deepseek-coder": Family(
        ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"),
        (), _deepseek,
        lambda path: _quiet(lambda: __import__("transformers").LlamaTokenizerFast(
            tokenizer_file=str(path), bos_token="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>",
            add_bos_token=True, add_eos_token=False, legacy=True))),
}


def train_family_tokenizer(name: str, texts: list[str], vocab_size: int = 3000) -> bytes:
    """A ``tokenizer.json`` of ``name``'s family trained on ``texts``."""
    from tokenizers import AddedToken, decoders, pre_tokenizers, trainers

    family = FAMILIES[name]
    tokenizer = family.shape()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(family.specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in family.added])
    return tokenizer.to_str().encode("utf-8")

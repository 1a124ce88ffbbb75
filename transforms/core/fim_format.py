"""FIM layouts of the model families people train: which sentinels, in which order.

A ``FimFormat`` names the special pieces a family's tokenizer uses and lays
out a FIM example as a sequence of *sentinel roles* (``fim_prefix``,
``fim_suffix``, ``fim_middle``, ``fim_end``: fields of ``SpecialTokens``)
and *parts* (``P``, ``S``, ``M``: prefix, suffix, middle). How each part is
tokenized is the same for every family and is what their reference code
does: each part is encoded on its own, without SentencePiece's implicit
leading space, except that a prefix at a document's start keeps the leading
space the document encoder gave it (Code Llama's ``encode`` of the prefix and
``encode_infilling`` of the rest; Mistral's ``encode_fim``).

The presets and where their layouts come from (each is checked id for id
against the family's reference in ``tests/test_fim_formats.py``):

* ``paper``: Bavarian et al. 2022, PSM and SPM variant 2, StarCoder's
  sentinel names; the middle ends at the ``<eot>`` that ends the document.
* ``codellama``: Code Llama (``transformers``' ``CodeLlamaTokenizer``, the
  reference repository's ``infilling_prompt_tokens``); the middle ends with
  ``▁<EOT>``; BOS at each document start.
* ``codestral``: Mistral v3 control tokens in ``mistral-common``'s
  ``encode_fim`` order ``[SUFFIX] S [PREFIX] P M``: one order, no middle
  sentinel; BOS at each document start. The same in every ``mistral-common``
  release from 1.3.4 to 1.13.1 (``mistral_common/tokens/tokenizers/instruct.py``,
  ``sentencepiece.py`` before 1.8: the prompt through ``tokenizer.encode``, S and
  M through ``_encode_infilling``), except that ``encode`` gives a prefix that
  continues a document a dummy-prefix space, which fimflow does not add.
* ``codegemma``: the published prompt ``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>``
  with the middle ended by ``<|file_separator|>``, the token that also
  separates files; BOS at each document start. Only PSM is published, so SPM
  (the paper's variant 2) is off unless ``--fim_spm_rate`` asks for it.

* ``starcoder``: StarCoder and StarCoder2 (a ``tokenizer.json``): the paper's
  layout with their sentinel names, as BigCode's Megatron-LM fork builds it
  (``megatron/data/gpt_dataset.py``, ``permute``: PSM
  ``<fim_prefix> P <fim_suffix> S <fim_middle> M``, SPM
  ``<fim_prefix> <fim_suffix> S <fim_middle> P M``, SPM rate 0.5), documents
  ended by ``<|endoftext|>``, repository pieces ``<repo_name>``, ``<file_sep>``
  (the StarCoder2 paper's repository-context format).
* ``qwen2.5-coder``: Qwen2.5-Coder's published prompt (the QwenLM/Qwen2.5-Coder
  README, file-level completion) ``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>M``,
  ``<|endoftext|>``, pad ``<|fim_pad|>``, repository pieces ``<|repo_name|>``,
  ``<|file_sep|>``. Only PSM is published: SPM is off unless asked for.
* ``deepseek-coder``: DeepSeek-Coder's code-insertion prompt (the
  deepseek-ai/DeepSeek-Coder README) ``<｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>M``:
  its begin, hole and end tokens play the prefix, suffix and middle roles;
  ``<｜end▁of▁sentence｜>`` ends documents and ``<｜begin▁of▁sentence｜>`` starts
  them, as its tokenizer adds it. PSM only (the paper trains PSM).

The last three are checked against ``transformers``' tokenizer classes loaded
from a ``tokenizer.json`` the test trains with each family's special tokens.

Repository-level layouts (``--group_by repo``) name two more pieces:
``repo_name`` before the repository's name and ``file_sep`` before each
file's ``PATH\\n`` and content.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from transforms.core.tokenizer import SpecialTokenNames

# Roles of special pieces in a layout, and the parts.
SENTINEL_ROLES = ("fim_prefix", "fim_suffix", "fim_middle", "fim_end")
PARTS = ("P", "S", "M")


@dataclasses.dataclass(frozen=True)
class FimFormat:
    """One family's FIM layout and the defaults that go with it.

    ``psm``/``spm``: the order of sentinel roles and parts in each mode;
    ``spm=None``/``psm=None``: the family has one order only. ``pieces``: the
    default piece name of each role (``SpecialTokenNames`` fields; ``None``:
    the model's own EOS/BOS, or no such piece). ``spm_rate``: the default
    share of SPM among FIM examples. ``bos``: whether each document starts
    with the model's BOS by default.
    """

    name: str
    psm: Optional[tuple]
    spm: Optional[tuple]
    pieces: dict
    spm_rate: float
    bos: bool

    @property
    def orders(self) -> dict:
        return {mode: layout for mode, layout in (("psm", self.psm), ("spm", self.spm)) if layout}

    def layout_text(self, mode: str) -> str:
        """A mode's layout written out, sentinels by their default piece names."""
        return " ".join(self.pieces.get(item) or item for item in self.orders[mode])

    def describe(self, pieces: dict) -> dict:
        """The layout as ``metadata.json`` records it: each mode's order, sentinels by their ``pieces`` names."""
        return {mode: [pieces[item] if item in SENTINEL_ROLES else item for item in layout]
                for mode, layout in self.orders.items()}


_PSM = ("fim_prefix", "P", "fim_suffix", "S", "fim_middle", "M")
_SPM = ("fim_prefix", "fim_suffix", "S", "fim_middle", "P", "M")

FORMATS = {f.name: f for f in (
    FimFormat("paper", _PSM, _SPM,
              {"fim_prefix": "<fim_prefix>", "fim_middle": "<fim_middle>", "fim_suffix": "<fim_suffix>",
               "pad": "<fim_pad>"},
              0.5, False),
    FimFormat("codellama", _PSM + ("fim_end",), _SPM + ("fim_end",),
              {"fim_prefix": "▁<PRE>", "fim_middle": "▁<MID>", "fim_suffix": "▁<SUF>", "fim_end": "▁<EOT>"},
              0.5, True),
    FimFormat("codestral", None, ("fim_suffix", "S", "fim_prefix", "P", "M"),
              {"fim_prefix": "[PREFIX]", "fim_middle": None, "fim_suffix": "[SUFFIX]"},
              1.0, True),
    FimFormat("codegemma", _PSM + ("fim_end",), _SPM + ("fim_end",),
              {"fim_prefix": "<|fim_prefix|>", "fim_middle": "<|fim_middle|>", "fim_suffix": "<|fim_suffix|>",
               "fim_end": "<|file_separator|>", "file_sep": "<|file_separator|>"},
              0.0, True),
    FimFormat("starcoder", _PSM, _SPM,
              {"fim_prefix": "<fim_prefix>", "fim_middle": "<fim_middle>", "fim_suffix": "<fim_suffix>",
               "pad": "<fim_pad>", "eot": "<|endoftext|>", "repo_name": "<repo_name>", "file_sep": "<file_sep>"},
              0.5, False),
    FimFormat("qwen2.5-coder", _PSM, _SPM,
              {"fim_prefix": "<|fim_prefix|>", "fim_middle": "<|fim_middle|>", "fim_suffix": "<|fim_suffix|>",
               "pad": "<|fim_pad|>", "eot": "<|endoftext|>", "repo_name": "<|repo_name|>",
               "file_sep": "<|file_sep|>"},
              0.0, False),
    FimFormat("deepseek-coder", _PSM, _SPM,
              {"fim_prefix": "<｜fim▁begin｜>", "fim_middle": "<｜fim▁end｜>", "fim_suffix": "<｜fim▁hole｜>",
               "pad": None, "eot": "<｜end▁of▁sentence｜>", "bos": "<｜begin▁of▁sentence｜>"},
              0.0, True),
)}
DEFAULT_FORMAT = "paper"
# Repository-level pieces where a preset does not name its own (StarCoder2 and Qwen2.5-Coder style).
REPO_PIECES = {"repo_name": "<repo_name>", "file_sep": "<file_sep>"}


def fim_format(name: str) -> FimFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown FIM format {name!r}; one of {', '.join(FORMATS)}") from None


def special_token_names(fmt: FimFormat, overrides: dict, bos: Optional[str], repository: bool = False) -> SpecialTokenNames:
    """The pieces of a run's special tokens: ``overrides`` (role -> piece, ``None`` for not given) over the
    format's. ``bos``: the BOS piece, or ``None`` for no BOS; ``repository``: repository-level packing."""
    def piece(role: str) -> Optional[str]:
        given = overrides.get(role)
        return given if given is not None else fmt.pieces.get(role, REPO_PIECES.get(role) if repository else None)

    uses_end = any("fim_end" in layout for layout in fmt.orders.values())
    return SpecialTokenNames(
        fim_prefix=piece("fim_prefix"), fim_middle=piece("fim_middle"), fim_suffix=piece("fim_suffix"),
        pad=piece("pad"), eot=piece("eot"), fim_end=piece("fim_end") if uses_end else None, bos=bos,
        repo_name=piece("repo_name") if repository else None, file_sep=piece("file_sep") if repository else None)

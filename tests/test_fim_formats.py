"""Each FIM preset agrees id for id with its family's reference, and keeps fimflow's guarantees.

References: ``transformers``' ``CodeLlamaTokenizer`` (Code Llama), ``mistral-common``'s
``encode_fim`` with the Mistral v3 model it ships (Codestral), ``transformers``' ``GPT2TokenizerFast``,
``Qwen2TokenizerFast`` and ``LlamaTokenizerFast`` loaded from a ``tokenizer.json`` of each family trained
here (StarCoder, Qwen2.5-Coder, DeepSeek-Coder: ``tests.huggingface_families``), and for the paper and CodeGemma,
whose references need model weights or downloads, the published format: the paper's
``<PRE> Enc(prefix) <SUF> Enc(suffix) <MID> Enc(middle)`` (SPM: ``<PRE> <SUF> Enc(suffix) <MID>
Enc(prefix) Enc(middle)``) and the CodeGemma prompt string, encoded by SentencePiece with the
sentinels as user-defined symbols. fimflow's side is the real chunk path (``fim_chunk``): a
document tokenized by the document encoder, BOS in front, cut where the test says.
"""

from __future__ import annotations

import dataclasses

import contextlib
import io
import json

import pytest
import sentencepiece as spm
from hypothesis import given
from hypothesis import strategies as st
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from pipeline.cli import main
from pipeline.inspect_dataset import iter_examples
from pipeline.inspect_dataset import special_token_names as dataset_token_names
from tests.fim_checks import check_lossless, segments
from tests.fim_references import (MISTRAL_V3_MODEL, SETTINGS, document_parts, fimflow_example, part_text,
                                  preset_tokenizer)
from transforms.core.fim_format import FORMATS
from transforms.core.segments import parse_segment
from transforms.core.tokenizer import tokenizer_from_bytes
from transforms.schema import FimConfig

def with_pieces(model: bytes, pieces: list[str]) -> bytes:
    """``model`` with user-defined ``pieces`` added, the way Code Llama extended Llama 2's model."""
    proto = model_pb2.ModelProto.FromString(model)
    for piece in pieces:
        proto.pieces.add(piece=piece, score=0.0, type=model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return proto.SerializeToString()


# --- Code Llama: transformers' CodeLlamaTokenizer ----------------------------------------------------

CODELLAMA_PIECES = ["\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>", "\u2581<EOT>"]


@pytest.fixture(scope="module")
def codellama(tmp_path_factory, llama_model_bytes):
    import transformers
    model = with_pieces(llama_model_bytes, CODELLAMA_PIECES)
    path = tmp_path_factory.mktemp("codellama") / "tokenizer.model"
    path.write_bytes(model)
    with contextlib.redirect_stderr(io.StringIO()):
        reference = transformers.CodeLlamaTokenizer(vocab_file=str(path), legacy=False)
    return preset_tokenizer(model, "codellama"), reference


@SETTINGS
@given(parts=document_parts(nonempty_prefix=True, nonempty_suffix=True), spm_order=st.booleans())
def test_codellama_matches_transformers_code_llama_tokenizer(codellama, parts, spm_order):
    """``<s> ▁<PRE> P ▁<SUF> S ▁<MID> M ▁<EOT> </s>`` (SPM: ``<s> ▁<PRE> ▁<SUF> S ▁<MID> P M ▁<EOT> </s>``),
    the prompt from ``CodeLlamaTokenizer`` and the middle as it encodes infilled text."""
    tokenizer, reference = codellama
    prefix, middle, suffix = parts
    prompt = reference(prefix, suffix=suffix, suffix_first=spm_order, add_special_tokens=True)["input_ids"]
    expected = (prompt + reference.convert_tokens_to_ids(reference._tokenize(middle))
                + [reference.eot_id, reference.eos_token_id])
    assert fimflow_example(tokenizer, "codellama", prefix, middle, suffix, spm_order) == expected


# --- Codestral: mistral-common's encode_fim with the Mistral v3 model it ships ----------------------

@pytest.fixture(scope="module")
def codestral():
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    reference = MistralTokenizer.from_file(MISTRAL_V3_MODEL)
    with open(MISTRAL_V3_MODEL, "rb") as f:
        return preset_tokenizer(f.read(), "codestral"), reference


@SETTINGS
@given(parts=document_parts(nonempty_prefix=True, nonempty_suffix=False), spm_order=st.booleans())
def test_codestral_matches_mistral_common_encode_fim(codestral, parts, spm_order):
    """``<s> [SUFFIX] S [PREFIX] P M </s>`` whatever the draw says: ``encode_fim``'s prompt, then the
    middle as ``mistral-common`` encodes infilled text, then EOS."""
    from mistral_common.protocol.fim.request import FIMRequest

    tokenizer, reference = codestral
    prefix, middle, suffix = parts
    instruct = reference.instruct_tokenizer
    prompt = reference.encode_fim(FIMRequest(prompt=prefix, suffix=suffix)).tokens
    expected = prompt + instruct._encode_infilling(middle) + [instruct.tokenizer.eos_id]
    assert fimflow_example(tokenizer, "codestral", prefix, middle, suffix, spm_order) == expected


# --- The paper and CodeGemma: the published formats -------------------------------------------------

PUBLISHED_SENTINELS = {
    "paper": {"fim_prefix": "<fim_prefix>", "fim_suffix": "<fim_suffix>", "fim_middle": "<fim_middle>"},
    "codegemma": {"fim_prefix": "<|fim_prefix|>", "fim_suffix": "<|fim_suffix|>", "fim_middle": "<|fim_middle|>",
                  "fim_end": "<|file_separator|>"},
}


@pytest.fixture(scope="module")
def gemma_model(training_text) -> bytes:
    """A Gemma-style model: no dummy prefix, byte fallback, <pad> <eos> <bos> <unk> first, the
    sentinels of both formats as user-defined symbols (so the published text encodes to them)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for t in training_text for line in t.splitlines() if line.strip()]),
        model_writer=model, minloglevel=2, model_type="bpe", vocab_size=2000, byte_fallback=True,
        add_dummy_prefix=False, normalization_rule_name="identity", remove_extra_whitespaces=False,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        user_defined_symbols=sorted({p for s in PUBLISHED_SENTINELS.values() for p in s.values()} | {"<fim_pad>"}),
        character_coverage=0.9995)
    return ModelBytes(model.getvalue())


class ModelBytes(bytes):
    """A serialized model that hypothesis reports by its size, not its 70 kB of bytes."""

    def __repr__(self) -> str:
        return f"<model of {len(self)} bytes>"


def published_example(sp: spm.SentencePieceProcessor, fmt_name: str, prefix: str, middle: str, suffix: str,
                      spm_order: bool, bos: bool) -> list[int]:
    """The published layout with ``Enc`` = SentencePiece's encoding of each part on its own."""
    s = {role: sp.piece_to_id(piece) for role, piece in PUBLISHED_SENTINELS[fmt_name].items()}
    enc = sp.encode
    if spm_order:
        ids = [s["fim_prefix"], s["fim_suffix"]] + enc(suffix) + [s["fim_middle"]] + enc(prefix) + enc(middle)
    else:
        ids = [s["fim_prefix"]] + enc(prefix) + [s["fim_suffix"]] + enc(suffix) + [s["fim_middle"]] + enc(middle)
    end = [s["fim_end"]] if "fim_end" in s else []
    return [sp.bos_id()] * bos + ids + end + [sp.eos_id()]


@pytest.mark.parametrize("fmt_name", ["paper", "codegemma"])
@SETTINGS
@given(parts=document_parts(nonempty_prefix=False, nonempty_suffix=False), spm_order=st.booleans())
def test_paper_and_codegemma_match_their_published_layouts(gemma_model, fmt_name, parts, spm_order):
    tokenizer = preset_tokenizer(gemma_model, fmt_name)
    sp = spm.SentencePieceProcessor(model_proto=gemma_model)
    prefix, middle, suffix = parts
    expected = published_example(sp, fmt_name, prefix, middle, suffix, spm_order, FORMATS[fmt_name].bos)
    assert fimflow_example(tokenizer, fmt_name, prefix, middle, suffix, spm_order) == expected
    if not spm_order:
        # The prompt as the published text writes it, encoded whole, is the same ids.
        s = PUBLISHED_SENTINELS[fmt_name]
        text = f"{s['fim_prefix']}{prefix}{s['fim_suffix']}{suffix}{s['fim_middle']}{middle}{s.get('fim_end', '')}"
        assert expected[FORMATS[fmt_name].bos:-1] == sp.encode(text)


def test_codegemma_prompt_from_the_published_example(gemma_model):
    """The CodeGemma docs' own example, cursor after ``import ``, answered with ``sys``."""
    tokenizer = preset_tokenizer(gemma_model, "codegemma")
    sp = spm.SentencePieceProcessor(model_proto=gemma_model)
    prefix, middle, suffix = "import ", "sys", "\nif __name__ == '__main__':\n    sys.exit(0)"
    text = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>{middle}<|file_separator|>"
    assert fimflow_example(tokenizer, "codegemma", prefix, middle, suffix, False) == \
        [sp.bos_id()] + sp.encode(text) + [sp.eos_id()]


# --- StarCoder, Qwen2.5-Coder, DeepSeek-Coder: transformers' classes on a tokenizer.json of the family ---

@pytest.fixture(scope="module")
def huggingface_presets(family_tokenizer_paths) -> dict:
    from tests.huggingface_families import FAMILIES

    return {name: (preset_tokenizer(path.read_bytes(), name), FAMILIES[name].reference(path))
            for name, path in family_tokenizer_paths.items()}


# Each family's published prompt, written out here and not read from the presets: before the prefix, before
# the suffix, before the middle, and the end of text.
PUBLISHED_PROMPTS = {
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"),
    "qwen2.5-coder": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|endoftext|>"),
    "deepseek-coder": ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>"),
}


def permuted(reference, fmt_name: str, prefix: str, middle: str, suffix: str, spm_order: bool) -> list[int]:
    """BigCode's ``permute``: each part encoded on its own by the family's tokenizer, sentinels around them."""
    pre, suf, mid, _ = reference.convert_tokens_to_ids(list(PUBLISHED_PROMPTS[fmt_name]))
    enc = lambda text: reference.encode(text, add_special_tokens=False)  # noqa: E731
    if spm_order:
        return [pre, suf, *enc(suffix), mid, *enc(prefix), *enc(middle)]
    return [pre, *enc(prefix), suf, *enc(suffix), mid, *enc(middle)]


@pytest.mark.parametrize("fmt_name", list(PUBLISHED_PROMPTS))
@SETTINGS
@given(parts=document_parts(nonempty_prefix=False, nonempty_suffix=False), spm_order=st.booleans())
def test_huggingface_presets_match_their_families_tokenizers(huggingface_presets, fmt_name, parts, spm_order):
    """PSM: the family's published prompt text through its transformers tokenizer (sentinels as text,
    DeepSeek's BOS added by the tokenizer), then the middle and the end of text; SPM: BigCode's permute."""
    tokenizer, reference = huggingface_presets[fmt_name]
    prefix, middle, suffix = parts
    pre, suf, mid, end = PUBLISHED_PROMPTS[fmt_name]
    eot = [reference.convert_tokens_to_ids(end)]
    # What the family's tokenizer puts before any text: DeepSeek's BOS, nothing for the others.
    bos = reference("")["input_ids"]
    expected = bos + permuted(reference, fmt_name, prefix, middle, suffix, spm_order) + eot
    if not spm_order:
        prompt = f"{pre}{prefix}{suf}{suffix}{mid}"
        assert reference(prompt)["input_ids"] + reference.encode(middle, add_special_tokens=False) + eot == expected
    assert fimflow_example(tokenizer, fmt_name, prefix, middle, suffix, spm_order) == expected


# --- Every preset keeps the guarantees --------------------------------------------------------------

# Every preset's special pieces written as text in a document: never a special id.
LITERAL_SPECIALS = st.sampled_from(["<fim_middle>", " <PRE>", "\u2581<MID>", " <EOT>", "[SUFFIX]", "[PREFIX]",
                                    "<|fim_prefix|>", "<|file_separator|>", "<s>", "</s>", "<bos>", "<eos>",
                                    "<|endoftext|>", "<|fim_pad|>", "<｜fim▁hole｜>", "<｜end▁of▁sentence｜>",
                                    "<|im_start|>", "<tool_call>"])


@pytest.fixture(scope="module")
def preset_tokenizers(llama_model_bytes, gemma_model, codestral, huggingface_presets) -> dict:
    return {
        "paper": preset_tokenizer(gemma_model, "paper"),
        "codellama": preset_tokenizer(with_pieces(llama_model_bytes, CODELLAMA_PIECES), "codellama"),
        "codestral": codestral[0],
        "codegemma": preset_tokenizer(gemma_model, "codegemma"),
        **{name: tokenizer for name, (tokenizer, _) in huggingface_presets.items()},
    }


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@SETTINGS
@given(docs=st.lists(st.tuples(part_text, LITERAL_SPECIALS, part_text).map("".join), min_size=1, max_size=4),
       data=st.data(),
       seed=st.integers(0, 2**31), span_unit=st.sampled_from(["char", "line", "token"]))
def test_every_preset_is_lossless_on_any_chunk(preset_tokenizers, fmt_name, docs, data, seed, span_unit):
    """P+M+S bytes equal the fragment's, BOS stays first, sentinels only where FIM put them, also in
    documents that hold every preset's special pieces as text."""
    tokenizer = preset_tokenizers[fmt_name]
    sp = tokenizer.special
    ids = []
    for doc in tokenizer.encode_documents(docs):
        ids += ([sp.bos] if sp.bos is not None else []) + doc + [sp.eot]
    start = data.draw(st.integers(0, len(ids) - 1))
    chunk = ids[start:data.draw(st.integers(start + 1, len(ids)))]
    config = FimConfig(context_length=5 * len(chunk) + 8, rate=data.draw(st.sampled_from([0.5, 1.0])),
                       spm_rate=FORMATS[fmt_name].spm_rate if fmt_name == "codestral" else
                       data.draw(st.sampled_from([0.0, 0.5, 1.0])),
                       span_unit=span_unit, format=fmt_name)
    check_lossless(tokenizer, chunk, config, seed, FORMATS[fmt_name])


@pytest.fixture(scope="module")
def preset_model_paths(tmp_path_factory, code_model_bytes, family_tokenizer_paths) -> dict:
    """Model files a user would have: the code model with each family's pieces added, Mistral v3, and a
    tokenizer.json of each Hugging Face family."""
    root = tmp_path_factory.mktemp("preset_models")
    models = {
        "paper": code_model_bytes,
        "codellama": with_pieces(code_model_bytes, CODELLAMA_PIECES),
        "codegemma": with_pieces(code_model_bytes, sorted(set(PUBLISHED_SENTINELS["codegemma"].values()))),
        "codestral": open(MISTRAL_V3_MODEL, "rb").read(),
    }
    paths = dict(family_tokenizer_paths)
    for name, model in models.items():
        paths[name] = root / f"{name}.model"
        paths[name].write_bytes(model)
    return paths


@pytest.mark.parametrize("fmt_name", list(FORMATS))
def test_every_preset_runs_deterministically_and_says_its_layout(tmp_path, preset_model_paths, jsonl_corpus,
                                                                 fmt_name, capsys):
    """The same bytes in one process and on two worker processes; metadata.json and inspect name the
    layout; every FIM segment parses in the preset's layout."""
    corpus, _ = jsonl_corpus
    shards = []
    for mode, workers in (("in_memory", 1), ("multi_processing", 2)):
        out = tmp_path / mode
        assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer",
                     str(preset_model_paths[fmt_name]), "--fim_format", fmt_name, "--fim_rate", "0.9",
                     "--context_length", "256", "--direct_running_mode", mode,
                     "--direct_num_workers", str(workers)]) == 0
        shards.append({p.name: p.read_bytes() for p in sorted(out.glob("train-*"))})
    assert shards[0] == shards[1] and shards[0]
    metadata = json.loads((out / "metadata.json").read_text())
    fmt = FORMATS[fmt_name]
    assert metadata["fim"]["format"] == fmt_name and set(metadata["fim"]["layout"]) == set(fmt.orders)
    tokenizer = tokenizer_from_bytes(preset_model_paths[fmt_name].read_bytes(), dataset_token_names(metadata))
    assert metadata["bos"] == fmt.bos and (tokenizer.special.bos is not None) == fmt.bos
    seen = set()
    for example in iter_examples(str(out)):
        segs = segments(example["input_ids"], example["segment_ids"])
        for k, seg in enumerate(segs):
            mode = parse_segment(seg, tokenizer.special, fmt).mode
            if mode == "spm" and fmt.psm and metadata["fim"]["spm_rate"] == 0:
                # PSM with an empty prefix is the same ids as SPM: <PRE> <SUF> S <MID> M.
                assert parse_segment(seg, tokenizer.special, dataclasses.replace(fmt, spm=None)).prefix == []
                mode = "psm"
            seen.add(mode)
            # Only the trim, at the context's end, may cut a FIM example short.
            assert mode != "truncated" or k == len(segs) - 1
    spm_rate = metadata["fim"]["spm_rate"]
    drawn = ({m for m, share in (("psm", 1 - spm_rate), ("spm", spm_rate)) if share > 0}
             if len(fmt.orders) > 1 else set(fmt.orders))
    assert seen - {"truncated"} == drawn | {"plain"}
    capsys.readouterr()
    assert main(["inspect", str(out), "--n", "1", "--color", "never"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(fmt_name) and " ".join(metadata["fim"]["layout"][next(iter(fmt.orders))]) in first

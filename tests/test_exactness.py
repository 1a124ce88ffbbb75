"""Ids equal SentencePiece's on the whole document, and FIM keeps every byte, for the models fimflow accepts."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.defaults import bundled_tokenizer_path
from pipeline.inspect_dataset import read_examples
from tests.corpora import write_jsonl
from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer
from transforms.core.tokenizer import SpecialTokenNames, read_model_bytes

# Each above the 1,048,576 characters a document is encoded in at once.
LONG_DOCUMENTS = {
    # No space after a non-space in the first million characters: cut where letters meet digits.
    "base64": base64.b64encode(random.Random(1).randbytes(800_000)).decode(),
    # A safe cut exists: --word_cache=false must find the same one.
    "blank_lines": "#####" + "x = 1\n\n" * 149_807,
    # Whitespace that a normalizing model folds: no cut is safe, so the whole text at once.
    "indented": "#####" + "if x:\n    return y\n" * 55_197,
}


def document_ids(out: Path, eot: int) -> list[int]:
    (example,) = read_examples(str(out))
    ids = [t for t, s in zip(example["input_ids"], example["segment_ids"]) if s == 1]
    assert ids[-1] == eot
    return ids[:-1]


@pytest.mark.slow
@pytest.mark.parametrize("name, model", [("base64", "bundled"), ("blank_lines", "bundled"),
                                         ("indented", "lossy"), ("base64", "lossy")])
def test_a_long_document_has_exactly_the_ids_of_the_whole_text(tmp_path, lossy_model_path, name, model):
    text = LONG_DOCUMENTS[name]
    assert len(text) > 1 << 20
    path = bundled_tokenizer_path() if model == "bundled" else lossy_model_path
    tokenizer = SentencePieceTokenizer(read_model_bytes(path), SpecialTokenNames())
    expected = tokenizer.encode_documents([text])[0]
    write_jsonl(tmp_path / "doc.jsonl", [text])
    shards = []
    for flags in ([], ["--word_cache=false"]):
        out = tmp_path / f"out{len(shards)}"
        assert main(["run", "--input", str(tmp_path / "doc.jsonl"), "--output", str(out), "--tokenizer", path,
                     "--context_length", str(1 << 20), "--fim_rate", "0", *flags]) == 0
        assert document_ids(out, tokenizer.special.eot) == expected
        shards.append((out / "train-00000-of-00001.tfrecord").read_bytes())
    assert shards[0] == shards[1]


USER_SYMBOLS = ["\n\n", "→→", "f(", "x_y", "    ", "<eot>"]
TRICKY = [
    "first7\n\nsecond →→ third",
    "def f(x_y):\n\treturn  x_y   # ﬁne ＡＢＣ ① 日本語\n\n\n",
    "  leading and trailing spaces   ",
    "emoji 🎉👩‍💻 and ▁ marks ▁▁ and tabs\t\t",
    "Привет, мир! 中文句子 Ελληνικά →→→ f(f(x_y))",
]
model_settings = st.fixed_dictionaries({
    "model_type": st.sampled_from(["bpe", "unigram"]),
    "normalization_rule_name": st.sampled_from(["identity", "nmt_nfkc", "nmt_nfkc_cf"]),
    "byte_fallback": st.booleans(),
    "add_dummy_prefix": st.booleans(),
    "remove_extra_whitespaces": st.booleans(),
    "split_digits": st.booleans(),
    "user_defined_symbols": st.lists(st.sampled_from(USER_SYMBOLS), unique=True, max_size=3),
})


def trained_model(model_settings: dict) -> bytes:
    import io

    import sentencepiece as spm

    from tests.corpora import MULTILINGUAL, stdlib_sources

    lines = [line for t in stdlib_sources(120_000, seed=7) + MULTILINGUAL * 3 + TRICKY * 3
             for line in t.splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, minloglevel=2, vocab_size=700, hard_vocab_limit=False,
        character_coverage=0.98, control_symbols=["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
        **model_settings)
    return model.getvalue()


@settings(max_examples=12, deadline=None)
@given(model_config=model_settings, seed=st.integers(0, 2**31))
def test_any_model_configuration_gives_whole_document_ids_and_lossless_fim(model_config, seed):
    """SentencePiece models trained here with drawn settings: long documents (the threshold lowered to
    300 characters) get the ids of the whole text in both modes, and every FIM fragment its bytes."""
    from tests.fim_checks import check_lossless
    from transforms.schema import FimConfig

    model = trained_model(model_config)
    fast, reference = (SentencePieceTokenizer(model, SpecialTokenNames(), reference=r) for r in (False, True))
    documents = TRICKY + ["\n".join(TRICKY * 40)]
    for text in documents:
        whole = fast.encode_documents([text])[0]
        assert fast.encode_long_document(text, 300).tolist() == whole, text[:40]
        assert reference.encode_long_document(text, 300).tolist() == whole, text[:40]
    stream = [t for ids in fast.encode_documents(TRICKY) for t in ids + [fast.special.eot]]
    rng = random.Random(seed)
    for _ in range(30):
        start = rng.randrange(len(stream))
        chunk = stream[start:start + rng.randint(1, 120)]
        for tokenizer in (fast, reference):
            config = FimConfig(context_length=6 * len(chunk) + 8, rate=1.0, spm_rate=0.5,
                               span_unit=rng.choice(["char", "line"]))
            check_lossless(tokenizer, chunk, config, rng.randrange(1 << 30))


def test_a_cut_inside_a_user_defined_symbol_keeps_every_byte_through_fimflow_run(tmp_path):
    """The audit's case: a T5-style model (unigram, NFKC with case folding, no byte fallback) with
    user-defined "\\n\\n"; documents "first{i}\\n\\nsecond"; every fragment a FIM example."""
    from tests.fim_checks import reassemble, render, segments

    model = trained_model({"model_type": "unigram", "normalization_rule_name": "nmt_nfkc_cf",
                           "byte_fallback": False, "user_defined_symbols": ["\n\n"]})
    (tmp_path / "t5.model").write_bytes(model)
    tokenizer = SentencePieceTokenizer(model, SpecialTokenNames())
    docs = [f"first{i}\n\nsecond" for i in range(200)]
    write_jsonl(tmp_path / "docs.jsonl", docs)
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "docs.jsonl"), "--output", str(out), "--tokenizer",
                 str(tmp_path / "t5.model"), "--fim_rate", "1.0", "--fim_spm_rate", "0.5", "--context_length", "2048",
                 "--seed", "1"]) == 0
    corpus = {render(tokenizer, ids) for ids in tokenizer.encode_documents(docs)}
    whole = 0
    for example in read_examples(str(out)):
        for seg in segments(example["input_ids"], example["segment_ids"]):
            mode, parts = reassemble(tokenizer, seg)
            # Chunk edges cut documents; a fragment that is a whole document must be exactly it.
            if mode in ("psm", "spm") and seg[-1] == tokenizer.special.eot and b"first" in parts[0]:
                assert parts[0] in corpus, parts[0]
                whole += 1
    metadata = __import__("json").loads((out / "metadata.json").read_text())
    assert whole > 150 and metadata["counts"]["fim_cuts_moved_to_token_boundaries"] > 0

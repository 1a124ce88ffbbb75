"""Ids equal SentencePiece's on the whole document, and FIM keeps every byte, for the models fimflow accepts."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.defaults import bundled_tokenizer_path
from pipeline.inspect_dataset import read_examples
from tests.conftest import write_jsonl
from transforms.core.tokenizer import SpecialTokenNames, Tokenizer

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
    tokenizer = Tokenizer(Path(path).read_bytes(), SpecialTokenNames())
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

"""Output bytes pinned across refactors: digests of shards written before a change.

The corpus is generated here from a seeded generator and tokenized with the
bundled model (a file in the repository), so the bytes depend on nothing
that differs between machines. The digests were recorded from the commit
before the package restructure; a change that alters any shard (one id, one
record's order) fails here. A deliberate change of the output format updates
them in the same commit, saying why.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.defaults import bundled_tokenizer_path

WORDS = ["def", "return", "self", "value", "import", "class", "for", "in", "if", "else", "None", "x", "y",
         "count", "name", "日本語", "данные", "🎉", "grüße", "é", "λ", "<fim_middle>", "</s>", "0", "42", "_"]
PUNCT = ["(", ")", ":", ",", ".", " = ", " + ", "[", "]", "{", "}", "'", '"', "\t", "  "]


def synthetic_document(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 40)):
        indent = " " * (4 * rng.randint(0, 3))
        tokens = [rng.choice(WORDS) + rng.choice(PUNCT) for _ in range(rng.randint(0, 12))]
        lines.append(indent + "".join(tokens).rstrip())
    return "\n".join(lines) + rng.choice(["", "\n", "\n\n"])


def golden_corpus(root: Path) -> Path:
    rng = random.Random(20261203)
    root.mkdir()
    docs = [synthetic_document(rng) for _ in range(300)]
    with open(root / "a.jsonl", "w", encoding="utf-8") as f:
        for doc in docs[:150]:
            f.write(json.dumps({"content": doc}, ensure_ascii=False) + "\n")
        f.write('{"content": 5}\nnot json\n')
    with open(root / "b.jsonl", "w", encoding="utf-8") as f:
        for doc in docs[150:280]:
            f.write(json.dumps({"content": doc}) + "\n")
    src = root / "src"
    src.mkdir()
    for i, doc in enumerate(docs[280:]):
        (src / f"m{i:02d}.py").write_text(doc, encoding="utf-8")
    # Identical documents: their order and FIM cuts must be pinned too.
    (src / "dup1.py").write_text(docs[0], encoding="utf-8")
    return root


COMMON = ["--context_length", "128", "--seed", "7", "--num_shards", "2", "--num_buckets", "3",
          "--max_error_fraction", "0.5"]
CONFIGS = {
    "context_char": [],
    "line_keep_middle_capped": ["--fim_span_unit", "line", "--fim_trim", "keep_middle",
                                "--fim_max_middle_tokens", "20", "--fim_rate", "0.9"],
    "token_min_fragment": ["--fim_span_unit", "token", "--fim_min_fragment_tokens", "5", "--fim_spm_rate", "1"],
    "document_level": ["--fim_level", "document"],
}
GOLDEN = {
    "context_char": ("8573933dec9606c0cd707f79ac2a1176ffce353d04cc235680cdb724824fbf2b",
                     "f9c2602e2bade763763bb7dfbee30cde7a39f8472f7666555f8e5dd212e6eb09"),
    "line_keep_middle_capped": ("6e45f81254228efab88d2bc3dc4b32aeb070dda2ca3045a1e63f7a6cf4c48ee0",
                                "a28b723eb041c697d855e1df85488abfa7fecfa3d4e214cccea68f6bd8b64aea"),
    "token_min_fragment": ("3fabc95f484c9199f503e7642f89521e8d7253c345379b6bac75d9cef78d5202",
                           "d87c18b7ff84f794c3a637bb5e759bf3bd6386baa95d5c16bc9cb5bccc8f2605"),
    "document_level": ("383ef00cd6b22fd5aa558d85800f0087f21681e870147897603fbe96dbe1d29c",
                       "2e7df505c95005ca91c573584548f9ddf06932ec5293284bf32c90c1b18fd215"),
}


def shard_digests(out: Path) -> tuple:
    # Shards only: the dead letters name their source by absolute path.
    return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("train-*.tfrecord")))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return golden_corpus(tmp_path_factory.mktemp("golden") / "in")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_output_bytes_equal_those_recorded_before_the_restructure(tmp_path, corpus, name):
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", bundled_tokenizer_path(),
                 *COMMON, *CONFIGS[name]]) == 0
    assert shard_digests(out) == GOLDEN[name]


def test_the_reference_encoding_gives_the_golden_bytes_too(tmp_path, corpus):
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", bundled_tokenizer_path(),
                 *COMMON, "--word_cache=false"]) == 0
    assert shard_digests(out) == GOLDEN["context_char"]

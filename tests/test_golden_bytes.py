"""Output bytes pinned across refactors: digests of shards written before a change.

The corpus is generated here from a seeded generator and tokenized with the
bundled model (a file in the repository), so the bytes depend on nothing
that differs between machines. A change that alters any shard (one id, one
record's order) fails here; a deliberate change of the output updates them
in the same commit, saying why. History:
* recorded before the package restructure (32df031), which kept them;
* identical documents scattered over their bucket instead of side by side
  (the corpus holds one duplicate, so every shard's order changed);
* exact de-duplication became the default (#17): the earlier digests are
  pinned with ``--dedup none``, and ``dedup_exact`` (one copy fewer) and
  ``splits`` (every split's shards, eval sets aside) were recorded then.
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


# --dedup none: the digests recorded before exact de-duplication became the default still hold.
COMMON = ["--context_length", "128", "--seed", "7", "--num_shards", "2", "--num_buckets", "3",
          "--max_error_fraction", "0.5", "--dedup", "none"]
CONFIGS = {
    "context_char": [],
    "line_keep_middle_capped": ["--fim_span_unit", "line", "--fim_trim", "keep_middle",
                                "--fim_max_middle_tokens", "20", "--fim_rate", "0.9"],
    "token_min_fragment": ["--fim_span_unit", "token", "--fim_min_fragment_tokens", "5", "--fim_spm_rate", "1"],
    "document_level": ["--fim_level", "document"],
    "dedup_exact": ["--dedup", "exact"],
    "splits": ["--dedup", "exact", "--validation_fraction", "0.2", "--test_fraction", "0.1"],
}
GOLDEN = {
    "context_char": ("aa7f68a0cf0117f74fc92b96789b2c8714142108bab1f2822d457fc425bffc62",
                     "145edcd0a36bdae625ef8fb344521281c4eacdf6d36d089a726c3baef275be87"),
    "line_keep_middle_capped": ("c0b433e585a45c0540ae6216bbae021362f8d3b2f7ed67e8a9c4b9f729ea52f1",
                                "e77f5071326677e9da3620bc938edeee255fac185e0ec6f748eec1f7f5d7e19e"),
    "token_min_fragment": ("4bba9ba4749a8edb0d2663e745081bc98971f80cb31676d9327e7695167c562c",
                           "b4931b0e52abc8e913e45547cb30b5d7537329f50649d5b082c7f65da83c72f9"),
    "document_level": ("56091a1e493ec03871c2fb499c49ae1a051de1197e1769e24e84b142d7242229",
                       "9e47160610f693ebc4a234f0a0949c938223880421a9d31c608b433159c98de2"),
    "dedup_exact": ("e6e60087d25344c3540517f37be7934f2da9adb33bcf997b79eb9b73d84d3a14",
                    "f48a5b99c0432c6281b0efcbe7fe27992604465aa00db106380bae7087bdf317"),
    # test, test_ar, train x2, validation, validation_ar.
    "splits": ("35d71a73a63c91083f37cbdb90089e5a429fcc49e82d2b4996f256da2b4e0a7c",
               "f533c7107d1ebac4c1a5f696be959854d837a5a9d4f2efcec29293b953ff7829",
               "dbe94b355e661cd86a335f3271f146381eb7d2e2429b329dcfb3bf5e80fda946",
               "d067c60d2f5f7d262d469e7077122d2b51066c8f22d254d8ed28d1a0034690b9",
               "593785c8c5d4ca4fd9aa2a28bd58c9d24c0c5f613c5bda7768a2ae2a69347bfc",
               "45b86d6340dfdedfb3be6433d9f1a723f7cf590218cc89cf9eb3186e104d80bf"),
}


def shard_digests(out: Path) -> tuple:
    # Shards only: the dead letters name their source by absolute path.
    return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tfrecord")))


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

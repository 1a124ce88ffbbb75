"""Output bytes pinned across refactors: digests of shards written before a change.

The corpus is generated here from a seeded generator and tokenized with the
bundled model (a file in the repository), so the bytes depend on nothing
that differs between machines. A change that alters any shard (one id, one
record's order) fails here; a deliberate change of the output updates them
in the same commit, saying why. History:
* recorded before the package restructure (32df031), which kept them;
* identical documents scattered over their bucket instead of side by side
  (the corpus holds one duplicate, so every shard's order changed);
* exact de-duplication became the default: the earlier digests are
  pinned with ``--dedup none``, and ``dedup_exact`` (one copy fewer) and
  ``splits`` (every split's shards, eval sets aside) were recorded then;
* each shard became one shuffle bucket: the files changed, so their
  digests were recorded again, with ``--num_shards 3`` for the earlier
  ``--num_buckets 3 --num_shards 2``. ``RECORDS`` pins what does not depend
  on how records are laid out in files (each split's records as a set), and
  was computed on the tree before that change: the records themselves did not
  change, except held-out splits', which are now packed in their own number
  of buckets.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.defaults import bundled_tokenizer_path
from transforms.core.records import read_tfrecords

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
COMMON = ["--context_length", "128", "--seed", "7", "--num_shards", "3",
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
    "context_char": ("43de5d772bff58c1f366c0e0d2088a1f45f072aeaaf13753a74e74d4786e3594",
                     "fb28f56c1ed7fc4d5f2899a2c7bbd409a451cd5efa3f84edea93633eecee8fd8",
                     "1f3827833915c87efd78dbe8c5ef643083fbc5e27970a49732e5058c39bd1274"),
    "line_keep_middle_capped": ("c877502bdee6142cefa95ce691cc036568e344b16dae1205e4901e096a39eaf8",
                                "b5da52ab8ca8699bd34fe36d876f081904158b8a8cc8e7a0d8a1b9db9af275e8",
                                "38fd34a052f002ac97079e14448c44f71bba0dd5dc8990c78f8e226ea5d8bac0"),
    "token_min_fragment": ("07e7be198867e434aafcb975ebbf2946c7064eec9797f427ce707e88837dca0e",
                           "9350e3165a09aa58986f14bd7110f25c8a78b5711524719f63c3f14009a401e2",
                           "81f01dc36c9169c4ce0c05d93cd36d1bad1d495e94cff97eea5a59852f07ca06"),
    "document_level": ("1d6b917852ec73079ad5a5b423a761301431e06c3353b8759b7a2e9861d3673d",
                       "11e29c7d4ea6ad305065d6e0aab87510054eded82a433c31f7d3fca91cc4f682",
                       "7811e0c0e09a903a81ce547eed0c5a8165f7ea5741040c83b3cc24533648d11f"),
    "dedup_exact": ("43de5d772bff58c1f366c0e0d2088a1f45f072aeaaf13753a74e74d4786e3594",
                    "fb28f56c1ed7fc4d5f2899a2c7bbd409a451cd5efa3f84edea93633eecee8fd8",
                    "1f8df8cc16305ce86b7f44fbe5f375e67f28e0a94b1968ce9443fb5223a96046"),
    # test, test_ar, train x3, validation, validation_ar.
    "splits": ("fc73c3ae5d32ad4fe17b008b44c6b04f20d98c42fc52a8cc40ce18014f3d7f10",
               "db3a9967c36af25482851653206286e3d934e82ae67de9d7354cf087ce773aac",
               "455ae4c238a75fb4099cbc93436a36810eb38deb9e6bb797895b114655a7d161",
               "24079557f5bc93586dd0394e0d2b4813d4a39738c23863f9a3c748ef3d95f8e1",
               "e7b06b62d81e876948c11b39ed17549937f0fcee6cbe1ae56a775a51b97414ea",
               "d6e8fe52b47c122e2e7515df8c348c00fd61dcda34c2db48343433c0b2b6c0ed",
               "4e8f5079ba0c79e1672c5919f8c4a53e35b93f747a1c31fbc31611d47f843bc1"),
}
# Train records unchanged by #15; held-out ones recorded then (see above).
RECORDS = {
    "context_char": {"train": "6624633886cb57597859b062800754340bd204d10854f110e2208132c6b01313"},
    "line_keep_middle_capped": {"train": "82decf11a98c4eedb62f9647d3d774131ab0d0d5af6fbe91ca05100356ff79ab"},
    "token_min_fragment": {"train": "1129b8b570b13de2fdf96a0ab8369786edc5eb1d8ddb100331c652771aa7eee6"},
    "document_level": {"train": "88e4a3159cc731a9ffb2ab19c1a53979941b6675f92a8f0ebaa399368f4343da"},
    "dedup_exact": {"train": "1bc26bc3b0487ac0c030a3df9bac4bc3f8610a6cac9884147b1f766dffc01819"},
    "splits": {"test": "fead3414a23de62dcfdb1f2246287279c898a079c55594e5a5393f973a701300",
               "test_ar": "fa9720628e0b077fa361bc103c07d73acd1571ca0baf81c23a4c23a68c6d77a1",
               "train": "12db320f370221b64637520b46499af43d4fa97097d9b78d2f4148ac1c2112ff",
               "validation": "ce91003b09364e7f0cf111c49bd41d3b7ddd8a50dda0e6bc1c3b536d93a7d4f4",
               "validation_ar": "76fcc27d7dbd5e6199ddb29f98f1cc42ea05913cbd7aa53877b5e0d690ec4c58"},
}


def shard_digests(out: Path) -> tuple:
    # Shards only: the dead letters name their source by absolute path.
    return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tfrecord")))


def record_digests(out: Path) -> dict:
    """Per split (file prefix): a digest of its records as a set, however they are laid out in files."""
    records: dict = {}
    for path in sorted(out.glob("*.tfrecord")):
        with open(path, "rb") as f:
            records.setdefault(path.name.rsplit("-", 3)[0], []).extend(
                hashlib.sha256(r).digest() for r in read_tfrecords(f))
    return {split: hashlib.sha256(b"".join(sorted(digests))).hexdigest() for split, digests in records.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return golden_corpus(tmp_path_factory.mktemp("golden") / "in")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_configuration_writes_exactly_its_pinned_bytes(tmp_path, corpus, name):
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", bundled_tokenizer_path(),
                 *COMMON, *CONFIGS[name]]) == 0
    assert shard_digests(out) == GOLDEN[name]
    assert record_digests(out) == RECORDS[name]


def test_the_reference_encoding_gives_the_golden_bytes_too(tmp_path, corpus):
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", bundled_tokenizer_path(),
                 *COMMON, "--word_cache=false"]) == 0
    assert shard_digests(out) == GOLDEN["context_char"]

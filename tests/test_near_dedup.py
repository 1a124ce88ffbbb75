"""Near-duplicate removal (``--dedup near``): planted near-copies of real code at measured Jaccard similarities
are found, dissimilar files are left alone, one survivor per cluster whatever the seed, the runner or a
grown corpus, and the removals are logged and counted."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from bench.near_dedup import detected, quality, variants
from pipeline.cli import main
from tests.corpora import stdlib_sources, write_jsonl
from transforms.core import minhash
from transforms.core.hashing import document_identity

CODE = [d for d in stdlib_sources(3_000_000, seed=21) if 2_000 < len(d) < 40_000]


def planted_pairs(docs: list[str], seed: int) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    return [(doc, variant, minhash.jaccard(doc, variant)) for doc in docs for variant in variants(doc, rng)]


def test_the_default_bands_are_the_ones_that_balance_misses_and_false_alarms_at_0_7():
    params = minhash.lsh_params()
    assert (params.num_perm, params.bands, params.rows, params.threshold) == (256, 25, 10, 0.7)
    # The S-curve's midpoint, (1/b)^(1/r), sits at the threshold.
    assert abs((1 / params.bands) ** (1 / params.rows) - 0.7) < 0.03


def test_planted_near_copies_are_found_above_the_threshold_and_left_alone_below_it():
    """Recall and precision against exact Jaccard computed here, on 40 real files x 10 kinds of copy."""
    params = minhash.lsh_params()
    pairs = planted_pairs(CODE[:40], seed=1)
    by_band = {"high": [], "low": []}
    for a, b, j in pairs:
        if j >= 0.85:
            by_band["high"].append(detected(a, b, params))
        elif j <= 0.5:
            by_band["low"].append(detected(a, b, params))
    assert len(by_band["high"]) >= 100 and len(by_band["low"]) >= 40, {k: len(v) for k, v in by_band.items()}
    assert sum(by_band["high"]) / len(by_band["high"]) >= 0.98
    assert sum(by_band["low"]) == 0
    # Unrelated files of the corpus are never paired.
    assert not any(detected(CODE[i], CODE[i + 1], params) for i in range(0, 40, 2))


def test_signatures_depend_on_words_only_and_on_nothing_of_the_run():
    text = CODE[0]
    assert (minhash.signature(text) == minhash.signature(re.sub(r"[ \t]+", "  ", text))).all()
    assert minhash.signature(text).dtype.name == "uint32" and len(minhash.signature(text)) == 256
    assert minhash.jaccard(text, text.replace("    ", "\t")) == 1.0


def corpus_with_clusters(root: Path, originals: list[str], extra: list[str], seed: int) -> tuple[Path, dict]:
    """A JSONL file of ``originals``, their near-copies and ``extra`` unrelated files; {text: its cluster's
    original} for every copy whose exact Jaccard to its original is at least 0.85 (must go) and None for
    those at most 0.5 (must stay)."""
    rng = random.Random(seed)
    docs, expected = list(originals) + list(extra), {}
    for original in originals:
        for variant in variants(original, rng):
            j = minhash.jaccard(original, variant)
            if j >= 0.85 or j <= 0.5:
                docs.append(variant)
                expected[variant] = original if j >= 0.85 else None
    random.Random(seed).shuffle(docs)
    return write_jsonl(root / "in.jsonl", docs), expected


def run(corpus: Path, out: Path, *extra: str) -> dict:
    assert main(["run", "--input", str(corpus), "--output", str(out), "--dedup", "near",
                 "--dedup_log", str(out.parent / f"{out.name}-removed.jsonl"), "--context_length", "1024",
                 "--validation_fraction", "0.2", "--test_fraction", "0.1", *extra]) == 0
    return json.loads((out / "metadata.json").read_text())


def removed(out: Path) -> list[dict]:
    return [json.loads(line) for line in Path(f"{out}-removed.jsonl").read_text().splitlines()]


def test_a_run_removes_the_near_copies_keeps_one_per_cluster_and_logs_each_removal(tmp_path):
    originals = CODE[:12]
    corpus, expected = corpus_with_clusters(tmp_path, originals, CODE[12:30], seed=2)
    metadata = run(corpus, tmp_path / "out")
    near = metadata["dedup"]["near"]
    log = removed(tmp_path / "out")
    texts = {json.loads(line)["content"] for line in corpus.read_text().splitlines()}
    by_hash = {document_identity(t).hex(): t for t in texts}
    gone = {by_hash[entry["content_hash"]] for entry in log}
    must_go = {v for v, o in expected.items() if o is not None}
    # Each cluster (an original and its close copies) keeps exactly one member: its least identity.
    for original in originals:
        members = {original} | {v for v, o in expected.items() if o == original}
        survivors = members - gone
        assert len(survivors) == 1, (len(members), len(survivors))
        assert document_identity(survivors.pop()) == min(document_identity(m) for m in members)
    assert not {v for v, o in expected.items() if o is None} & gone
    assert not set(CODE[12:30]) & gone
    assert near["removed"] == len(log) == len(gone) == len(must_go)
    assert near["clusters"] == len(originals) and near["nodes_unconverged"] == 0
    assert sum(near["cluster_size_histogram"].values()) == near["clusters"]
    assert near["text_bytes_saved"] == sum(len(t.encode()) for t in gone)
    assert metadata["counts"]["documents"] == len(texts) - len(gone)
    for entry in log:
        assert by_hash[entry["survivor"]["content_hash"]] not in gone


def test_the_same_removals_and_bytes_for_every_seed_runner_and_a_grown_corpus(tmp_path):
    """What is removed does not move with --seed, with the runner mode, or when unrelated files join the
    corpus; the shards are byte-identical in one process and on two worker processes."""
    corpus, _ = corpus_with_clusters(tmp_path, CODE[:6], CODE[6:12], seed=3)
    runs = {}
    for name, extra in (("one", ["--direct_running_mode", "in_memory"]),
                        ("two", ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]),
                        ("seed", ["--seed", "7"])):
        runs[name] = run(corpus, tmp_path / name, *extra)
    shards = {name: {p.name: p.read_bytes() for p in sorted((tmp_path / name).glob("*-*-of-*"))}
              for name in ("one", "two")}
    assert shards["one"] == shards["two"] and shards["one"]
    assert removed(tmp_path / "one") == removed(tmp_path / "two") == removed(tmp_path / "seed")
    grown = tmp_path / "grown"
    grown.mkdir()
    lines = corpus.read_text() + "".join(json.dumps({"content": t}) + "\n" for t in CODE[12:20])
    (grown / "in.jsonl").write_text(lines)
    run(grown / "in.jsonl", tmp_path / "grown_out")
    key = lambda entry: entry["content_hash"]  # noqa: E731
    assert sorted(map(key, removed(tmp_path / "grown_out"))) == sorted(map(key, removed(tmp_path / "one")))


@pytest.mark.parametrize("args, message", [
    (["--dedup_log", "x.jsonl"], "--dedup_log needs --dedup near"),
    (["--dedup", "near", "--near_dedup_threshold", "0"], "--near_dedup_threshold=0.0 must be in (0, 1]"),
    (["--dedup", "near", "--near_dedup_ngram", "0"], "--near_dedup_ngram must be at least 1"),
])
def test_bad_near_dedup_options_stop_with_one_line(tmp_path, capsys, args, message):
    corpus = write_jsonl(tmp_path / "in.jsonl", CODE[:2])
    assert main(["run", "--input", str(corpus), "--output", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_the_quality_bench_counts_every_planted_pair_in_one_band():
    rows = quality(CODE[:4], 1, minhash.lsh_params())
    assert sum(r["pairs"] for r in rows) == 40 and rows[-1]["share_found"] == 1.0


def test_the_report_shows_what_near_dedup_removed(tmp_path, capsys):
    corpus, _ = corpus_with_clusters(tmp_path, CODE[:3], CODE[3:6], seed=4)
    metadata = run(corpus, tmp_path / "out")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out"), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["dedup"]["near"]["removed"] == metadata["dedup"]["near"]["removed"] > 0
    assert numbers["dedup"]["near"]["cluster_size_histogram"] == metadata["dedup"]["near"]["cluster_size_histogram"]
    assert main(["report", str(tmp_path / "out"), "--out", str(tmp_path / "r.html")]) == 0
    assert "Near-duplicate cluster size, documents" in (tmp_path / "r.html").read_text()

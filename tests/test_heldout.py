"""Held-out data: splits that never mix, eval problems from held-out documents only, exact dedup and
decontamination counted exactly, the same bytes on every runner mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.inspect_dataset import iter_examples
from pipeline.inspect_dataset import special_token_names as dataset_token_names
from tests.corpora import stdlib_sources, write_jsonl
from tests.fim_checks import segments
from transforms.core.segments import parse_segment
from transforms.core.splits import split_of
from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer


def tagged_documents(n: int, seed: int) -> list[str]:
    """Real code, each document opening with a line no other document has."""
    return [f"# document {seed}-{i}\n{text}" for i, text in enumerate(stdlib_sources(1_500_000, seed=seed)[:n])]


def corpus_file(path: Path, docs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl(path, docs)


def run(corpus: Path, out: Path, model: str, *extra: str) -> dict:
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", model,
                 "--context_length", "512", *extra]) == 0
    return json.loads((out / "metadata.json").read_text())


def fragments_by_split(out: Path, metadata: dict, model_bytes: bytes) -> dict:
    """{file prefix: [fragment text]}, FIM segments put back in document order."""
    tokenizer = SentencePieceTokenizer(model_bytes, dataset_token_names(metadata))
    found: dict = {}
    for name in metadata["splits"]:
        if not metadata["splits"][name].get("files"):
            continue
        texts = found.setdefault(name, [])
        for example in iter_examples(str(out), split=name):
            for seg in segments(example["input_ids"], example["segment_ids"]):
                part = parse_segment(seg, tokenizer.special)
                if part.mode == "plain" or part.eot:  # Not a FIM example the trim cut short.
                    texts.append(tokenizer.surface(part.prefix + part.middle + part.suffix).decode("utf-8",
                                                                                                   "replace"))
    return found


def document_splits(fragments: dict, documents: list[str]) -> dict:
    """{document's first line: the set of splits whose records hold a piece of it}, each piece traced
    to the one document that holds it (pieces found in several are skipped)."""
    where: dict = {}
    for name, texts in fragments.items():
        for text in texts:
            # Inside the fragment: its edges may hold half a character.
            probe = text[4:-4][:80]
            if len(probe) < 30:
                continue
            owners = [d for d in documents if probe in d]
            # Lossless in every split: each piece is a document's text, FIM parts put back in order.
            assert any(text[4:-4] in d for d in owners), (name, text[:80])
            if len(owners) == 1:
                where.setdefault(owners[0].split("\n", 1)[0], set()).add(name.removesuffix("_ar"))
    return where


def test_no_document_crosses_splits_across_seeds_and_a_grown_corpus(tmp_path, code_model_path, code_model_bytes):
    first = tagged_documents(60, seed=1)
    grown = first + tagged_documents(30, seed=2)
    placements = []
    for corpus_docs, seed in ((first, "1"), (grown, "2")):
        corpus = corpus_file(tmp_path / f"in{seed}" / "c.jsonl", corpus_docs)
        out = tmp_path / f"out{seed}"
        metadata = run(corpus, out, code_model_path, "--seed", seed, "--validation_fraction", "0.2",
                       "--test_fraction", "0.2", "--eval_examples_per_task", "0")
        where = document_splits(fragments_by_split(out, metadata, code_model_bytes), corpus_docs)
        assert all(len(s) == 1 for s in where.values()), [h for h, s in where.items() if len(s) != 1]
        # The paper's trim drops a chunk's tail after a FIM example grew it: a short document there
        # may leave no piece at all.
        assert len(where) >= 0.9 * len(corpus_docs)
        placements.append({h: s.pop() for h, s in where.items()})
        for split in ("train", "validation", "test"):
            assert metadata["splits"][split]["documents"] >= sum(1 for p in placements[-1].values() if p == split)
    common = placements[0].keys() & placements[1].keys()
    assert len(common) >= 0.9 * len(placements[0])
    assert {h: placements[1][h] for h in common} == {h: placements[0][h] for h in common}
    assert set(placements[1].values()) == {"train", "validation", "test"}


def test_split_assignment_ignores_the_seed_and_follows_the_fractions():
    from transforms.core.hashing import content_hash

    ids = [content_hash(f"doc {i}") for i in range(20_000)]
    shares = [sum(split_of(i, 0.1, 0.05) == s for i in ids) / len(ids) for s in ("validation", "test")]
    assert abs(shares[0] - 0.1) < 0.01 and abs(shares[1] - 0.05) < 0.01


def test_eval_problems_come_from_held_out_documents_and_reassemble_to_them(tmp_path, code_model_path,
                                                                            code_model_bytes):
    docs = tagged_documents(80, seed=3)
    corpus = corpus_file(tmp_path / "in" / "c.jsonl", docs)
    out = tmp_path / "out"
    metadata = run(corpus, out, code_model_path, "--validation_fraction", "0.1", "--test_fraction", "0.4",
                   "--eval_examples_per_task", "6")
    by_header = {d.split("\n", 1)[0]: d for d in docs}
    where = document_splits(fragments_by_split(out, metadata, code_model_bytes), docs)
    tokenizer = SentencePieceTokenizer(code_model_bytes, dataset_token_names(metadata))
    for task in ("single_line", "multi_line", "random_span"):
        lines = [json.loads(line) for line in (out / "eval" / f"{task}.jsonl").read_text().splitlines()]
        assert len(lines) == metadata["eval"][task]["problems"] == 6
        assert [p["task_id"] for p in lines] == sorted({p["task_id"] for p in lines})
        for p in lines:
            text = p["prefix"] + p["middle"] + p["suffix"]
            header = text.split("\n", 1)[0]
            assert by_header[header] == text and where[header] == {"test"}, task
            assert p["middle"].strip() and p["source"] == str(corpus) and p["language"] == ""
            # The prompt is the format's PSM with this model (no implicit leading space): P and S, then M.
            sp = tokenizer.special
            assert p["prompt_ids"][0] == sp.fim_prefix and p["prompt_ids"][-1] == sp.fim_middle
            assert tokenizer.surface(p["prompt_ids"]) == (p["prefix"] + p["suffix"]).encode()
            assert tokenizer.surface(p["middle_ids"]) == p["middle"].encode()
            if task == "single_line":
                assert "\n" not in p["middle"]
            if task == "multi_line":
                lines_of = p["middle"].split("\n")
                assert len([x for x in lines_of if x.strip()]) >= 2 and all(
                    not x.strip() or x[0] in " \t" for x in lines_of)


def test_exact_duplicates_are_counted_exactly(tmp_path, code_model_path):
    unique = tagged_documents(20, seed=4)
    licence, vendored = "# Licensed under the Apache License 2.0\n" * 3, unique[0]
    docs = unique + [licence] * 5 + [vendored] * 2
    corpus = corpus_file(tmp_path / "in" / "c.jsonl", docs)
    kept = run(corpus, tmp_path / "exact", code_model_path)
    assert kept["dedup"] == {"mode": "exact", "unit": "document", "removed": 4 + 2,
                             "text_bytes_saved": 4 * len(licence.encode()) + 2 * len(vendored.encode()),
                             "tokens_saved": kept["dedup"]["tokens_saved"]}
    assert kept["dedup"]["tokens_saved"] > 0
    every = run(corpus, tmp_path / "none", code_model_path, "--dedup", "none")
    assert every["dedup"]["removed"] == 0
    assert every["counts"]["chunk_tokens"] - kept["counts"]["chunk_tokens"] == \
        kept["dedup"]["tokens_saved"] + 6  # each copy's <eot> too


def test_decontamination_drops_exactly_the_documents_sharing_a_benchmark_sequence(tmp_path, code_model_path):
    solution = "def add(a, b):\n    return a + b  # the canonical solution of problem one\n"
    problems = tmp_path / "bench.jsonl"
    problems.write_text(json.dumps({"task_id": "p/1", "prompt": "Add two numbers.", "canonical_solution": solution})
                        + "\n" + json.dumps({"task_id": "p/2", "prompt": "x", "canonical_solution": "y"}) + "\n")
    plain = tmp_path / "other.txt"
    plain.write_text("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu\n")
    words = solution.split()
    clean = tagged_documents(30, seed=5)
    planted = [clean[0] + "\n" + solution,                                        # whole solution
               "x = 1\n" + " ".join(words[2:12]) + "\n",                            # ten words of it
               "# " + " ".join(words[3:12]) + "\n",                                 # nine: not enough
               "notes: alpha beta gamma delta epsilon zeta eta theta iota kappa\n"]  # the plain file
    corpus = corpus_file(tmp_path / "in" / "c.jsonl", clean[1:] + planted)
    out = tmp_path / "out"
    metadata = run(corpus, out, code_model_path, "--decontaminate", str(problems), "--decontaminate", str(plain))
    files = metadata["decontamination"]["files"]
    assert files[str(problems)]["documents_dropped"] == 2 and files[str(plain)]["documents_dropped"] == 1
    assert files[str(problems)]["ngrams"] == len(words) - 9 and metadata["decontamination"]["ngram_words"] == 10
    assert metadata["errors"]["by_reason"] == {"contaminated": 3} and metadata["errors"]["records_in_error"] == 0
    dead = [json.loads(line) for p in sorted((out / "errors").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert sorted(d["raw_start"][:6] for d in dead) == sorted(t[:6] for t in (planted[0], planted[1], planted[3]))
    assert all(d["reason"] == "contaminated" and "shares 10 words with" in d["detail"] for d in dead)


def test_a_benchmark_file_that_is_not_what_it_says_stops_the_run(tmp_path, code_model_path, capsys):
    bad = tmp_path / "bench.jsonl"
    bad.write_text("def f(): pass\n")
    corpus = corpus_file(tmp_path / "in" / "c.jsonl", tagged_documents(3, seed=6))
    assert main(["run", "--input", str(corpus), "--output", str(tmp_path / "o"), "--tokenizer", code_model_path,
                 "--decontaminate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 1 is not JSON" in err and not (tmp_path / "o" / "metadata.json").exists()


def test_every_split_and_eval_set_is_the_same_bytes_on_every_runner_mode(tmp_path, code_model_path):
    corpus = corpus_file(tmp_path / "in" / "c.jsonl", tagged_documents(40, seed=7))
    outputs = []
    for mode, workers in (("in_memory", 1), ("multi_processing", 2)):
        out = tmp_path / mode
        run(corpus, out, code_model_path, "--validation_fraction", "0.2", "--test_fraction", "0.2",
            "--eval_examples_per_task", "5", "--direct_running_mode", mode, "--direct_num_workers", str(workers))
        outputs.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                        if p.is_file() and (p.suffix == ".tfrecord" or p.parent.name == "eval")})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 5 + 3


def test_overwriting_a_dataset_with_splits_leaves_none_of_its_held_out_files(tmp_path, code_model_path):
    corpus = corpus_file(tmp_path / "in" / "c.jsonl", tagged_documents(20, seed=8))
    out = tmp_path / "out"
    run(corpus, out, code_model_path, "--validation_fraction", "0.3", "--test_fraction", "0.3",
        "--eval_examples_per_task", "2")
    assert list(out.glob("validation_ar-*")) and list((out / "eval").glob("*.jsonl"))
    metadata = run(corpus, out, code_model_path, "--overwrite")
    left = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert left == ["metadata.json", "rejected-00000-of-00001.jsonl", "train-00000-of-00001.tfrecord"], left
    assert metadata["splits"] == {} and "eval" not in metadata


def test_a_benchmark_file_replaced_after_planning_fails_the_run(tmp_path, code_model_path):
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipeline.build import FimflowPipeline
    from pipeline.plan import plan_run

    bench = tmp_path / "bench.txt"
    bench.write_text("one two three four five six seven eight nine ten eleven\n")
    corpus = corpus_file(tmp_path / "in" / "c.jsonl", tagged_documents(5, seed=9))
    plan = plan_run(PipelineOptions(["--input", str(corpus), "--output", str(tmp_path / "out"), "--tokenizer",
                                     code_model_path, "--decontaminate", str(bench)]))
    bench.write_text("a benchmark with other words in it than the one that was planned\n")
    p = TestPipeline()
    _ = p | FimflowPipeline(plan)
    with pytest.raises(Exception, match="changed after the run was planned: sha256"):
        p.run().wait_until_finish()
    assert not (tmp_path / "out" / "metadata.json").exists()

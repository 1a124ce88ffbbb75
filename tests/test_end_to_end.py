"""`fimflow run` end to end on the DirectRunner, read back with tf.data as a trainer would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.inspect_dataset import read_examples
from tests.fim_checks import reassemble, segments
from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer
from transforms.core.tokenizer import SpecialTokenNames, Tokenizer

CONTEXT = 256


def run(args: list[str]) -> int:
    return main(["run", *args])


def build(corpus: Path, out: Path, model: str, *extra: str) -> dict:
    assert run(["--input", str(corpus / "*.jsonl"), "--output", str(out), "--tokenizer", model,
                "--context_length", str(CONTEXT), "--fim_rate", "0.5", "--fim_spm_rate", "0.5",
                "--seed", "3", "--num_shards", "3", *extra]) == 0
    return json.loads((out / "metadata.json").read_text())


def check_dataset(out: Path, metadata: dict, tokenizer: Tokenizer, docs: list[str]):
    sp = tokenizer.special
    assert metadata["special_tokens"] == sp.as_dict()
    assert metadata["context_length"] == CONTEXT and metadata["vocab_size"] == tokenizer.vocab_size
    assert [f["path"] for f in metadata["files"]] == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    examples = read_examples(str(out))
    assert len(examples) == sum(f["examples"] for f in metadata["files"]) == metadata["counts"]["examples"]
    # Every source document's surface bytes, joined by a byte no fragment can hold.
    corpus = b"\0".join(tokenizer.surface(ids) for ids in tokenizer.encode_documents(docs))
    modes = {"plain": 0, "psm": 0, "spm": 0, "truncated": 0}
    for ex in examples:
        ids, seg, pos = ex["input_ids"], ex["segment_ids"], ex["positions"]
        assert len(ids) == len(seg) == len(pos) == CONTEXT
        used = CONTEXT - seg.count(0)
        assert seg[used:] == [0] * (CONTEXT - used) and 0 not in seg[:used]
        assert ids[used:] == [sp.pad] * (CONTEXT - used) and pos[used:] == [0] * (CONTEXT - used)
        assert sp.pad not in ids[:used]
        assert seg[:used] == sorted(seg[:used]) and sorted(set(seg[:used])) == list(range(1, max(seg[:used], default=0) + 1))
        for s in set(seg[:used]):
            assert [p for p, g in zip(pos, seg) if g == s] == list(range(seg.count(s)))
        example_segments = segments(ids, seg)
        for k, segment in enumerate(example_segments):
            last_of_full = k == len(example_segments) - 1 and used == CONTEXT
            mode, parts = reassemble(tokenizer, segment, may_be_trimmed=last_of_full)
            modes[mode] += 1
            for part in parts:
                assert part in corpus, (mode, part[:80])
    counts = metadata["counts"]
    assert modes["psm"] + modes["spm"] + modes["truncated"] == counts["fim_fragments"]
    assert counts["psm_fragments"] + counts["spm_fragments"] == counts["fim_fragments"]
    n = counts["fragments"]
    share = metadata["measured"]["fim_rate_observed"]
    assert abs(share - 0.5) < 4 * (0.25 / n) ** 0.5, (share, n)
    spm = metadata["measured"]["spm_share_of_fim"]
    assert abs(spm - 0.5) < 4 * (0.25 / counts["fim_fragments"]) ** 0.5
    assert counts["documents"] == len(docs)
    return modes


def test_run_on_a_jsonl_code_corpus_meets_the_output_contract(tmp_path, jsonl_corpus, code_model_path,
                                                              code_tokenizer):
    corpus, docs = jsonl_corpus
    metadata = build(corpus, tmp_path / "out", code_model_path)
    modes = check_dataset(tmp_path / "out", metadata, code_tokenizer, docs)
    assert modes["psm"] and modes["spm"] and modes["plain"]
    assert metadata["tokenizer"]["sha256"] == code_tokenizer.sha256
    assert metadata["seed"] == 3 and metadata["fim"]["rate"] == 0.5
    assert metadata["options"]["context_length"] == CONTEXT
    assert metadata["counts"]["special_token_text_in_documents"] > 0
    assert metadata["counts"]["partial_character_edges"] > 0
    assert metadata["errors"]["records_rejected"] == 0


def test_llama_style_tokenizer_reassembles_every_fragment(tmp_path, jsonl_corpus, llama_model_path,
                                                          llama_tokenizer):
    corpus, docs = jsonl_corpus
    metadata = build(corpus, tmp_path / "out", llama_model_path, "--fim_trim", "keep_middle")
    modes = check_dataset(tmp_path / "out", metadata, llama_tokenizer, docs)
    assert modes["truncated"] == 0


def test_same_inputs_and_seed_give_identical_bytes_across_runs_and_runner_modes(tmp_path, jsonl_corpus,
                                                                                code_model_path):
    """In-process with documents encoded by three processes, and by two and four SDK workers encoding alone."""
    corpus, _ = jsonl_corpus
    build(corpus, tmp_path / "a", code_model_path, "--tokenizer_processes=3")
    files = sorted(p.name for p in (tmp_path / "a").glob("train-*"))
    assert len(files) == 3
    for workers in (2, 4):
        out = tmp_path / f"workers{workers}"
        build(corpus, out, code_model_path, "--direct_running_mode=multi_processing",
              f"--direct_num_workers={workers}")
        assert files == sorted(p.name for p in out.glob("train-*"))
        for name in files:
            assert (tmp_path / "a" / name).read_bytes() == (out / name).read_bytes()
    build(corpus, tmp_path / "c", code_model_path, "--seed", "4")
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / files[0]).read_bytes()


@pytest.mark.parametrize("model", ["code_model_path", "llama_model_path"])
def test_the_word_cache_gives_the_same_bytes_as_encoding_every_text_whole(request, tmp_path, jsonl_corpus,
                                                                          model):
    corpus, _ = jsonl_corpus
    model_path = request.getfixturevalue(model)
    assert SentencePieceTokenizer(Path(model_path).read_bytes()).word_cache is not None
    build(corpus, tmp_path / "fast", model_path)
    build(corpus, tmp_path / "reference", model_path, "--word_cache=false")
    files = sorted(p.name for p in (tmp_path / "fast").glob("train-*"))
    assert files and files == sorted(p.name for p in (tmp_path / "reference").glob("train-*"))
    for name in files:
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes()


def test_refuses_to_overwrite_a_complete_dataset(tmp_path, jsonl_corpus, code_model_path, capsys):
    corpus, _ = jsonl_corpus
    build(corpus, tmp_path / "out", code_model_path)
    args = ["--input", str(corpus), "--output", str(tmp_path / "out"), "--tokenizer", code_model_path]
    assert run(args) == 2
    assert "already holds a complete dataset" in capsys.readouterr().err
    assert run(args + ["--overwrite", "--context_length", "128"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--context_length", "4"], "--context_length=4 is too small"),
    (["--fim_rate", "1.5"], "--fim_rate=1.5 must be between 0 and 1"),
    (["--fim_spm_rate", "-0.1"], "--fim_spm_rate=-0.1 must be between 0 and 1"),
    (["--tokenizer", "/nonexistent/x.model"], "--tokenizer /nonexistent/x.model: cannot read it"),
    (["--input", "/nonexistent/*.jsonl"], "no file matched"),
    (["--contextlength", "5"], "unknown option --contextlength"),
    (["--fim_rat", "0.3"], "unknown option --fim_rat"),
    (["--seed", str(1 << 70)], "must fit in 64 bits"),
])
def test_bad_options_fail_before_the_pipeline_with_one_line(tmp_path, jsonl_corpus, code_model_path, capsys,
                                                            args, message):
    corpus, _ = jsonl_corpus
    base = {"--input": str(corpus), "--output": str(tmp_path / "out"), "--tokenizer": code_model_path}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    assert run([x for kv in base.items() for x in kv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_without_sentinels_is_refused_with_how_to_fix(tmp_path, jsonl_corpus, training_text, capsys):
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_text[:50]), model_writer=model,
                                   vocab_size=500, minloglevel=2)
    path = tmp_path / "plain.model"
    path.write_bytes(model.getvalue())
    corpus, _ = jsonl_corpus
    assert run(["--input", str(corpus), "--output", str(tmp_path / "o"), "--tokenizer", str(path)]) == 2
    err = capsys.readouterr().err
    assert "lacks special tokens" in err and "<fim_prefix>" in err and "fimflow train-tokenizer" in err


def test_bundled_tokenizer_has_the_sentinels_as_control_symbols():
    from pipeline.defaults import bundled_tokenizer_path
    from transforms.core.sentencepiece_tokenizer import PieceType
    from transforms.core.tokenizer import read_model_bytes
    from sentencepiece import sentencepiece_model_pb2

    data = read_model_bytes(bundled_tokenizer_path())
    tokenizer = SentencePieceTokenizer(data, SpecialTokenNames())
    proto = sentencepiece_model_pb2.ModelProto.FromString(data)
    for name in ("fim_prefix", "fim_middle", "fim_suffix", "pad", "eot"):
        assert proto.pieces[getattr(tokenizer.special, name)].type == PieceType.CONTROL
    assert proto.trainer_spec.byte_fallback and not proto.normalizer_spec.add_dummy_prefix


def test_document_level_fim_counts_the_examples_packing_cuts_apart(tmp_path, jsonl_corpus, code_model_path,
                                                                  code_tokenizer):
    corpus, docs = jsonl_corpus
    metadata = build(corpus, tmp_path / "doc", code_model_path, "--fim_level", "document")
    counts = metadata["counts"]
    assert metadata["fim"]["level"] == "document"
    assert counts["fim_candidates"] == len(docs)
    assert abs(metadata["measured"]["fim_rate_observed"] - 0.5) < 4 * (0.25 / len(docs)) ** 0.5
    # Documents are longer than the context here, so most document-level examples are cut.
    assert counts["document_fim_examples_cut"] > counts["fim_fragments"] / 2
    context = build(corpus, tmp_path / "ctx", code_model_path)
    assert "document_fim_examples_cut" not in context["counts"]


def test_inspect_shows_segments_with_the_middle_marked(tmp_path, jsonl_corpus, code_model_path, capsys):
    corpus, _ = jsonl_corpus
    build(corpus, tmp_path / "out", code_model_path)
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "out"), "--n", "20", "--color", "always"]) == 0
    out = capsys.readouterr().out
    assert out.count("=== example") == 20
    assert "segment 1" in out and ("PSM" in out or "SPM" in out)
    assert "\u27e6" in out and "\033[" in out
    # Under --fim_trim paper a FIM form that runs past the context end is shown as cut, not as broken data.
    assert "[cut by the context end]" in out
    assert main(["inspect", str(tmp_path / "out"), "--n", "1", "--color", "never"]) == 0
    assert "\033[" not in capsys.readouterr().out


def test_inspect_finds_examples_by_kind_and_shows_raw_token_order(tmp_path, jsonl_corpus, code_model_path, capsys):
    import re

    corpus, _ = jsonl_corpus
    build(corpus, tmp_path / "out", code_model_path)
    out = str(tmp_path / "out")

    def shown(*flags) -> str:
        capsys.readouterr()
        assert main(["inspect", out, "--color", "never", *flags]) == 0
        return capsys.readouterr().out

    def numbers(text):
        return [int(n) for n in re.findall(r"=== example (\d+) ", text)]

    everything = shown("--n", "1000")
    fim = [e for e in everything.split("=== example ")[1:] if "PSM" in e or "SPM" in e or "cut by the context" in e]
    with_fim = shown("--n", "1000", "--fim_only")
    plain = shown("--n", "1000", "--plain_only")
    assert sorted(numbers(with_fim) + numbers(plain)) == numbers(everything) and len(numbers(with_fim)) == len(fim)
    assert "segment 1: PSM" in with_fim or "segment 1: SPM" in with_fim
    assert numbers(shown("--n", "2", "--fim_only", "--skip", "1")) == numbers(with_fim)[1:3]
    raw = shown("--n", "1", "--fim_only", "--raw")
    assert "<fim_prefix>" in raw and "<fim_middle>" in raw and "\u27e6" not in raw


def test_a_rerun_replaces_every_file_of_the_earlier_dataset(tmp_path, jsonl_corpus, code_model_path):
    corpus, _ = jsonl_corpus
    out = tmp_path / "out"
    build(corpus, out, code_model_path)
    assert len(list(out.glob("train-*"))) == 3
    # A failed overwrite leaves no marker of the earlier, now partly replaced, dataset.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jsonl").write_text("not json\n" * 5 + '{"content": "x = 1"}\n')
    assert run(["--input", str(bad), "--output", str(out), "--tokenizer", code_model_path, "--overwrite"]) == 1
    assert not (out / "metadata.json").exists() and not list(out.glob("train-*-of-00003.tfrecord"))
    assert run(["--input", str(corpus), "--output", str(out), "--tokenizer", code_model_path,
                "--num_shards", "2", "--context_length", "128"]) == 0
    assert sorted(p.name for p in out.glob("train-*")) == [f"train-0000{i}-of-00002.tfrecord" for i in range(2)]

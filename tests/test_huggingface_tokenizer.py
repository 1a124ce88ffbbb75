"""The Hugging Face backend: a tokenizer.json gives the ids ``tokenizers`` gives, keeps FIM lossless, and refuses
files it cannot keep exact, saying why.

The reference is ``tokenizers`` itself, loaded fresh from the file (``Tokenizer.from_file``), encoding
the whole document with ``add_special_tokens=False``; the files are the families' shapes trained here
(``tests.huggingface_families``).
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.inspect_dataset import iter_examples
from pipeline.inspect_dataset import special_token_names as dataset_token_names
from tests.corpora import MULTILINGUAL, stdlib_sources, write_jsonl
from tests.fim_checks import reassemble, render, segments
from tests.fim_references import preset_tokenizer
from tests.huggingface_families import FAMILIES, QWEN2_REGEX
from transforms.core.fim_format import FORMATS
from transforms.core.tokenizer import TokenizerError, load_tokenizer, tokenizer_from_bytes

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
CODE = stdlib_sources(400_000, seed=5)
# Text that stresses word splitting: runs of spaces, tabs and newlines, digits, punctuation (glued to
# newlines by Qwen's regex), contractions, letters of several scripts, combining marks (NFC composes
# them), and the characters Python counts as whitespace but regexes may not (\x1c-\x1f, \x85).
hostile_text = st.lists(st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u3000") + list("ab_Z09(')\"{}.,;:+-*/")
                                        + list("éÅ\u0301\u0308한中ßΣ🎉①") + ["e\u0301", "  ", "\n    ", "):\n", "'s", "1234"]),
                       max_size=40).map("".join)
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
code_slice = st.builds(lambda i, a, n: CODE[i % len(CODE)][a:a + n], st.integers(0), st.integers(0, 4000),
                       st.integers(0, 600))
document = st.one_of(hostile_text, any_text, code_slice,
                     st.lists(st.one_of(hostile_text, code_slice), min_size=2, max_size=4).map("".join))


def raw_tokenizer(path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def normalized(name: str, text: str) -> str:
    return unicodedata.normalize("NFC", text) if name == "qwen2.5-coder" else text


class Families(dict):
    """Reported by its keys: hypothesis prints the fixture of a failing case."""

    def __repr__(self) -> str:
        return f"<tokenizers of {', '.join(self)}>"


@pytest.fixture(scope="module")
def families(family_tokenizer_paths) -> dict:
    """Per family: fimflow's tokenizer with the word cache where it applies, without it, and the raw file."""
    return Families({name: (preset_tokenizer(path.read_bytes(), name),
                   tokenizer_from_bytes(path.read_bytes(), preset_tokenizer(path.read_bytes(), name).names,
                                        reference=True),
                   raw_tokenizer(path))
            for name, path in family_tokenizer_paths.items()})


def without_special_text(name: str, text: str) -> bool:
    return not any(s in text for s in FAMILIES[name].specials + FAMILIES[name].added)


def test_the_word_cache_is_used_where_it_is_proven(families):
    """StarCoder's and Qwen's pre-tokenizers are proven word-independent; DeepSeek's Split chain is not."""
    assert families["starcoder"][0].word_cache is not None
    assert families["qwen2.5-coder"][0].word_cache is not None
    assert families["deepseek-coder"][0].word_cache is None and families["deepseek-coder"][0].splits == ()
    assert all(reference.word_cache is None for _, reference, _ in families.values())


@pytest.mark.parametrize("name", ["starcoder", "qwen2.5-coder"])
@SETTINGS
@given(text=st.lists(st.one_of(hostile_text, code_slice), min_size=1, max_size=6).map("".join))
def test_every_cut_of_the_word_split_is_a_cut_of_the_pre_tokenizer(families, name, text):
    """The word cache's proof itself, independent of which merges a vocabulary happens to have: every
    place the split cuts a (normalized) text, the file's own pre-tokenizer cuts it too."""
    fast, _, raw = families[name]
    (split,) = fast.splits
    text = normalized(name, text)
    ends = list(itertools.accumulate(len(part) for part in split.unicode.findall(text)))
    assert "".join(split.unicode.findall(text)) == text
    boundaries = {end for _, (_, end) in raw.pre_tokenizer.pre_tokenize_str(text)}
    assert set(ends) <= boundaries | {0}


@pytest.mark.parametrize("name", list(FAMILIES))
@SETTINGS
@given(texts=st.lists(document, min_size=1, max_size=5))
def test_document_ids_are_the_ids_tokenizers_gives_the_whole_document(families, name, texts):
    fast, reference, raw = families[name]
    texts = [t for t in texts if without_special_text(name, t)]
    expected = [e.ids for e in raw.encode_batch(texts, add_special_tokens=False)]
    assert [ids.tolist() for ids in fast.encode_documents_fast(texts)] == expected
    assert [ids.tolist() for ids in reference.encode_documents_fast(texts)] == expected
    for text, ids in zip(texts, expected):
        assert fast.surface(ids) == normalized(name, text).encode("utf-8")


@pytest.mark.parametrize("name", list(FAMILIES))
@SETTINGS
@given(parts=st.lists(st.one_of(document, st.sampled_from(
    ["<fim_prefix>", "<|endoftext|>", "<|fim_middle|>", "<|im_start|>", "<｜fim▁hole｜>", "<tool_call>",
     "<｜begin▁of▁sentence｜>", "<file_sep>"])), min_size=1, max_size=6))
def test_literal_special_token_text_in_documents_stays_text(families, name, parts):
    """Text that spells a special token never encodes to a special id; its bytes survive, and the word cache
    agrees with whole-document encoding on it. A non-special added token (Qwen's ``<tool_call>``) is text
    that the tokenizer gives its own id, as transformers does."""
    fast, reference, raw = families[name]
    text = "".join(parts)
    special_ids = {i for i, t in raw.get_added_tokens_decoder().items() if t.special}
    (ids,) = reference.encode_documents([text])
    assert not special_ids & set(ids)
    assert fast.encode_documents_fast([text])[0].tolist() == ids
    assert fast.surface(ids) == normalized(name, text).encode("utf-8")
    assert fast.count_special_text(text) == sum(text.count(s) for s in fast.special_texts)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_long_documents_cut_for_encoding_get_the_ids_of_the_whole_text(families, name):
    fast, reference, raw = families[name]
    plain = [m for m in MULTILINGUAL if without_special_text(name, m)]
    text = normalized(name, "\n\n".join(CODE[:6]) + "".join(plain) + "   x\t\n  y" * 50)
    expected = raw.encode(text, add_special_tokens=False).ids
    for tokenizer in (fast, reference):
        for piece_chars in (7, 100, 5000):
            assert tokenizer.encode_long_document(text, piece_chars).tolist() == expected


def family_file(path: Path, change) -> bytes:
    spec = json.loads(path.read_text())
    change(spec)
    return json.dumps(spec).encode()


@pytest.mark.parametrize("change, cached", [
    (lambda spec: None, True),
    # An unknown word regex: nothing proven.
    (lambda spec: spec["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=QWEN2_REGEX + r"|\s+$"), False),
    (lambda spec: spec["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True), False),
    (lambda spec: spec.update(normalizer={"type": "NFKC"}), False),
    # An added token that a cut could fall inside.
    (lambda spec: spec["added_tokens"].append({**spec["added_tokens"][-1], "id": spec["added_tokens"][-1]["id"] + 1,
                                               "content": "a b"}), False),
])
def test_files_outside_the_proof_encode_whole_and_stay_exact(family_tokenizer_paths, change, cached):
    data = family_file(family_tokenizer_paths["qwen2.5-coder"], change)
    tokenizer = tokenizer_from_bytes(data, preset_tokenizer(data, "qwen2.5-coder").names)
    assert (tokenizer.word_cache is not None) == cached
    from tokenizers import Tokenizer

    raw = Tokenizer.from_str(data.decode())
    texts = [t[:3000] for t in CODE[:20]] + MULTILINGUAL + ["x a b y", "  a b  "]
    assert [a.tolist() for a in tokenizer.encode_documents_fast(texts)] == \
        [e.ids for e in raw.encode_batch(texts, add_special_tokens=False)]


def with_wordpiece(spec):
    spec["model"] = {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1}}


def with_dropout(spec):
    spec["model"]["dropout"] = 0.1


def without_byte(spec):
    del spec["model"]["vocab"]["Ā"]


def with_text_sentinel(spec):
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<fim_middle>"]


@pytest.mark.parametrize("change, message", [
    (with_wordpiece, "a WordPiece tokenizer.json: fimflow reads byte-level BPE ones"),
    (with_dropout, "the BPE has dropout 0.1"),
    (without_byte, "lacks 1 of the 256 byte symbols"),
])
def test_files_it_cannot_keep_exact_are_refused_saying_why(family_tokenizer_paths, change, message):
    data = family_file(family_tokenizer_paths["starcoder"], change)
    with pytest.raises(TokenizerError, match=message):
        tokenizer_from_bytes(data, preset_tokenizer(family_tokenizer_paths["starcoder"].read_bytes(),
                                                    "starcoder").names)


def tiny_corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [t[:2000] for t in CODE[:30]])


@pytest.mark.parametrize("change, extra, message", [
    (lambda spec: None, [], "lacks special tokens: fim_prefix='<fim_prefix>'"),
    (with_text_sentinel, ["--fim_format", "starcoder"], "the fim_middle token '<fim_middle>' is an ordinary text piece"),
    (lambda spec: None, ["--fim_format", "starcoder", "--bos"], "declares no BOS token"),
])
def test_the_command_line_names_the_flag_that_fixes_a_special_token(tmp_path, family_tokenizer_paths, capsys,
                                                                    change, extra, message):
    path = tmp_path / "tokenizer.json"
    source = "deepseek-coder" if not extra else "starcoder"
    path.write_bytes(family_file(family_tokenizer_paths[source], change))
    assert main(["run", "--input", str(tiny_corpus(tmp_path)), "--output", str(tmp_path / "out"),
                 "--tokenizer", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    flag = {"lacks": "--fim_prefix_token", "the fim": "--fim_middle_token", "declares": "--bos_token"}
    assert next(f for k, f in flag.items() if message.startswith(k)) in err, err


def test_a_cut_short_tokenizer_json_is_refused(tmp_path, family_tokenizer_paths, capsys):
    path = tmp_path / "tokenizer.json"
    data = family_tokenizer_paths["starcoder"].read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert main(["run", "--input", str(tiny_corpus(tmp_path)), "--output", str(tmp_path / "out"),
                 "--tokenizer", str(path), "--fim_format", "starcoder"]) == 2
    assert "not a tokenizer.json" in capsys.readouterr().err


def documents_by_bytes(texts: list[str], raw) -> list[tuple[bytes, list[int]]]:
    return [(t.encode("utf-8"), raw.encode(t, add_special_tokens=False).ids) for t in texts]


def contains(ids: list[int], part: list[int]) -> bool:
    n = len(part)
    return any(ids[i:i + n] == part for i in range(len(ids) - n + 1))


def test_a_starcoder_run_writes_the_tokenizers_ids_and_lossless_fim(tmp_path, family_tokenizer_paths):
    """``fimflow run --tokenizer tokenizer.json --fim_format starcoder`` on real code: every plain fragment is
    a run of the ids ``tokenizers`` gives its whole document, every FIM example reassembles to bytes of its
    document, and metadata.json says which backend read the file."""
    path = family_tokenizer_paths["starcoder"]
    texts = [t[:6000] for t in stdlib_sources(250_000, seed=9)]
    corpus = write_jsonl(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", str(path),
                 "--fim_format", "starcoder", "--fim_rate", "0.7", "--context_length", "512"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["tokenizer"]["backend"] == "huggingface"
    tokenizer = load_tokenizer(str(path), dataset_token_names(metadata))
    documents = documents_by_bytes(texts, raw_tokenizer(path))
    modes = set()
    for example in iter_examples(str(out)):
        segs = segments(example["input_ids"], example["segment_ids"])
        for k, seg in enumerate(segs):
            mode, parts = reassemble(tokenizer, seg, may_be_trimmed=k == len(segs) - 1, fmt=FORMATS["starcoder"])
            modes.add(mode)
            body = [t for t in seg if t != tokenizer.special.eot]
            for part in parts:
                holders = [ids for data, ids in documents if part in data]
                assert holders, (mode, part[:80])
                if mode == "plain":
                    assert any(contains(ids, body) for ids in holders)
    assert {"plain", "psm", "spm"} <= modes


def test_train_tokenizer_huggingface_makes_a_file_the_default_run_uses(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i, text in enumerate(CODE[:40]):
        (src / f"f{i}.py").write_text(text)
    model = tmp_path / "tokenizer.json"
    assert main(["train-tokenizer", "--backend", "huggingface", "--input", str(src), "--output", str(model),
                 "--vocab_size", "800"]) == 0
    tokenizer = load_tokenizer(str(model))
    assert tokenizer.backend == "huggingface" and tokenizer.vocab_size == 800 and tokenizer.word_cache is not None
    assert tokenizer.special_pieces["eot"] == "<|endoftext|>" and tokenizer.special_pieces["pad"] == "<fim_pad>"
    for fmt in ("paper", "starcoder"):
        out = tmp_path / fmt
        assert main(["run", "--input", str(src), "--output", str(out), "--tokenizer", str(model),
                     "--fim_format", fmt, "--context_length", "256"]) == 0
        assert json.loads((out / "metadata.json").read_text())["counts"]["documents"] == len(CODE[:40])
    # Repository-level pieces are special tokens of the file too.
    added = {t["content"] for t in json.loads(model.read_text())["added_tokens"] if t["special"]}
    assert {"<repo_name>", "<file_sep>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"} <= added


def test_held_out_splits_decontamination_inspect_and_report_work_with_a_tokenizer_json(tmp_path,
                                                                                       family_tokenizer_paths, capsys):
    path = family_tokenizer_paths["qwen2.5-coder"]
    texts = [t[:5000] for t in stdlib_sources(300_000, seed=11)]
    corpus = write_jsonl(tmp_path / "in.jsonl", texts)
    benchmark = tmp_path / "bench.jsonl"
    benchmark.write_text(json.dumps({"prompt": " ".join(texts[3].split()[:40])}) + "\n")
    out = tmp_path / "out"
    assert main(["run", "--input", str(corpus), "--output", str(out), "--tokenizer", str(path),
                 "--fim_format", "qwen2.5-coder", "--context_length", "512", "--validation_fraction", "0.2",
                 "--decontaminate", str(benchmark), "--eval_examples_per_task", "5"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["decontamination"]["files"][str(benchmark)]["documents_dropped"] == 1
    assert metadata["splits"]["validation"]["documents"] > 0 and list((out / "eval").glob("*.jsonl"))
    tokenizer = load_tokenizer(str(path), dataset_token_names(metadata))
    for split in ("train", "validation", "validation_ar"):
        for example in iter_examples(str(out), split=split):
            for seg in segments(example["input_ids"], example["segment_ids"]):
                _, parts = reassemble(tokenizer, seg, may_be_trimmed=True, fmt=FORMATS["qwen2.5-coder"])
                assert all(any(part in t.encode() for t in texts) for part in parts)
    capsys.readouterr()
    assert main(["inspect", str(out), "--n", "1", "--color", "never"]) == 0
    assert capsys.readouterr().out.startswith("qwen2.5-coder PSM")
    assert main(["report", str(out), "--out", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "qwen2.5-coder" in page and page.count("class=\"sentinel\"") > 0

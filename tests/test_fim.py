"""FIM on chunks: lossless reassembly, rates, determinism, sentinel safety."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fim_checks import check_lossless, reassemble, render, segments
from transforms.core.fim import fim_chunk
from transforms.core.segments import parse_segment
from transforms.schema import Chunk, FimConfig

TOKENIZERS = ["code_tokenizer", "llama_tokenizer", "lossy_tokenizer"]

unicode_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=0, max_size=300)
documents = st.lists(unicode_text.filter(lambda t: t.strip()), min_size=1, max_size=4)


def packed(tokenizer, docs) -> list[int]:
    ids = []
    for doc_ids in tokenizer.encode_documents(docs):
        ids += doc_ids + [tokenizer.special.eot]
    return ids


@pytest.mark.parametrize("tokenizer_name", TOKENIZERS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=documents, data=st.data(), seed=st.integers(0, 2**31),
       span_unit=st.sampled_from(["char", "line", "token"]))
def test_prefix_middle_suffix_reassemble_to_the_fragment_bytes(request, tokenizer_name, docs, data, seed,
                                                               span_unit):
    """P+M+S (PSM) and PM+S (SPM) are exactly the bytes of the fragment's tokens, for any cut."""
    tokenizer = request.getfixturevalue(tokenizer_name)
    ids = packed(tokenizer, docs)
    start = data.draw(st.integers(0, len(ids) - 1))
    end = data.draw(st.integers(start + 1, len(ids)))
    chunk = ids[start:end]
    config = FimConfig(context_length=len(chunk) + 4 * len(chunk) + 8, rate=1.0,
                       spm_rate=data.draw(st.sampled_from([0.0, 0.5, 1.0])), span_unit=span_unit)
    check_lossless(tokenizer, chunk, config, seed)


@pytest.mark.parametrize("tokenizer_name", ["code_tokenizer", "llama_tokenizer"])
def test_multibyte_characters_cut_by_the_chunk_boundary_stay_whole(request, tokenizer_name):
    tokenizer = request.getfixturevalue(tokenizer_name)
    ids = packed(tokenizer, ["前後 日本語 🎉🎉 конец"])
    stats = Counter()
    for start in range(len(ids)):
        for end in range(start + 1, len(ids) + 1):
            stats += check_lossless(tokenizer, ids[start:end], FimConfig(context_length=200, rate=1.0), start)
    assert stats["partial_character_edges"] > 0


@pytest.mark.parametrize("tokenizer_name", TOKENIZERS)
def test_literal_sentinel_text_never_becomes_a_special_id(request, tokenizer_name):
    tokenizer = request.getfixturevalue(tokenizer_name)
    assert len(tokenizer.special_texts) == 5
    text = "x = " + " + ".join(f"'{s}'" for s in tokenizer.special_texts)
    special = set(tokenizer.special.as_dict().values())
    assert not special & set(tokenizer.encode_documents([text])[0])
    assert tokenizer.count_special_text(text) == 5
    # Also after FIM re-encodes the pieces of that text.
    chunk = packed(tokenizer, [text])
    for seed in range(30):
        example, _ = fim_chunk(Chunk(0, seed, np.array(chunk)), seed, FimConfig(200, rate=1.0), tokenizer)
        seg = segments(example.input_ids.tolist(), example.segment_ids.tolist())[0]
        part = parse_segment(seg, tokenizer.special)
        assert not special & set(part.prefix + part.middle + part.suffix)


def test_llama_dummy_prefix_is_not_added_to_middle_or_suffix(llama_tokenizer):
    ids = packed(llama_tokenizer, ["hello world again and again"])
    modes = Counter()
    for seed in range(40):
        example, _ = fim_chunk(Chunk(0, seed, np.array(ids)), seed, FimConfig(100, rate=1.0), llama_tokenizer)
        seg = segments(example.input_ids.tolist(), example.segment_ids.tolist())[0]
        mode, parts = reassemble(llama_tokenizer, seg)
        modes[mode] += 1
        assert parts == [b" hello world again and again"]
    assert modes["psm"] and modes["spm"]


def test_output_contract_of_one_chunk(code_tokenizer):
    sp = code_tokenizer.special
    ids = packed(code_tokenizer, ["def a():\n    pass\n", "print('b')\n", "x = 1\n"])
    L = len(ids) + 10
    example, stats = fim_chunk(Chunk(3, 7, np.array(ids)), 0, FimConfig(L, rate=0.0), code_tokenizer)
    assert example.input_ids.tolist() == ids + [sp.pad] * 10
    seg = example.segment_ids.tolist()
    assert seg == sorted(seg[:len(ids)]) + [0] * 10
    assert set(seg[:len(ids)]) == {1, 2, 3}
    pos = example.positions.tolist()
    for s in (1, 2, 3):
        idx = [i for i, v in enumerate(seg) if v == s]
        assert [pos[i] for i in idx] == list(range(len(idx)))
        assert ids[idx[-1]] == sp.eot
    assert pos[len(ids):] == [0] * 10
    assert stats["padding_tokens"] == 10 and stats["fim_fragments"] == 0


def test_paper_trim_cuts_to_context_length_and_keep_middle_never_cuts_a_middle(code_tokenizer):
    docs = [f"def function_{i}(x):\n    return x * {i}\n" for i in range(12)]
    ids = packed(code_tokenizer, docs)
    L = len(ids) - 5
    paper_stats, keep_stats = Counter(), Counter()
    corpus = b"\0".join(code_tokenizer.surface(code_tokenizer.encode_documents([d])[0]) for d in docs)
    for seed in range(30):
        chunk = Chunk(0, seed, np.array(ids[:L]))
        paper, s1 = fim_chunk(chunk, seed, FimConfig(L, rate=0.9, trim="paper"), code_tokenizer)
        keep, s2 = fim_chunk(chunk, seed, FimConfig(L, rate=0.9, trim="keep_middle"), code_tokenizer)
        paper_stats += s1
        keep_stats += s2
        assert len(paper.input_ids) == len(keep.input_ids) == L
        for seg in segments(keep.input_ids.tolist(), keep.segment_ids.tolist()):
            mode, parts = reassemble(code_tokenizer, seg)
            assert mode != "truncated" and len(parts) == 1 and parts[0] in corpus
    assert paper_stats["trimmed_tokens"] > 0 and keep_stats["trimmed_tokens"] > 0
    assert keep_stats["fim_fragments_shortened_to_fit"] > 0
    # Shortening keeps the last fragment eligible: the FIM share is not biased down.
    assert keep_stats["fim_fragments"] / keep_stats["fragments"] > 0.8


def test_keep_middle_transforms_a_fragment_that_fills_the_whole_context(code_tokenizer):
    ids = packed(code_tokenizer, ["some long text " * 100])[:64]
    example, stats = fim_chunk(Chunk(0, 0, np.array(ids)), 1,
                               FimConfig(64, rate=1.0, trim="keep_middle"), code_tokenizer)
    mode, parts = reassemble(code_tokenizer, segments(example.input_ids.tolist(), example.segment_ids.tolist())[0])
    assert mode in ("psm", "spm") and render(code_tokenizer, ids).startswith(parts[0])
    assert stats["fim_fragments_shortened_to_fit"] == 1


def test_rates_match_settings(code_tokenizer):
    docs = [f"value_{i} = compute({i}, 'text {i}')\n" * (1 + i % 5) for i in range(400)]
    ids = packed(code_tokenizer, docs)
    total = Counter()
    for index, start in enumerate(range(0, len(ids), 256)):
        _, stats = fim_chunk(Chunk(0, index, np.array(ids[start:start + 256])), 5,
                             FimConfig(300, rate=0.7, spm_rate=0.3), code_tokenizer)
        total += stats
    n = total["fragments"]
    assert n > 300
    # Binomial 4-sigma bounds.
    assert abs(total["fim_fragments"] / n - 0.7) < 4 * (0.7 * 0.3 / n) ** 0.5
    f = total["fim_fragments"]
    assert abs(total["spm_fragments"] / f - 0.3) < 4 * (0.3 * 0.7 / f) ** 0.5
    assert total["psm_fragments"] + total["spm_fragments"] == f


def test_same_chunk_identity_gives_same_bytes_and_another_differs(code_tokenizer):
    ids = np.array(packed(code_tokenizer, ["alpha beta gamma delta\n" * 20, "epsilon zeta\n" * 10]))
    config = FimConfig(512, rate=1.0)
    a, _ = fim_chunk(Chunk(1, 2, ids), 9, config, code_tokenizer)
    b, _ = fim_chunk(Chunk(1, 2, ids), 9, config, code_tokenizer)
    c, _ = fim_chunk(Chunk(1, 3, ids), 9, config, code_tokenizer)
    d, _ = fim_chunk(Chunk(1, 2, ids), 10, config, code_tokenizer)
    assert a.input_ids.tobytes() == b.input_ids.tobytes()
    assert a.input_ids.tobytes() != c.input_ids.tobytes()
    assert a.input_ids.tobytes() != d.input_ids.tobytes()


def test_line_spans_cut_only_at_line_starts(code_tokenizer):
    text = "first line\nsecond line\nthird line\nfourth\n"
    ids = packed(code_tokenizer, [text])
    for seed in range(40):
        example, _ = fim_chunk(Chunk(0, seed, np.array(ids)), seed,
                               FimConfig(100, rate=1.0, spm_rate=0.0, span_unit="line"), code_tokenizer)
        part = parse_segment(segments(example.input_ids.tolist(), example.segment_ids.tolist())[0],
                             code_tokenizer.special)
        prefix = render(code_tokenizer, part.prefix)
        middle = render(code_tokenizer, part.middle)
        assert prefix == b"" or prefix.endswith(b"\n")
        assert middle == b"" or (prefix + middle).endswith(b"\n")


def test_max_middle_tokens_caps_the_middle_and_keeps_the_bytes(code_tokenizer):
    ids = packed(code_tokenizer, ["word " * 200])
    for seed in range(20):
        config = FimConfig(2000, rate=1.0, spm_rate=0.0, max_middle_tokens=5)
        check_lossless(code_tokenizer, ids, config, seed)
        example, _ = fim_chunk(Chunk(0, seed, np.array(ids)), seed, config, code_tokenizer)
        part = parse_segment(segments(example.input_ids.tolist(), example.segment_ids.tolist())[0],
                             code_tokenizer.special)
        assert len(part.middle) <= 5


def test_min_fragment_tokens_leaves_short_fragments_plain(code_tokenizer):
    ids = packed(code_tokenizer, ["a", "longer document with many tokens in it " * 3])
    example, stats = fim_chunk(Chunk(0, 0, np.array(ids)), 0,
                               FimConfig(200, rate=1.0, min_fragment_tokens=5), code_tokenizer)
    modes = [parse_segment(s, code_tokenizer.special).mode
             for s in segments(example.input_ids.tolist(), example.segment_ids.tolist())]
    assert modes[0] == "plain" and modes[1] in ("psm", "spm")


@pytest.mark.parametrize("tokenizer_name", ["code_tokenizer", "llama_tokenizer"])
def test_document_level_fim_reassembles_the_document(request, tokenizer_name):
    from transforms.core.fim import fim_document
    from transforms.core.hashing import content_hash
    from transforms.schema import TokenizedDocument

    tokenizer = request.getfixturevalue(tokenizer_name)
    modes = Counter()
    for i in range(30):
        text = f"document {i}: 日本語 🎉 " + "x = y + z\n" * (i + 1)
        ids = np.array(tokenizer.encode_documents([text])[0], dtype=np.int32)
        doc, stats = fim_document(TokenizedDocument(content_hash(text), ids), 2,
                                  FimConfig(64, rate=0.8), tokenizer)
        mode, parts = reassemble(tokenizer, doc.ids.tolist())
        modes[mode] += 1
        assert parts == [render(tokenizer, ids.tolist())]
        assert stats["fim_candidates"] == 1 and stats["fim_fragments"] == (mode != "plain")
    assert modes["plain"] and modes["psm"] and modes["spm"]


@pytest.mark.parametrize("tokenizer_name, model_name", [("code_tokenizer", "code_model_bytes"),
                                                        ("llama_tokenizer", "llama_model_bytes")])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=documents, data=st.data(), seed=st.integers(0, 2**31),
       span_unit=st.sampled_from(["char", "line"]))
def test_reencoding_only_the_words_at_the_cuts_equals_a_full_reencode(request, tokenizer_name, model_name,
                                                                     docs, data, seed, span_unit):
    from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer
    from transforms.core.tokenizer import SpecialTokenNames

    fast = request.getfixturevalue(tokenizer_name)
    assert fast.encodes_words_independently
    full = SentencePieceTokenizer(request.getfixturevalue(model_name), SpecialTokenNames(), reference=True)
    words = st.lists(st.sampled_from(["def", "x", "  ", " ", "\n", "日本", "é", "🎉", "(a, b)", "    "]),
                     max_size=60).map("".join)
    docs = docs + [data.draw(words).strip() or "x"]
    ids = packed(fast, docs)
    start = data.draw(st.integers(0, len(ids) - 1))
    chunk = np.array(ids[start:data.draw(st.integers(start + 1, len(ids)))])
    config = FimConfig(context_length=len(chunk) + 64, rate=1.0, span_unit=span_unit)
    a, _ = fim_chunk(Chunk(0, 0, chunk), seed, config, fast)
    b, _ = fim_chunk(Chunk(0, 0, chunk), seed, config, full)
    assert a.input_ids.tolist() == b.input_ids.tolist()


def test_models_that_merge_across_words_are_reencoded_whole(lossy_tokenizer):
    assert not lossy_tokenizer.encodes_words_independently


@pytest.mark.parametrize("tokenizer_name, model_name", [("code_tokenizer", "code_model_bytes"),
                                                        ("llama_tokenizer", "llama_model_bytes")])
def test_local_reencoding_equals_full_reencoding_on_real_code(request, tokenizer_name, model_name):
    from tests.corpora import multilingual_documents, stdlib_sources
    from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer
    from transforms.core.tokenizer import SpecialTokenNames

    fast = request.getfixturevalue(tokenizer_name)
    full = SentencePieceTokenizer(request.getfixturevalue(model_name), SpecialTokenNames(), reference=True)
    ids = packed(fast, stdlib_sources(150_000, seed=9) + multilingual_documents(20, seed=9))
    for index, start in enumerate(range(0, len(ids), 97)):
        chunk = Chunk(0, index, np.array(ids[start:start + 300]))
        config = FimConfig(400, rate=1.0, span_unit="line" if index % 3 == 0 else "char")
        a, _ = fim_chunk(chunk, 1, config, fast)
        b, _ = fim_chunk(chunk, 1, config, full)
        assert a.input_ids.tolist() == b.input_ids.tolist(), index


@pytest.mark.parametrize("tokenizer_name", ["code_tokenizer", "llama_tokenizer"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(st.sampled_from(["def", "x", " ", "  ", "\n", "\t", "日本", "é", "🎉", "(a, b)", "__init__",
                                      "0123", "<fim_middle>"]), max_size=40).map("".join))
def test_words_encode_independently_where_the_tokenizer_says_so(request, tokenizer_name, text):
    """The property that local re-encoding relies on, checked on the model itself."""
    import re

    tokenizer = request.getfixturevalue(tokenizer_name)
    assert tokenizer.encodes_words_independently
    words = [w for w in re.split(r"(?<=[^ ])(?= )", text) if w]
    assert tokenizer.encode_fragments([text])[0].tolist() == [i for w in words for i in tokenizer.encode_fragments([w])[0]]


@pytest.mark.parametrize("context_length", [48, 64, 200])
def test_document_level_fim_counts_each_example_cut_by_packing_once(code_tokenizer, context_length):
    from transforms.core.fim import fim_document
    from transforms.core.hashing import content_hash
    from transforms.core.packing import pack_bucket
    from transforms.schema import TokenizedDocument
    from tests.corpora import stdlib_sources

    texts = [t[:rng_len] for t, rng_len in zip(stdlib_sources(200_000, seed=3), range(30, 3000, 97))]
    config = FimConfig(context_length, rate=0.7, level="document")
    docs = [fim_document(TokenizedDocument(content_hash(t), ids), 5, config, code_tokenizer)[0]
            for t, ids in zip(texts, code_tokenizer.encode_documents_fast(texts))]
    # Ground truth from the packed stream: an example is cut when a chunk boundary falls inside it
    # (its <eot> included).
    expected, start = 0, 0
    for doc in docs:
        end = start + len(doc.ids) + 1
        is_fim = doc.ids[0] == code_tokenizer.special.fim_prefix
        expected += is_fim and (start // context_length) != ((end - 1) // context_length)
        start = end
    chunks = list(pack_bucket(0, docs, context_length, code_tokenizer.special.eot))
    counted = sum(fim_chunk(c, 5, config, code_tokenizer)[1]["document_fim_examples_cut"] for c in chunks)
    assert expected > 0 and counted == expected

"""The word cache gives exactly SentencePiece's ids, and is used only where that is provable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from tests.corpora import MULTILINGUAL, as_lists, multilingual_documents, stdlib_sources, tokenizer_texts, train_sentencepiece
from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer
from transforms.core.tokenizer import SpecialTokenNames
from transforms.core.word_cache import ARRAY_MIN_CHARS, ATOM, WORD, WordCache

def test_the_code_models_use_both_split_levels(code_tokenizer, llama_tokenizer, lossy_tokenizer):
    # Otherwise the equality tests below would not exercise the atom level.
    assert code_tokenizer.word_cache._levels[0][0] is WORD
    assert [p for p, _ in code_tokenizer.word_cache._levels] == [WORD, ATOM]
    assert [p for p, _ in llama_tokenizer.word_cache._levels] == [WORD, ATOM]
    assert lossy_tokenizer.word_cache is None


@pytest.mark.parametrize("name", ["code_tokenizer", "llama_tokenizer"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(tokenizer_texts, min_size=1, max_size=6))
def test_cached_encoding_equals_sentencepiece(request, name, batch):
    tokenizer = request.getfixturevalue(name)
    expected = tokenizer.encode_documents(batch)
    assert as_lists(tokenizer.encode_documents_fast(batch)) == expected
    assert as_lists(tokenizer.encode_documents_fast(batch, num_threads=2)) == expected  # now from the cache
    assert as_lists(tokenizer.encode_fragments(batch)) == tokenizer.fragment_encoder.encode(batch)


@pytest.mark.parametrize("name", ["code_tokenizer", "llama_tokenizer"])
def test_cached_encoding_equals_sentencepiece_on_real_code_and_text(request, name, code_model_bytes):
    tokenizer = request.getfixturevalue(name)
    docs = stdlib_sources(400_000, seed=3) + multilingual_documents(30, seed=3) + MULTILINGUAL + ["", " ", "x"]
    assert as_lists(tokenizer.encode_documents_fast(docs, num_threads=2)) == tokenizer.encode_documents(docs)


@pytest.mark.parametrize("array_min_chars", [0, ARRAY_MIN_CHARS, 1 << 30])
def test_small_caches_start_over_and_stay_exact(llama_tokenizer, array_min_chars):
    levels = tuple(p for p, _ in llama_tokenizer.word_cache._levels)
    cache = WordCache(llama_tokenizer.continuation_encoder, levels, np.int32, max_words=50, max_word_chars=3,
                      array_min_chars=array_min_chars)
    docs = stdlib_sources(60_000, seed=5) + MULTILINGUAL
    for start in range(0, len(docs), 4):
        batch = docs[start:start + 4]
        assert as_lists(cache.encode([" " + d for d in batch])) == llama_tokenizer.encode_documents(batch)
        assert all(n <= 50 for n in cache.cached())


# Few characters, so that words repeat within and across calls and, with
# narrowed hashes, different words of every length share a key.
_ascii_words = st.text(alphabet="ab _(\n", max_size=40)


@pytest.mark.parametrize("key_bits", [1, 2, 64])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.lists(st.one_of(_ascii_words, tokenizer_texts), min_size=1, max_size=5), min_size=1,
                      max_size=4))
def test_the_array_path_gives_sentencepiece_ids_even_when_hashes_collide(code_tokenizer, key_bits, calls):
    encoder = code_tokenizer.continuation_encoder
    cache = WordCache(encoder, (WORD, ATOM), np.int32, max_words=40, max_word_chars=6, array_min_chars=0,
                      key_bits=key_bits)
    for texts in calls + calls:  # the second time from the cache
        assert as_lists(cache.encode(texts)) == encoder.encode(texts)


def test_the_array_path_takes_large_ascii_calls_and_is_exact_on_real_code(code_tokenizer):
    encoder = code_tokenizer.continuation_encoder
    cache = WordCache(encoder, (WORD, ATOM), np.int32)
    docs = stdlib_sources(300_000, seed=11)
    small = [d for d in docs if len(d) < ARRAY_MIN_CHARS // 2][:1]
    assert as_lists(cache.encode(small)) == encoder.encode(small)
    assert cache._arrays.cached() == [0, 0]  # a small call took the dicts
    assert as_lists(cache.encode(docs + MULTILINGUAL)) == encoder.encode(docs + MULTILINGUAL)
    assert min(cache._arrays.cached()) > 0
    assert as_lists(cache.encode(docs)) == encoder.encode(docs)


@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_the_ascii_regexes_split_ascii_text_as_the_unicode_ones_do(text):
    for split in (WORD, ATOM):
        parts = split.ascii.findall(text)
        assert parts == split.unicode.findall(text)
        assert "".join(parts) == text
        # The array path's cuts: where each part but the first starts.
        cuts = split.ascii_cuts(np.frombuffer(text.encode(), dtype=np.uint8))
        assert np.flatnonzero(cuts).tolist() == np.cumsum([len(p) for p in parts[:-1]]).tolist()


def _with_piece(model_bytes: bytes, piece: str) -> bytes:
    proto = model_pb2.ModelProto.FromString(model_bytes)
    proto.pieces.add(piece=piece, score=0.0, type=model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return proto.SerializeToString()


@pytest.mark.parametrize("piece, levels", [("f(", [WORD]), ("x_y", [WORD]), ("a\u2581b", None)])
def test_a_piece_across_a_cut_turns_that_split_off(code_model_bytes, piece, levels):
    tokenizer = SentencePieceTokenizer(_with_piece(code_model_bytes, piece), SpecialTokenNames())
    assert (tokenizer.word_cache and [p for p, _ in tokenizer.word_cache._levels]) == levels
    docs = ["def f(x_y): return a b", "  f(f(x_y_z)) a b a\u2581b"]
    assert as_lists(tokenizer.encode_documents_fast(docs)) == tokenizer.encode_documents(docs)
    # The piece does cross the cut: splitting there anyway would change the ids.
    forced = WordCache(tokenizer.continuation_encoder, (WORD, ATOM), np.int32)
    assert as_lists(forced.encode(docs)) != tokenizer.encode_documents(docs)


def test_without_byte_fallback_unknown_characters_keep_atoms_off(training_text):
    model = train_sentencepiece(training_text, model_type="bpe", vocab_size=800, byte_fallback=False,
                   normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
                   control_symbols=["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
                   character_coverage=0.98)
    tokenizer = SentencePieceTokenizer(model, SpecialTokenNames())
    assert [p for p, _ in tokenizer.word_cache._levels] == [WORD]
    # Neither is in the training text: a letter and a symbol, both <unk>.
    docs = ["x鑫䷀ 鑫 y", "鑫_䷀鑫 ䷀"]
    expected = tokenizer.encode_documents(docs)
    assert as_lists(tokenizer.encode_documents_fast(docs)) == expected
    # SentencePiece makes adjacent unknown characters one <unk>, across any cut.
    forced = WordCache(tokenizer.continuation_encoder, (WORD, ATOM), np.int32)
    assert as_lists(forced.encode(docs)) != expected


# Words of at most 6 characters between single spaces: every window of 8
# characters holds a word cut, so no piece of a long document ends elsewhere.
_short_words = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \u2581"),
                                min_size=1, max_size=6), min_size=1, max_size=60).map(" ".join)


@pytest.mark.parametrize("name", ["code_tokenizer", "llama_tokenizer"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_short_words)
def test_long_documents_cut_at_words_encode_as_a_whole(request, name, text):
    tokenizer = request.getfixturevalue(name)
    assert tokenizer.encode_long_document(text, 8).tolist() == tokenizer.encode_documents([text])[0]


def test_long_real_documents_cut_at_words_encode_as_a_whole(code_tokenizer):
    text = "".join(stdlib_sources(200_000, seed=9)) + "".join(MULTILINGUAL)
    assert code_tokenizer.encode_long_document(text, 5000).tolist() == code_tokenizer.encode_documents([text])[0]

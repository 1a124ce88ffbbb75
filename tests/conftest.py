"""Shared fixtures: real SentencePiece models and Hugging Face tokenizer.json files trained here, and corpora
made here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.train_tokenizer import train_code_tokenizer
from tests import emulator_auth
from tests.corpora import MULTILINGUAL, multilingual_documents, stdlib_sources, train_sentencepiece, write_jsonl
from tests.huggingface_families import FAMILIES, train_family_tokenizer
from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer
from transforms.core.tokenizer import SpecialTokenNames, Tokenizer


@pytest.fixture(scope="session")
def training_text() -> list[str]:
    return stdlib_sources(1_500_000) + MULTILINGUAL * 20


@pytest.fixture(scope="session")
def code_model_bytes(training_text) -> bytes:
    """A lossless code model from ``fimflow train-tokenizer``'s own trainer."""
    return train_code_tokenizer(training_text, vocab_size=2000)


@pytest.fixture(scope="session")
def llama_model_bytes(training_text) -> bytes:
    """A Llama-style model: dummy prefix, byte fallback, sentinels as user-defined symbols."""
    return train_sentencepiece(training_text, model_type="bpe", vocab_size=2000, byte_fallback=True,
                  add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
                  user_defined_symbols=["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
                  character_coverage=0.9995)


@pytest.fixture(scope="session")
def lossy_model_bytes(training_text) -> bytes:
    """A T5-style lossy model: NFKC normalization, whitespace folding, no byte fallback."""
    return train_sentencepiece(training_text, model_type="unigram", vocab_size=1500, byte_fallback=False,
                  normalization_rule_name="nmt_nfkc",
                  control_symbols=["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
                  character_coverage=0.98)


@pytest.fixture(scope="session")
def family_tokenizer_paths(tmp_path_factory, training_text) -> dict:
    """A tokenizer.json of each Hugging Face family (``tests.huggingface_families``), by preset name."""
    root = tmp_path_factory.mktemp("huggingface")
    paths = {}
    for name in FAMILIES:
        paths[name] = root / name / "tokenizer.json"
        paths[name].parent.mkdir()
        paths[name].write_bytes(train_family_tokenizer(name, training_text))
    return paths


@pytest.fixture(scope="session")
def code_tokenizer(code_model_bytes) -> Tokenizer:
    return SentencePieceTokenizer(code_model_bytes, SpecialTokenNames())


@pytest.fixture(scope="session")
def llama_tokenizer(llama_model_bytes) -> Tokenizer:
    return SentencePieceTokenizer(llama_model_bytes, SpecialTokenNames())


@pytest.fixture(scope="session")
def lossy_tokenizer(lossy_model_bytes) -> Tokenizer:
    return SentencePieceTokenizer(lossy_model_bytes, SpecialTokenNames())


@pytest.fixture(scope="session")
def code_model_path(tmp_path_factory, code_model_bytes) -> str:
    path = tmp_path_factory.mktemp("models") / "code.model"
    path.write_bytes(code_model_bytes)
    return str(path)


@pytest.fixture(scope="session")
def llama_model_path(tmp_path_factory, llama_model_bytes) -> str:
    path = tmp_path_factory.mktemp("models") / "llama.model"
    path.write_bytes(llama_model_bytes)
    return str(path)


@pytest.fixture(scope="session")
def jsonl_corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """A real code corpus (stdlib sources) mixed with multilingual text, as two JSONL files."""
    docs = stdlib_sources(300_000, seed=1) + multilingual_documents(40, seed=1)
    root = tmp_path_factory.mktemp("corpus")
    write_jsonl(root / "part-0.jsonl", docs[::2])
    write_jsonl(root / "part-1.jsonl", docs[1::2])
    return root, docs


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every process the tests start imports tests/startup/sitecustomize.py first: the emulator configuration.
STARTUP = str(Path(__file__).resolve().parent / "startup")
os.environ["PYTHONPATH"] = os.pathsep.join([STARTUP, *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session")
def gcs():
    """A Cloud Storage emulator for the session, with google-cloud-storage pointed at it."""
    from tests.gcs_emulator import GcsEmulator

    emulator = GcsEmulator("fimflow-test")
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
    os.environ["GOOGLE_CLOUD_PROJECT"] = "fimflow-test"
    emulator_auth.install()
    yield emulator
    emulator.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def lossy_model_path(tmp_path_factory, lossy_model_bytes) -> str:
    path = tmp_path_factory.mktemp("models") / "lossy.model"
    path.write_bytes(lossy_model_bytes)
    return str(path)

"""Shared fixtures: real SentencePiece models trained here, and corpora made here."""

from __future__ import annotations

import io
import json
import os
import random
import sysconfig
from pathlib import Path

import pytest
import sentencepiece as spm

from pipeline.train_tokenizer import train_code_tokenizer
from tests import emulator_auth
from transforms.core.tokenizer import SpecialTokenNames, Tokenizer

# Text in several scripts so that byte fallback, multi-byte characters split
# at chunk boundaries and emoji are exercised by every corpus built here.
MULTILINGUAL = [
    "日本語のテキストです。東京は大きい都市です。",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "emoji 🎉🚀👩‍💻 and flags 🇩🇪 mixed with ascii",
    "한국어 문장과 中文句子 and Ελληνικά γράμματα",
    "def grüße(name: str) -> str:\n    return f\"Grüß Gott, {name}! ✓\"\n",
    "tabs\tand  double  spaces   and trailing   \n\n\nblank lines",
    "literal sentinels <fim_prefix> <fim_middle> <fim_suffix> <fim_pad> </s> <eot> in code",
]


def stdlib_sources(limit_bytes: int, seed: int = 0) -> list[str]:
    """Real Python source from the running interpreter, about ``limit_bytes`` of it."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py"))
    random.Random(seed).shuffle(files)
    docs, size = [], 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        docs.append(text)
        size += len(text)
        if size >= limit_bytes:
            break
    return docs


def multilingual_documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    code = stdlib_sources(200_000, seed)
    docs = []
    for i in range(n):
        parts = rng.sample(MULTILINGUAL, 3) + [rng.choice(code)[: rng.randint(50, 3000)]]
        rng.shuffle(parts)
        docs.append("\n".join(parts))
    return docs


@pytest.fixture(scope="session")
def training_text() -> list[str]:
    return stdlib_sources(1_500_000) + MULTILINGUAL * 20


@pytest.fixture(scope="session")
def code_model_bytes(training_text) -> bytes:
    """A lossless code model from ``fimflow train-tokenizer``'s own trainer."""
    return train_code_tokenizer(training_text, vocab_size=2000)


def _train(texts: list[str], **settings) -> bytes:
    """A SentencePiece model trained on the lines of ``texts`` by SentencePiece's own trainer."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for t in texts for line in t.splitlines() if line.strip()]),
        model_writer=model, minloglevel=2, **settings)
    return model.getvalue()


@pytest.fixture(scope="session")
def llama_model_bytes(training_text) -> bytes:
    """A Llama-style model: dummy prefix, byte fallback, sentinels as user-defined symbols."""
    return _train(training_text, model_type="bpe", vocab_size=2000, byte_fallback=True,
                  add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
                  user_defined_symbols=["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
                  character_coverage=0.9995)


@pytest.fixture(scope="session")
def lossy_model_bytes(training_text) -> bytes:
    """A T5-style lossy model: NFKC normalization, whitespace folding, no byte fallback."""
    return _train(training_text, model_type="unigram", vocab_size=1500, byte_fallback=False,
                  normalization_rule_name="nmt_nfkc",
                  control_symbols=["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
                  character_coverage=0.98)


@pytest.fixture(scope="session")
def code_tokenizer(code_model_bytes) -> Tokenizer:
    return Tokenizer(code_model_bytes, SpecialTokenNames())


@pytest.fixture(scope="session")
def llama_tokenizer(llama_model_bytes) -> Tokenizer:
    return Tokenizer(llama_model_bytes, SpecialTokenNames())


@pytest.fixture(scope="session")
def lossy_tokenizer(lossy_model_bytes) -> Tokenizer:
    return Tokenizer(lossy_model_bytes, SpecialTokenNames())


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


def write_jsonl(path: Path, docs: list[str], field: str = "content") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({field: doc, "id": f"doc-{i}"}, ensure_ascii=False) + "\n")
    return path


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


def require(tool: str) -> str:
    """The installed tool's path. Where CI sets ``FIMFLOW_REQUIRE_TOOLS=1`` a missing tool fails the test;
    elsewhere the test skips."""
    import shutil

    path = shutil.which(tool)
    if path is None:
        if os.environ.get("FIMFLOW_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{tool} is not installed; this check needs it")
        pytest.skip(f"{tool} is not installed")
    return path

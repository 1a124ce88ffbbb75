"""Text and models the tests make here: real code, text in many scripts, SentencePiece models
trained by SentencePiece's own trainer, and the hypothesis strategy of tokenizer-hostile text."""

from __future__ import annotations

import io
import json
import random
import sysconfig
from pathlib import Path

import sentencepiece as spm
from hypothesis import strategies as st

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


def train_sentencepiece(texts: list[str], **settings) -> bytes:
    """A SentencePiece model trained on the lines of ``texts`` by SentencePiece's own trainer."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for t in texts for line in t.splitlines() if line.strip()]),
        model_writer=model, minloglevel=2, **settings)
    return model.getvalue()


def write_jsonl(path: Path, docs: list[str], field: str = "content") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({field: doc, "id": f"doc-{i}"}, ensure_ascii=False) + "\n")
    return path


# Every kind of cut the splits make, and characters around them: spaces before
# and after words, "_" next to letters and punctuation, digits, letters of
# other scripts, emoji, control characters, literal sentinels.
_PIECES = ["def", "x", "_", "__init__", " ", "  ", "\n", "\t", "(", ").", "0123", "日本", "é", "🎉", "€",
           "a_b", "self.x", "<fim_middle>", "\x00", "ß", "٣", "\u2581"]
tokenizer_texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=4)), max_size=30).map("".join)


def as_lists(arrays) -> list[list[int]]:
    """Arrays of ids as the lists SentencePiece returns, to compare with them."""
    return [a.tolist() for a in arrays]

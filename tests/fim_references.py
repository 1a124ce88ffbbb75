"""What the FIM-format reference tests share: a preset's tokenizer, the segment fimflow makes of given
parts, the hypothesis strategy of those parts, and the Mistral v3 model that mistral-common ships."""

from __future__ import annotations

import os

import mistral_common
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import transforms.core.fim as fim_module
from tests.corpora import stdlib_sources
from transforms.core.fim import fim_chunk
from transforms.core.fim_format import FORMATS, special_token_names
from transforms.core.tokenizer import Tokenizer, default_bos_piece, tokenizer_from_bytes
from transforms.schema import Chunk, FimConfig

MISTRAL_V3_MODEL = os.path.join(os.path.dirname(mistral_common.__file__), "data",
                                "mistral_instruct_tokenizer_240323.model.v3")


def preset_tokenizer(model: bytes, fmt_name: str) -> Tokenizer:
    fmt = FORMATS[fmt_name]
    names = special_token_names(fmt, {}, (fmt.pieces.get("bos") or default_bos_piece(model)) if fmt.bos else None)
    return tokenizer_from_bytes(model, names)



def fimflow_example(tokenizer: Tokenizer, fmt_name: str, prefix: str, middle: str, suffix: str,
                    spm_order: bool, continued: bool = False) -> list[int]:
    """The segment ``fim_chunk`` makes of the document prefix+middle+suffix cut at its two boundaries;
    ``continued``: of that text continuing a document begun in an earlier context (no BOS, no dummy prefix)."""
    document = prefix + middle + suffix
    sp = tokenizer.special
    if continued:
        ids = tokenizer.encode_fragments([document])[0].tolist()
        chunk = ids + [sp.eot]
    else:
        ids = tokenizer.encode_documents([document])[0]
        chunk = ([sp.bos] if sp.bos is not None else []) + ids + [sp.eot]
    # The document encoder's dummy prefix is a character of the fragment, in front of the prefix.
    chars = len(tokenizer.surface(ids).decode("utf-8"))
    offset = chars - len(document)
    cuts = offset + len(prefix), offset + len(prefix) + len(middle)
    draws = fim_module._Draws(*((c + 0.5) / (chars + 1) for c in cuts), spm_order)
    config = FimConfig(context_length=len(chunk) * 3 + 8, rate=1.0, format=fmt_name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fim_module, "_draw", lambda rng, config: draws)
        example, stats = fim_chunk(Chunk(0, 0, np.array(chunk)), 0, config, tokenizer)
    assert stats["fim_fragments"] == 1
    return example.input_ids[example.segment_ids == 1].tolist()


SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
# Text a reference tokenizer treats as text: no '<'/'>' (transformers splits special-token strings out of
# text) and no '▁' (CodeLlamaTokenizer rewrites it to a space).
part_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="<>\u2581"), max_size=40)
CODE = [line for doc in stdlib_sources(200_000, seed=3) for line in doc.splitlines(keepends=True)
        if "<" not in line and ">" not in line][:400]


@st.composite
def document_parts(draw, nonempty_prefix: bool, nonempty_suffix: bool) -> tuple[str, str, str]:
    """(prefix, middle, suffix): arbitrary text or real code cut at arbitrary characters."""
    if draw(st.booleans()):
        start = draw(st.integers(0, len(CODE) - 8))
        text = "".join(CODE[start:start + draw(st.integers(1, 8))])
        i, j = sorted(draw(st.integers(0, len(text))) for _ in range(2))
        parts = text[:i], text[i:j], text[j:]
    else:
        parts = draw(part_text), draw(part_text), draw(part_text)
    if (nonempty_prefix and not parts[0]) or (nonempty_suffix and not parts[2]):
        parts = (parts[0] or "x", parts[1], parts[2] or "\n")
    # fimflow transforms no empty document (nor reads one).
    return parts if any(parts) else ("", "x", "")

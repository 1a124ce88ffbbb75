"""What the FIM-format reference tests share: a preset's tokenizer, the segment fimflow makes of given
parts, and the Mistral v3 model that mistral-common ships."""

from __future__ import annotations

import os

import mistral_common
import numpy as np
import pytest

import transforms.core.fim as fim_module
from transforms.core.fim import fim_chunk
from transforms.core.fim_format import FORMATS, special_token_names
from transforms.core.tokenizer import Tokenizer, model_bos_piece
from transforms.schema import Chunk, FimConfig

MISTRAL_V3_MODEL = os.path.join(os.path.dirname(mistral_common.__file__), "data",
                                "mistral_instruct_tokenizer_240323.model.v3")


def preset_tokenizer(model: bytes, fmt_name: str) -> Tokenizer:
    fmt = FORMATS[fmt_name]
    names = special_token_names(fmt, {}, model_bos_piece(model) if fmt.bos else None)
    return Tokenizer(model, names)



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

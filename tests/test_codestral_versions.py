"""The ``codestral`` preset against ``mistral-common``'s ``encode_fim`` in each release users run.

Every release from 1.3 to the newest the registry serves encodes a FIM request the same way (the prefix
as ``tokenizer.encode(prompt, bos=False, eos=False)``, the suffix and the middle through
``_encode_infilling``), so the preset matches each of them id for id where the prefix starts a
document, which is what an editor sends (the file from its start to the cursor). A prefix that
continues a document from the context before gets SentencePiece's dummy-prefix space from
``encode``: a space the source does not have. fimflow keeps the source's bytes there; this test pins
exactly that difference, one added leading space and nothing else, in every release, so a release that
changes the encoding fails here. Each release is installed by pip into its own folder at test time and
run in its own process.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpora import stdlib_sources
from tests.fim_references import MISTRAL_V3_MODEL, fimflow_example, preset_tokenizer

pytestmark = pytest.mark.slow

RELEASES = ("1.3.4", "1.5.6", "1.8.8", "1.11.7", "1.13.1")

REFERENCE = """
import json, sys
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
try:
    from mistral_common.protocol.fim.request import FIMRequest
except ImportError:  # before 1.5
    from mistral_common.tokens.instruct.request import FIMRequest
tokenizer = MistralTokenizer.from_file(sys.argv[1])
instruct = tokenizer.instruct_tokenizer
out = []
for prefix, middle, suffix in json.load(sys.stdin):
    out.append({"prompt": tokenizer.encode_fim(FIMRequest(prompt=prefix, suffix=suffix)).tokens,
                "middle": instruct._encode_infilling(middle), "suffix": instruct._encode_infilling(suffix),
                "eos": instruct.tokenizer.eos_id, "bos": instruct.tokenizer.bos_id})
json.dump({"version": __import__("mistral_common").__version__, "cases": out}, sys.stdout)
"""


def cases() -> list[tuple[str, str, str]]:
    """(prefix, middle, suffix) of real code cut at random characters, prefix and suffix non-empty."""
    rng = random.Random(29)
    result = []
    for text in stdlib_sources(400_000, seed=29):
        text = text[:600]
        if "<" in text or ">" in text or len(text) < 20:
            continue
        i, j = sorted(rng.sample(range(1, len(text)), 2))
        result.append((text[:i], text[i:j], text[j:]))
    return result[:60] + [(" leading space", "x", "\n"), ("\n    indented", "return 1", "\n"), ("é", "λ", "日本")]


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict:
    """Each release's encoding of every case, from its own installation."""
    parts = cases()
    result = {}
    for release in RELEASES:
        folder = tmp_path_factory.mktemp(f"mistral-common-{release}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--target", str(folder), f"mistral-common=={release}"], check=True, capture_output=True,
                       timeout=600)
        run = subprocess.run([sys.executable, "-c", REFERENCE, MISTRAL_V3_MODEL], input=json.dumps(parts),
                             capture_output=True, text=True, env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        answer = json.loads(run.stdout)
        assert answer["version"] == release
        result[release] = answer["cases"]
    return {"parts": parts, "releases": result}


@pytest.fixture(scope="module")
def tokenizer():
    return preset_tokenizer(Path(MISTRAL_V3_MODEL).read_bytes(), "codestral")


@pytest.mark.parametrize("release", RELEASES)
def test_a_prefix_at_a_document_start_matches_encode_fim_id_for_id(references, tokenizer, release):
    for (prefix, middle, suffix), reference in zip(references["parts"], references["releases"][release]):
        expected = reference["prompt"] + reference["middle"] + [reference["eos"]]
        assert fimflow_example(tokenizer, "codestral", prefix, middle, suffix, False) == expected, (prefix, release)


@pytest.mark.parametrize("release", RELEASES)
def test_a_prefix_continuing_a_document_differs_from_encode_fim_by_its_dummy_space_only(references, tokenizer,
                                                                                        release):
    sp = tokenizer.special
    for (prefix, middle, suffix), reference in zip(references["parts"], references["releases"][release]):
        (prefix_ids,) = tokenizer.encode_fragments([prefix])
        (spaced_ids,) = tokenizer.encode_fragments([" " + prefix])
        # The reference: BOS, [SUFFIX] S [PREFIX], then the prefix encoded with one space in front.
        assert reference["prompt"] == [reference["bos"], sp.fim_suffix, *reference["suffix"], sp.fim_prefix,
                                       *spaced_ids.tolist()], (prefix, release)
        # fimflow: the same layout, without BOS (the document started in an earlier context), the prefix's
        # own bytes.
        assert fimflow_example(tokenizer, "codestral", prefix, middle, suffix, False, continued=True) == [
            sp.fim_suffix, *reference["suffix"], sp.fim_prefix, *prefix_ids.tolist(), *reference["middle"],
            reference["eos"]], (prefix, release)
        assert tokenizer.surface(prefix_ids) == prefix.encode()

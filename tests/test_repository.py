"""Repository-level packing: every file intact and in order, FIM inside one file, deterministic."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.inspect_dataset import iter_examples
from pipeline.inspect_dataset import special_token_names as dataset_token_names
from tests.fim_checks import segments
from transforms.core.fim_format import FORMATS, SENTINEL_ROLES, special_token_names
from transforms.core.packing import pack_bucket
from transforms.core.segments import parse_repository_segment
from transforms.core.sentencepiece_tokenizer import SentencePieceTokenizer
from transforms.core.tokenizer import Tokenizer, tokenizer_from_bytes
from transforms.schema import TokenizedDocument

STDLIB = Path(json.__file__).parent.parent
PACKAGES = ["json", "http", "email/mime", "urllib", "wsgiref", "xmlrpc", "concurrent/futures", "dbm"]


def repository_tree(root: Path, max_bytes: int = 12_000) -> dict:
    """Real multi-file repositories: standard-library packages, one folder each; {repo: {path: text}}."""
    repos: dict = {}
    for package in PACKAGES:
        name = package.replace("/", "-")
        for source in sorted((STDLIB / package).glob("*.py")):
            text = source.read_text(encoding="utf-8")
            if text.strip() and len(text.encode()) <= max_bytes:
                target = root / name / "src" / source.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                repos.setdefault(name, {})[f"src/{source.name}"] = text
    return repos


def read_repositories(output: str, tokenizer: Tokenizer, fmt, split: str = "train") -> tuple[dict, list, dict]:
    """{repo: [[(path, text), ...] per part]} rebuilt from a split's records, the FIM modes seen, and the
    metadata."""
    sp = tokenizer.special
    parts: dict = defaultdict(list)
    modes = []
    for example in iter_examples(output, split=split):
        for seg in segments(example["input_ids"], example["segment_ids"]):
            repo = parse_repository_segment(seg, sp, fmt)
            assert repo.eot, "a part was cut by the context end"
            sentinels = {getattr(sp, r) for r in SENTINEL_ROLES if getattr(sp, r) is not None} - {sp.file_sep}
            assert not set(repo.lead) & sentinels, "FIM outside a file"
            bos = [sp.bos] if sp.bos is not None else []
            assert repo.lead[:len(bos) + 1] == bos + [sp.repo_name] and sp.bos not in repo.lead[len(bos):]
            name = tokenizer.surface(repo.lead[len(bos) + 1:]).decode()
            files = []
            for file in repo.files:
                c = file.content
                modes.append(c.mode)
                assert c.mode != "truncated"
                text = tokenizer.surface(file.header + c.prefix + c.middle + c.suffix).decode()
                path, _, content = text.partition("\n")
                files.append((path, content))
            parts[name].append(files)
    with open(f"{output}/metadata.json") as f:
        return parts, modes, json.load(f)


def check_repositories_intact(parts: dict, repos: dict) -> None:
    """Each repository's parts hold its files, each once, whole, in path order."""
    assert set(parts) == set(repos)
    for name, repo_parts in parts.items():
        # Parts are shuffled apart; each holds a run of the path-ordered files.
        ordered = sorted(repo_parts, key=lambda files: files[0][0])
        for files in ordered:
            assert [p for p, _ in files] == sorted(p for p, _ in files)
        assert [f for files in ordered for f in files] == sorted(repos[name].items()), name


@pytest.fixture(scope="module")
def repos_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    return root, repository_tree(root)


def run(args: list[str]) -> None:
    assert main(["run", *args]) == 0


@pytest.mark.parametrize("fmt_name", ["paper", "codegemma", "starcoder", "qwen2.5-coder"])
def test_a_tree_of_repositories_comes_back_file_for_file(tmp_path, repos_root, code_model_path, code_model_bytes,
                                                          family_tokenizer_paths, fmt_name):
    """Real code, FIM at rate 0.9: reassembling the records gives back every file of every repository, with a
    SentencePiece model and with the StarCoder and Qwen tokenizer.json files (their own repository pieces)."""
    root, repos = repos_root
    out = tmp_path / "out"
    extra = []
    if fmt_name in family_tokenizer_paths:
        code_model_path = str(family_tokenizer_paths[fmt_name])
        code_model_bytes = family_tokenizer_paths[fmt_name].read_bytes()
        extra = ["--fim_spm_rate", "0.5"]
    if fmt_name == "codegemma":
        extra = ["--fim_prefix_token", "<fim_prefix>", "--fim_middle_token", "<fim_middle>",
                 "--fim_suffix_token", "<fim_suffix>", "--fim_end_token", "<file_sep>", "--file_sep_token",
                 "<file_sep>", "--bos", "--fim_spm_rate", "0.5"]
    run(["--input", str(root), "--output", str(out), "--tokenizer", code_model_path, "--group_by", "repo",
         "--context_length", "4096", "--fim_rate", "0.9", "--fim_format", fmt_name, *extra])
    fmt = FORMATS[fmt_name]
    with open(out / "metadata.json") as f:
        tokenizer = tokenizer_from_bytes(code_model_bytes, dataset_token_names(json.load(f)))
    parts, modes, metadata = read_repositories(str(out), tokenizer, fmt)
    check_repositories_intact(parts, repos)
    counts = metadata["counts"]
    assert counts["repositories"] == len(repos) and counts["repository_files"] == sum(map(len, repos.values()))
    assert counts.get("repository_files_longer_than_a_context", 0) == 0 and counts.get("trimmed_tokens", 0) == 0
    assert counts["repository_parts"] > len(repos), "no repository was long enough to need two parts"
    assert {"psm", "spm"} <= set(modes) and "plain" in modes
    assert metadata["repository"]["part_tokens"] < 4096


def test_jsonl_and_parquet_repositories_with_dead_letters_for_records_without_one(tmp_path, repos_root,
                                                                                 code_model_path,
                                                                                 code_model_bytes):
    root, repos = repos_root
    records = [{"repo_name": name, "path": path, "content": text}
               for name, files in sorted(repos.items()) for path, text in sorted(files.items())]
    half = len(records) // 2
    with open(tmp_path / "a.jsonl", "w") as f:
        for record in records[:half] + [{"path": "x.py", "content": "x = 1\n"},
                                        {"repo_name": "r", "path": "two\nlines", "content": "y = 2\n"}]:
            f.write(json.dumps(record) + "\n")
    pq.write_table(pa.Table.from_pylist(records[half:]), tmp_path / "b.parquet")
    out = tmp_path / "out"
    run(["--input", str(tmp_path / "a.jsonl"), "--input", str(tmp_path / "b.parquet"), "--output", str(out),
         "--tokenizer", code_model_path, "--group_by", "repo", "--context_length", "4096",
         "--max_error_fraction", "0.1"])
    tokenizer = SentencePieceTokenizer(code_model_bytes, special_token_names(FORMATS["paper"], {}, None, repository=True))
    parts, _, metadata = read_repositories(str(out), tokenizer, FORMATS["paper"])
    check_repositories_intact(parts, repos)
    assert metadata["errors"]["by_reason"] == {"no_repository": 1, "invalid_path": 1}


def test_repository_output_is_the_same_bytes_on_every_runner_mode(tmp_path, repos_root, code_model_path):
    root, _ = repos_root
    shards = []
    for mode, workers in (("in_memory", 1), ("multi_processing", 2)):
        out = tmp_path / mode
        run(["--input", str(root), "--output", str(out), "--tokenizer", code_model_path, "--group_by", "repo",
             "--context_length", "2048", "--direct_running_mode", mode, "--direct_num_workers", str(workers)])
        shards.append({p.name: p.read_bytes() for p in sorted(out.glob("train-*"))})
    assert shards[0] == shards[1] and shards[0]


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 90), min_size=1, max_size=30), reserve=st.integers(1, 6))
def test_packing_keeps_every_part_that_fits_in_one_chunk(lengths, reserve):
    """Parts come out in order, every id once; a part with room for its reserve is never cut."""
    L = 64
    docs = [TokenizedDocument(bytes([i]), np.arange(n, dtype=np.int32) + 1000 * i) for i, n in enumerate(lengths)]
    chunks = list(pack_bucket(0, docs, L, eot=-1, keep_whole_reserve=reserve))
    stream = np.concatenate([c.ids for c in chunks])
    assert stream.tolist() == np.concatenate([np.append(d.ids, -1) for d in docs]).tolist()
    assert all(len(c.ids) <= L for c in chunks) and [c.index for c in chunks] == list(range(len(chunks)))
    for doc in docs:
        if len(doc.ids) + 1 + reserve <= L:
            assert any(set(doc.ids.tolist()) <= set(c.ids.tolist()) for c in chunks), len(doc.ids)


def test_group_by_repo_refuses_settings_that_would_cut_files(tmp_path, repos_root, code_model_path, capsys):
    root, _ = repos_root
    assert main(["run", "--input", str(root), "--output", str(tmp_path / "o"), "--tokenizer", code_model_path,
                 "--group_by", "repo", "--fim_trim", "keep_middle"]) == 2
    assert "--group_by repo" in capsys.readouterr().err


def test_a_repository_is_held_out_whole_or_not_at_all(tmp_path, repos_root, code_model_path, code_model_bytes):
    root, repos = repos_root
    out = tmp_path / "out"
    run(["--input", str(root), "--output", str(out), "--tokenizer", code_model_path, "--group_by", "repo",
         "--context_length", "4096", "--validation_fraction", "0.4", "--eval_examples_per_task", "0"])
    tokenizer = SentencePieceTokenizer(code_model_bytes, special_token_names(FORMATS["paper"], {}, None, repository=True))
    train, _, metadata = read_repositories(str(out), tokenizer, FORMATS["paper"])
    held, _, _ = read_repositories(str(out), tokenizer, FORMATS["paper"], split="validation_ar")
    assert train and held and not set(train) & set(held)
    check_repositories_intact({**train, **held}, repos)
    assert metadata["split_assignment"]["by"] == "repository name"

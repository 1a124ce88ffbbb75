"""metadata.json shows the mixture that was built: per input pattern and per language."""

from __future__ import annotations

import json

from pipeline.cli import main


def test_counts_per_pattern_and_language_add_up_to_the_dataset(tmp_path, code_model_path):
    jsonl = tmp_path / "records"
    jsonl.mkdir()
    records = [{"content": f"fn f{i}() {{ {i} }}\n", "lang": "Rust"} for i in range(6)]
    records += [{"content": f"SELECT {i};\n", "lang": "SQL"} for i in range(4)] + [{"content": "x = 1\n"}]
    (jsonl / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        (tree / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    (tree / "main.cc").write_text("int main() { return 0; }\n")
    (tree / "Makefile").write_text("all:\n\techo hi\n")
    out = tmp_path / "out"
    assert main(["run", "--input", str(jsonl / "*.jsonl"), "--input", str(tree), "--output", str(out),
                 "--tokenizer", code_model_path, "--context_length", "64", "--language_field", "lang",
                 "--max_error_fraction", "0.2", "--quiet"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    sources, counts = metadata["sources"], metadata["counts"]
    assert {k: v["documents"] for k, v in sources["language"].items()} == {
        "Rust": 6, "SQL": 4, "Python": 3, "C++": 1, "unknown": 2}
    by_pattern = sources["pattern"]
    assert set(by_pattern) == {str(jsonl / "*.jsonl"), str(tree)}
    assert by_pattern[str(jsonl / "*.jsonl")]["records_rejected"] == 1
    assert by_pattern[str(tree)]["input_files"] == 5
    for kind in ("pattern", "language"):
        for name, total in (("documents", "documents"), ("tokens", "document_tokens"),
                            ("text_chars", "text_chars_tokenized")):
            assert sum(s[name] for s in sources[kind].values()) == counts[total], (kind, name)
    assert sum(s["input_bytes"] for s in by_pattern.values()) == metadata["input_bytes"]
    assert not any(k.startswith("source/") for k in counts)
